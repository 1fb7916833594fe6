#include "util.h"

#include <optional>

#include "../rows.h"

namespace wm {
namespace addon {

Napi::Value ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool GetBytes(const Napi::Value& v, size_t want, const uint8_t** out) {
  if (!v.IsBuffer()) return false;
  auto b = v.As<Napi::Buffer<uint8_t>>();
  if (want && b.Length() != want) return false;
  *out = b.Data();
  return true;
}

Napi::Buffer<uint8_t> Copy(Napi::Env env, const uint8_t* p, size_t n) { return Napi::Buffer<uint8_t>::Copy(env, p, n); }

Napi::Array Warnings(Napi::Env env, const std::vector<std::string>& w) {
  Napi::Array a = Napi::Array::New(env, w.size());
  for (size_t i = 0; i < w.size(); i++) a.Set(uint32_t(i), Napi::String::New(env, w[i]));
  return a;
}

bool ParseL7Spec(const Napi::Value& v, bool* all, std::vector<HttpRuleSpec>* out, std::string* err) {
  *all = false;
  if (v.IsString()) {
    if (v.As<Napi::String>().Utf8Value() != "all") return *err = "rules: 'all' or an array", false;
    *all = true;
    return true;
  }
  if (!v.IsArray()) return *err = "rules: 'all' or an array", false;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) return *err = "rules[" + std::to_string(i) + "]: an object", false;
    Napi::Object o = e.As<Napi::Object>();
    HttpRuleSpec s;
    s.ref = o.Get("ref").IsNumber() ? o.Get("ref").As<Napi::Number>().Int32Value() : -1;
    for (auto [field, dst] : {std::pair<const char*, std::optional<std::string>*>{"method", &s.method}, {"path", &s.path}, {"host", &s.host}}) {
      Napi::Value f = o.Get(field);
      if (f.IsString()) *dst = f.As<Napi::String>().Utf8Value();
      else if (!f.IsUndefined()) return *err = "rules[" + std::to_string(i) + "]." + field + ": a string", false;
    }
    Napi::Value hs = o.Get("headers");
    if (hs.IsArray()) {
      Napi::Array ha = hs.As<Napi::Array>();
      for (uint32_t k = 0; k < ha.Length(); k++) {
        Napi::Value h = ha.Get(k);
        if (!h.IsObject() || !h.As<Napi::Object>().Get("name").IsString()) return *err = "rules[" + std::to_string(i) + "].headers: { name, value? }", false;
        Napi::Value val = h.As<Napi::Object>().Get("value");
        s.headers.emplace_back(h.As<Napi::Object>().Get("name").As<Napi::String>().Utf8Value(),
                               val.IsString() ? std::optional<std::string>(val.As<Napi::String>().Utf8Value()) : std::nullopt);
      }
    }
    out->push_back(std::move(s));
  }
  return true;
}

bool ParseBackends(const Napi::Value& v, std::vector<BackendKey>* keys, std::vector<uint32_t>* weights) {
  if (!v.IsBuffer()) return false;
  auto b = v.As<Napi::Buffer<uint8_t>>();
  return rows::decode_backends(b.Data(), b.Length(), keys, weights);
}

}  // namespace addon
}  // namespace wm
