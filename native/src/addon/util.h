// Helpers shared by the wrappers of both addons (product: addon/, test hooks: testhooks/).
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../proxy/l7rules.h"
#include "../services/maglev.h"

namespace wm {
namespace addon {

// Throws a TypeError; returns undefined for the caller to return.
Napi::Value ThrowType(Napi::Env env, const std::string& msg);
// *out = the bytes of v when it is a Buffer of want bytes (any length when want is 0).
bool GetBytes(const Napi::Value& v, size_t want, const uint8_t** out);
Napi::Buffer<uint8_t> Copy(Napi::Env env, const uint8_t* p, size_t n);
Napi::Array Warnings(Napi::Env env, const std::vector<std::string>& w);
// Rule specs from the agent: 'all' | [{ ref, method?, path?, host?, headers?: [{ name, value? }] }].
bool ParseL7Spec(const Napi::Value& v, bool* all, std::vector<HttpRuleSpec>* out, std::string* err);
// Backend rows (rows.h BackendRow) from a Buffer; false on anything else.
bool ParseBackends(const Napi::Value& v, std::vector<BackendKey>* keys, std::vector<uint32_t>* weights);

}  // namespace addon
}  // namespace wm
