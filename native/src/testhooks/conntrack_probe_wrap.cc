// ConntrackProbe (testhooks): a policy Conntrack of its own on a clock the
// test gives (the product addon's engine reads CLOCK_MONOTONIC), so a unit
// test can age entries, run gc and see the accounts' counts
// (Conntrack::accounting): what the product addon does not show.
#include <string>

#include "../addon/util.h"
#include "../policy/conntrack.h"
#include "testhooks.h"

namespace wm {
namespace testhooks {
namespace {

using addon::ThrowType;

// A flow as { src, dst (Buffers of 4 or 16 bytes, alike), proto, sport, dport, tcpFlags? }.
bool Flow(const Napi::Value& v, FlowTuple* t) {
  if (!v.IsObject()) return false;
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value s = o.Get("src"), d = o.Get("dst");
  if (!s.IsBuffer() || !d.IsBuffer()) return false;
  auto sb = s.As<Napi::Buffer<uint8_t>>(), db = d.As<Napi::Buffer<uint8_t>>();
  if (sb.Length() != db.Length() || (sb.Length() != 4 && sb.Length() != 16)) return false;
  auto num = [&](const char* k) { return o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().Uint32Value() : 0u; };
  *t = FlowTuple{sb.Data(), db.Data(), int(sb.Length()), uint16_t(num("sport")), uint16_t(num("dport")),
                 uint8_t(num("proto")), uint8_t(num("tcpFlags"))};
  return true;
}

class ConntrackProbeWrap : public Napi::ObjectWrap<ConntrackProbeWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ConntrackProbe",
                       {InstanceMethod("create", &ConntrackProbeWrap::Create),
                        InstanceMethod("lookup", &ConntrackProbeWrap::Lookup), InstanceMethod("gc", &ConntrackProbeWrap::Gc),
                        InstanceMethod("stats", &ConntrackProbeWrap::Stats)});
  }
  // new ConntrackProbe(maxEntries, perEndpoint)
  explicit ConntrackProbeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ConntrackProbeWrap>(info) {
    if (info[0].IsNumber() && info[1].IsNumber())
      ct_.set_limits(size_t(info[0].As<Napi::Number>().Int64Value()), size_t(info[1].As<Napi::Number>().Int64Value()));
  }

 private:
  static CtScope Scope(const Napi::Value& v) { return v.IsString() && v.As<Napi::String>().Utf8Value() == "ingress" ? kCtIngress : kCtEgress; }
  // create('egress' | 'ingress', flow, nowS, endpoint) -> 'created' | 'exists' | 'table-full' | 'quota-full' | 'refused'
  Napi::Value Create(const Napi::CallbackInfo& info) {
    FlowTuple t;
    if (!Flow(info[1], &t) || !info[2].IsNumber() || !info[3].IsNumber())
      return ThrowType(info.Env(), "create(scope, flow, nowS, endpoint)");
    static const char* const names[] = {"created", "exists", "table-full", "quota-full", "refused"};
    CtCreate c = ct_.create(Scope(info[0]), t, info[2].As<Napi::Number>().Uint32Value(), 1,
                            info[3].As<Napi::Number>().Uint32Value());
    return Napi::String::New(info.Env(), names[c]);
  }
  // lookup('egress' | 'ingress', flow, nowS) -> 'miss' | 'established' | 'reply' | 'proxied'
  Napi::Value Lookup(const Napi::CallbackInfo& info) {
    FlowTuple t;
    if (!Flow(info[1], &t) || !info[2].IsNumber()) return ThrowType(info.Env(), "lookup(scope, flow, nowS)");
    static const char* const names[] = {"miss", "established", "reply", "proxied"};
    return Napi::String::New(info.Env(), names[ct_.lookup(Scope(info[0]), t, info[2].As<Napi::Number>().Uint32Value())]);
  }
  // gc(nowS) -> entries removed
  Napi::Value Gc(const Napi::CallbackInfo& info) {
    if (!info[0].IsNumber()) return ThrowType(info.Env(), "gc(nowS)");
    return Napi::Number::New(info.Env(), double(ct_.gc(info[0].As<Napi::Number>().Uint32Value())));
  }
  // stats(endpoint) -> { entries, inbound, inboundEvictable, destination, own, accounts, counters }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    uint32_t ep = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    Conntrack::Accounting a = ct_.accounting(ep);
    Napi::Object o = Napi::Object::New(info.Env()), c = Napi::Object::New(info.Env());
    o.Set("entries", double(ct_.size()));
    o.Set("inbound", double(a.inbound));
    o.Set("inboundEvictable", double(a.inbound_evictable));
    o.Set("destination", double(a.destination));
    o.Set("own", double(ct_.endpoint_entries(ep)));
    o.Set("accounts", double(a.accounts));
    for (int i = 0; i < Conntrack::kCounterCount; i++) c.Set(Conntrack::kCounterNames[i], double(ct_.counter(i)));
    o.Set("counters", c);
    return o;
  }
  Conntrack ct_;
};

}  // namespace

Napi::Function ConntrackProbeClass(Napi::Env env) { return ConntrackProbeWrap::Init(env); }

}  // namespace testhooks
}  // namespace wm
