// The product addon (build/Release/wiremesh.node, loaded by src/native/binding.ts): registers the
// exports of each wrapper file (wraps.h). Exports only tests and benchmarks use live in the
// test-hooks addon (testhooks/testhooks.h).
#include <napi.h>

#include "wraps.h"

namespace {

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  wm::addon::RegisterCrypto(env, exports);
  wm::addon::RegisterDevice(env, exports);
  wm::addon::RegisterMalloc(env, exports);
  wm::addon::RegisterProxy(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(wiremesh, InitAll)
