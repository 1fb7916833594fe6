// Registers the test-hooks addon: the L7 matcher, Maglev tables and the policy microbenchmarks
// for tests and benches, the testbed's delay line, the primitives (primitives_wrap.cc) and the probe
// monitor (probe_monitor_wrap.cc).
#include <string>
#include <vector>

#include "../addon/util.h"
#include "../net/delayline.h"
#include "../policy/bench.h"
#include "../proxy/http1.h"
#include "../services/maglev.h"
#include "../services/maglev_bench.h"
#include "../wireguard/peer_clusters.h"
#include "testhooks.h"

namespace wm {
namespace testhooks {
namespace {

using namespace addon;

// l7Decide(rules, requestHead: string, client?: string) -> { allowed, ref, target, warnings, h2cIgnored?, upgrade? } |
// { error, status }: the proxy's request parser and rule matcher, for tests against src/policy/l7.ts. client: the
// client's address, set as X-Forwarded-For before the decision as the proxy does (http1::set_forwarded_for).
Napi::Value L7Decide(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool all;
  std::vector<HttpRuleSpec> specs;
  std::string err;
  if (!ParseL7Spec(info[0], &all, &specs, &err) || !info[1].IsString()) return ThrowType(env, err.empty() ? "l7Decide(rules, head)" : err);
  std::vector<std::string> warnings;
  auto set = L7RuleSet::compile(all, specs, &warnings);
  std::string head = info[1].As<Napi::String>().Utf8Value();
  http1::Head h;
  int status = 0;
  std::string reason;
  Napi::Object o = Napi::Object::New(env);
  http1::ParseResult r = http1::parse_request(head.data(), head.size(), 16384, &h, &status, &reason);
  if (r != http1::ParseResult::kDone) {
    o.Set("error", r == http1::ParseResult::kNeedMore ? std::string("incomplete head") : reason);
    o.Set("status", double(status));
    return o;
  }
  if (info[2].IsString()) http1::set_forwarded_for(&h, info[2].As<Napi::String>().Utf8Value());
  L7RuleSet::Decision d = set->decide(h);
  o.Set("allowed", d.allowed);
  o.Set("ref", double(d.ref));
  o.Set("target", h.target);  // normalised: what was matched and what the pod would be sent
  if (h.h2c_upgrade) o.Set("h2cIgnored", true);
  if (h.upgrade) o.Set("upgrade", true);
  o.Set("warnings", Warnings(env, warnings));
  return o;
}

// chunkedBody(bytes: Buffer) -> { consumed, done, failed }: the proxy's body framer (http1.h BodyFramer)
// on a chunked body, fed in one piece: how many bytes it takes as the body (and forwards) before it ends
// or fails.
Napi::Value ChunkedBody(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) return ThrowType(env, "chunkedBody(bytes: Buffer)");
  auto b = info[0].As<Napi::Buffer<char>>();
  http1::BodyFramer f;
  f.start(http1::BodyKind::kChunked, 0);
  size_t n = f.feed(b.Data(), b.Length());
  Napi::Object o = Napi::Object::New(env);
  o.Set("consumed", double(n));
  o.Set("done", f.done());
  o.Set("failed", f.failed());
  return o;
}

// DelayLine(tunName, delayMs): the testbed's latency device (src/testbed/latency.ts).
class DelayLineWrap : public Napi::ObjectWrap<DelayLineWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "DelayLine",
                       {InstanceMethod("close", &DelayLineWrap::Close), InstanceMethod("packets", &DelayLineWrap::Packets)});
  }
  explicit DelayLineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DelayLineWrap>(info) {
    if (!info[0].IsString() || !info[1].IsNumber()) {
      ThrowType(info.Env(), "new DelayLine(tunName, delayMs)");
      return;
    }
    std::string err;
    if (!line_.start(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Uint32Value(), &err))
      Napi::Error::New(info.Env(), err).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    line_.stop();
    return info.Env().Undefined();
  }
  Napi::Value Packets(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(line_.packets())); }
  DelayLine line_;
};

// maglevBuild(backends: 24-byte rows, m, build?) -> Uint32Array (input index per slot); build: 'reference'
// (the plain build maglev_build is checked against, maglev_bench.h), or the widest walk maglev_build may use,
// 'scalar' | 'avx2' | 'avx512' (default: the widest this CPU runs)
Napi::Value MaglevBuild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<BackendKey> keys;
  std::vector<uint32_t> weights;
  if (!ParseBackends(info[0], &keys, &weights) || !info[1].IsNumber())
    return ThrowType(env, "maglevBuild(backends: Buffer of 24-byte rows, m: prime)");
  uint32_t m = info[1].As<Napi::Number>().Uint32Value();
  if (m < 3 || m > 1048573 || !is_prime(m)) return ThrowType(env, "m must be a prime in 3..1048573");
  std::vector<uint32_t> kept = sort_backends(&keys, &weights);
  const bool named = info.Length() > 2 && !info[2].IsUndefined();
  const std::string build = !named ? "avx512" : info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  std::vector<uint32_t> table;
  if (build == "reference") table = maglev_build_reference(keys, weights, m);
  else if (build == "scalar") table = maglev_build(keys, weights, m, MaglevWalk::kScalar);
  else if (build == "avx2") table = maglev_build(keys, weights, m, MaglevWalk::kAvx2);
  else if (build == "avx512") table = maglev_build(keys, weights, m, MaglevWalk::kAvx512);
  else return ThrowType(env, "maglevBuild: build is 'reference' | 'scalar' | 'avx2' | 'avx512'");
  auto arr = Napi::Uint32Array::New(env, table.size());
  for (size_t i = 0; i < table.size(); i++) arr[i] = kept[table[i]];
  return arr;
}

// peerSpeaksFor(clusters: number[], maxClusters: 255 | 511, identity) -> boolean: the device's check of a
// tagged packet's identity against the clusters its peer speaks for (peer_clusters.h)
Napi::Value PeerSpeaksFor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber()) return ThrowType(env, "peerSpeaksFor(clusters, maxClusters, identity)");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<uint16_t> clusters;
  for (uint32_t i = 0; i < a.Length(); i++) clusters.push_back(uint16_t(a.Get(i).As<Napi::Number>().Uint32Value()));
  uint32_t max = info[1].As<Napi::Number>().Uint32Value();
  if (!valid_max_clusters(max)) return ThrowType(env, "maxClusters is 255 or 511");
  PeerClusters held;  // as a Peer holds them: in place up to PeerClusters::kInline, else on the heap
  held.assign(clusters);
  return Napi::Boolean::New(env, peer_speaks_for(held, max, info[2].As<Napi::Number>().Uint32Value()));
}

// One native micro-benchmark: run(kind, a, b, c, &result, &err) with the four
// arguments checked; answers { nsPerOp, setupMs, ops, hits } or throws err.
template <typename R, typename Run>
Napi::Value RunBench(const Napi::CallbackInfo& info, const char* usage, Run run) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber())
    return ThrowType(env, usage);
  auto arg = [&](int i) { return info[i].As<Napi::Number>().Int64Value(); };
  R r;
  std::string err;
  if (!run(info[0].As<Napi::String>().Utf8Value(), arg(1), arg(2), arg(3), &r, &err)) return ThrowType(env, err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("nsPerOp", r.ns_per_op);
  o.Set("setupMs", r.setup_ms);
  o.Set("ops", double(r.ops));
  o.Set("hits", double(r.hits));
  return o;
}

// maglevBench(kind, n, m, ops) -> { nsPerOp, setupMs (0), ops, hits } (maglev_bench.h)
Napi::Value MaglevBench(const Napi::CallbackInfo& info) {
  return RunBench<MaglevBenchResult>(info, "maglevBench(kind, n, m, ops)",
                                     [](const std::string& kind, int64_t n, int64_t m, int64_t ops,
                                        MaglevBenchResult* r, std::string* err) {
                                       return run_maglev_bench(kind, size_t(n), uint32_t(m), size_t(ops), r, err);
                                     });
}

// policyBench(kind, size, policyEntries, ops) -> { nsPerOp, setupMs, ops, hits } (policy/bench.h)
Napi::Value PolicyBench(const Napi::CallbackInfo& info) {
  return RunBench<PolicyBenchResult>(info, "policyBench(kind, size, policyEntries, ops)",
                                     [](const std::string& kind, int64_t size, int64_t entries, int64_t ops,
                                        PolicyBenchResult* r, std::string* err) {
                                       return run_policy_bench(kind, size_t(size), size_t(entries), size_t(ops), r, err);
                                     });
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  RegisterPrimitives(env, exports);
  RegisterFlatmapProbe(env, exports);
  exports.Set("l7Decide", Napi::Function::New(env, L7Decide));
  exports.Set("chunkedBody", Napi::Function::New(env, ChunkedBody));
  exports.Set("maglevBuild", Napi::Function::New(env, MaglevBuild));
  exports.Set("peerSpeaksFor", Napi::Function::New(env, PeerSpeaksFor));
  exports.Set("maglevBench", Napi::Function::New(env, MaglevBench));
  exports.Set("policyBench", Napi::Function::New(env, PolicyBench));
  exports.Set("DelayLine", DelayLineWrap::Init(env));
  exports.Set("PolicyProbe", PolicyProbeClass(env));
  exports.Set("ConntrackProbe", ConntrackProbeClass(env));
  exports.Set("ProbeMonitor", ProbeMonitorClass(env));
  exports.Set("TxControl", TxControlClass(env));
  return exports;
}

}  // namespace
}  // namespace testhooks
}  // namespace wm

// NODE_API_MODULE wants an unqualified name.
static Napi::Object InitTestHooks(Napi::Env env, Napi::Object exports) { return wm::testhooks::InitAll(env, exports); }

NODE_API_MODULE(wiremesh_testhooks, InitTestHooks)
