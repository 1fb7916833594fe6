// What each wrapper file of the product addon registers on the exports (addon.cc calls them).
#pragma once
#include <napi.h>

namespace wm {
namespace addon {

void RegisterCrypto(Napi::Env env, Napi::Object exports);   // crypto_wrap.cc
void RegisterDevice(Napi::Env env, Napi::Object exports);   // device_wrap.cc
void RegisterMalloc(Napi::Env env, Napi::Object exports);   // malloc_wrap.cc
void RegisterProxy(Napi::Env env, Napi::Object exports);    // proxy_wrap.cc

}  // namespace addon
}  // namespace wm
