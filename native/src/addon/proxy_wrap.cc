// The L7 proxy (in the proxy process), the agent's answering side of its lookups, and the
// helpers the proxy process and `wiremesh apply` need.
#include <sys/prctl.h>

#include <atomic>
#include <cstring>
#include <memory>

#include "../proxy/lookup.h"
#include "../proxy/proxy.h"
#include "../rows.h"
#include "device_wrap.h"
#include "util.h"
#include "wraps.h"

namespace wm {
namespace addon {

namespace {

// new L7Proxy({ address: Buffer(4), port, workers, lookupFds: number[] }, onRuleRequests): the native L7
// proxy, in the proxy process (src/proxy/worker.ts); worker i asks the agent for each accepted flow's
// original destination on lookupFds[i] (proxy/lookup.h).
class L7ProxyWrap : public Napi::ObjectWrap<L7ProxyWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "L7Proxy",
                       {InstanceMethod("takeRequests", &L7ProxyWrap::TakeRequests),
                        InstanceMethod("setRules", &L7ProxyWrap::SetRules),
                        InstanceMethod("invalidate", &L7ProxyWrap::Invalidate),
                        InstanceMethod("drain", &L7ProxyWrap::Drain), InstanceMethod("stats", &L7ProxyWrap::Stats),
                        InstanceMethod("close", &L7ProxyWrap::Close)});
  }
  explicit L7ProxyWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<L7ProxyWrap>(info) {
    Napi::Env env = info.Env();
    const uint8_t* addr;
    const char* usage = "new L7Proxy({ address: 4-byte Buffer, port, workers, lookupFds: one fd per worker }, onRuleRequests)";
    if (!info[0].IsObject() || !info[1].IsFunction() || !GetBytes(info[0].As<Napi::Object>().Get("address"), 4, &addr) ||
        !info[0].As<Napi::Object>().Get("port").IsNumber() || !info[0].As<Napi::Object>().Get("lookupFds").IsArray()) {
      ThrowType(env, usage);
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    uint16_t port = uint16_t(o.Get("port").As<Napi::Number>().Uint32Value());
    int workers = o.Get("workers").IsNumber() ? o.Get("workers").As<Napi::Number>().Int32Value() : 1;
    Napi::Array fda = o.Get("lookupFds").As<Napi::Array>();
    if (workers < 1 || workers > 16 || fda.Length() != uint32_t(workers)) {
      ThrowType(env, usage);
      return;
    }
    std::vector<int> fds;
    for (uint32_t i = 0; i < fda.Length(); i++) {
      if (!fda.Get(i).IsNumber()) {
        ThrowType(env, usage);
        return;
      }
      fds.push_back(fda.Get(i).As<Napi::Number>().Int32Value());
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "wiremesh-l7proxy", 0, 1);
    tsfn_.Unref(env);
    have_tsfn_ = true;
    std::string err;
    bool ok = proxy_.start(
        addr, port, fds,
        [this] {
          if (!pending_.exchange(true)) tsfn_.NonBlockingCall([this](Napi::Env, Napi::Function cb) {
            pending_.store(false);
            cb.Call({});
          });
        },
        &err);
    if (!ok) {
      Napi::Error e = Napi::Error::New(env, err);
      e.Set("code", Napi::String::New(env, "WM_PROXY_LISTEN"));
      e.ThrowAsJavaScriptException();
    }
  }
  ~L7ProxyWrap() { Stop(); }

 private:
  void Stop() {
    proxy_.stop();
    if (have_tsfn_) {
      tsfn_.Release();
      have_tsfn_ = false;
    }
  }
  // takeRequests() -> [{ address: Buffer(4), port, identity, generation }]
  Napi::Value TakeRequests(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<L7RuleRequest> reqs;
    proxy_.take_requests(&reqs);
    Napi::Array a = Napi::Array::New(env, reqs.size());
    for (size_t i = 0; i < reqs.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("address", Napi::Buffer<uint8_t>::Copy(env, reqs[i].key.dst, 4));
      o.Set("port", double(reqs[i].key.port));
      o.Set("identity", double(reqs[i].key.identity));
      o.Set("generation", double(reqs[i].generation));
      a.Set(uint32_t(i), o);
    }
    return a;
  }
  // setRules({ address, port, identity, generation }, rules | null) -> warnings[]
  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint8_t* addr;
    if (!info[0].IsObject()) return ThrowType(env, "setRules(request, rules | null)");
    Napi::Object r = info[0].As<Napi::Object>();
    if (!GetBytes(r.Get("address"), 4, &addr) || !r.Get("port").IsNumber() || !r.Get("identity").IsNumber() ||
        !r.Get("generation").IsNumber())
      return ThrowType(env, "setRules: request { address: 4-byte Buffer, port, identity, generation }");
    L7RuleRequest req;
    std::memcpy(req.key.dst, addr, 4);
    req.key.port = uint16_t(r.Get("port").As<Napi::Number>().Uint32Value());
    req.key.identity = r.Get("identity").As<Napi::Number>().Uint32Value();
    req.generation = uint64_t(r.Get("generation").As<Napi::Number>().Int64Value());
    std::vector<std::string> warnings;
    if (info[1].IsNull() || info[1].IsUndefined()) {
      proxy_.set_rules(req, false, nullptr);
      return Warnings(env, warnings);
    }
    bool all;
    std::vector<HttpRuleSpec> specs;
    std::string err;
    if (!ParseL7Spec(info[1], &all, &specs, &err)) return ThrowType(env, err);
    proxy_.set_rules(req, true, L7RuleSet::compile(all, specs, &warnings));
    return Warnings(env, warnings);
  }
  Napi::Value Invalidate(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(proxy_.invalidate())); }
  // drain(max) -> { rows: Buffer of rows.h L7RecordRow, text: Buffer (method, path, host bytes) }
  // Binary rows, not objects: building 14 properties per record was most of the agent's JS time under load.
  Napi::Value Drain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t max = info[0].IsNumber() ? size_t(info[0].As<Napi::Number>().Int64Value()) : 4096;
    std::vector<L7Record> recs;
    proxy_.drain(&recs, max);
    size_t text_len = 0;
    for (const auto& r : recs) text_len += r.method.size() + r.path.size() + r.host.size();
    auto out = Napi::Buffer<uint8_t>::New(env, recs.size() * sizeof(rows::L7RecordRow));
    auto text = Napi::Buffer<uint8_t>::New(env, text_len);
    uint8_t* t = text.Data();
    uint32_t off = 0;
    for (size_t i = 0; i < recs.size(); i++) {
      const L7Record& r = recs[i];
      rows::L7RecordRow w;
      std::memset(&w, 0, sizeof w);
      w.time_ms = double(r.time_ms);
      std::memcpy(w.client, r.client, 4);
      std::memcpy(w.dst, r.dst, 4);
      w.client_port = r.client_port;
      w.dst_port = r.dst_port;
      w.identity = r.identity;
      w.status = r.status;
      w.denied = r.denied ? 1 : 0;
      w.latency_us = r.latency_us;
      w.ref = r.ref;
      w.generation = uint32_t(r.generation);
      w.text_offset = off;
      w.method_len = uint16_t(r.method.size());
      w.path_len = uint16_t(r.path.size());
      w.host_len = uint16_t(r.host.size());
      std::memcpy(out.Data() + i * sizeof w, &w, sizeof w);
      for (const std::string* str : {&r.method, &r.path, &r.host}) {
        std::memcpy(t + off, str->data(), str->size());
        off += uint32_t(str->size());
      }
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("rows", out);
    o.Set("text", text);
    return o;
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    L7ProxyStats s = proxy_.stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("connections", double(s.connections));
    o.Set("active", double(s.active));
    o.Set("requests", double(s.requests));
    o.Set("denied", double(s.denied));
    o.Set("upstreamErrors", double(s.upstream_errors));
    o.Set("passthrough", double(s.passthrough));
    o.Set("badRequests", double(s.bad_requests));
    o.Set("recordsLost", double(s.records_lost));
    o.Set("h2Refused", double(s.h2_refused));
    o.Set("h2cIgnored", double(s.h2c_ignored));
    o.Set("headTimeouts", double(s.head_timeouts));
    o.Set("bodyTimeouts", double(s.body_timeouts));
    o.Set("limited", double(s.limited));
    o.Set("fdExhausted", double(s.fd_exhausted));
    o.Set("acceptErrors", double(s.accept_errors));
    o.Set("maxConnections", double(s.max_connections));
    o.Set("lookupTimeouts", double(s.lookup_timeouts));
    o.Set("lookupsLimited", double(s.lookups_limited));
    o.Set("lookupsUnsent", double(s.lookups_unsent));
    return o;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  L7Proxy proxy_;
  Napi::ThreadSafeFunction tsfn_;
  bool have_tsfn_ = false;
  std::atomic<bool> pending_{false};
};

// new ProxyLookup(device): the agent's answering side of the proxy process's original-destination
// lookups (proxy/lookup.h), from the device's LoadBalancer. pair() -> the fd to hand the proxy process
// (close it here once spawned); stats() -> { answered, notFound, malformed, channels }; close().
class ProxyLookupWrap : public Napi::ObjectWrap<ProxyLookupWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ProxyLookup",
                       {InstanceMethod("pair", &ProxyLookupWrap::Pair), InstanceMethod("stats", &ProxyLookupWrap::Stats),
                        InstanceMethod("close", &ProxyLookupWrap::Close)});
  }
  explicit ProxyLookupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProxyLookupWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      ThrowType(env, "new ProxyLookup(device)");
      return;
    }
    DeviceWrap* d = Napi::ObjectWrap<DeviceWrap>::Unwrap(info[0].As<Napi::Object>());
    LoadBalancer* lb = d ? d->device().lb() : nullptr;
    if (!lb) {
      ThrowType(env, "the proxy lookup needs the device's policy engine (enablePolicy first)");
      return;
    }
    device_ = Napi::Persistent(info[0].As<Napi::Object>());  // the load balancer lives as long as the device
    server_ = std::make_unique<LookupServer>([lb](const uint8_t c[4], uint16_t cp, uint8_t dst[4], uint16_t* dp, uint32_t* id) {
      return lb->proxy_original(c, cp, dst, dp, id);
    });
    std::string err;
    if (!server_->start(&err)) Napi::Error::New(env, err).ThrowAsJavaScriptException();
  }
  ~ProxyLookupWrap() {
    if (server_) server_->stop();
  }

 private:
  Napi::Value Pair(const Napi::CallbackInfo& info) {
    std::string err;
    int fd = server_ ? server_->pair(&err) : -1;
    if (fd < 0) {
      Napi::Error::New(info.Env(), err.empty() ? "proxy lookup closed" : err).ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    return Napi::Number::New(info.Env(), fd);
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    LookupStats s = server_ ? server_->stats() : LookupStats{0, 0, 0, 0};
    Napi::Object o = Napi::Object::New(env);
    o.Set("answered", double(s.answered));
    o.Set("notFound", double(s.not_found));
    o.Set("malformed", double(s.malformed));
    o.Set("channels", double(s.channels));
    return o;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (server_) server_->stop();
    device_.Reset();
    return info.Env().Undefined();
  }
  std::unique_ptr<LookupServer> server_;
  Napi::ObjectReference device_;
};

// setParentDeathSignal(signal) -> boolean: the proxy process dies with the agent (prctl PR_SET_PDEATHSIG).
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) return ThrowType(info.Env(), "setParentDeathSignal(signal number)");
  return Napi::Boolean::New(info.Env(), prctl(PR_SET_PDEATHSIG, info[0].As<Napi::Number>().Int32Value()) == 0);
}

// validateRegex(pattern) -> string | null: why the L7 proxy's RE2 refuses a pattern, null if it
// compiles; `wiremesh apply` asks this (src/manifests/validate.ts) so apply and the data path agree.
Napi::Value ValidateRegex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) return ThrowType(env, "validateRegex(pattern: string)");
  std::string err = check_pattern(info[0].As<Napi::String>().Utf8Value());
  return err.empty() ? env.Null() : Napi::String::New(env, err);
}

}  // namespace

void RegisterProxy(Napi::Env env, Napi::Object exports) {
  exports.Set("L7Proxy", L7ProxyWrap::Init(env));
  exports.Set("ProxyLookup", ProxyLookupWrap::Init(env));
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal));
  exports.Set("validateRegex", Napi::Function::New(env, ValidateRegex));
}

}  // namespace addon
}  // namespace wm
