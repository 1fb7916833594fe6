#include <cstring>
#include <memory>
#include <string>
#include <shared_mutex>
#include <vector>

#include "../net/ip.h"
#include "../rows.h"
#include "device_wrap.h"
#include "util.h"

namespace wm {
namespace addon {

namespace {

// Policy rows (rows.h PolicyRow) or null / undefined: the direction is not enforced.
bool ParsePolicyMap(const Napi::Value& v, std::shared_ptr<PolicyMap>* out) {
  if (v.IsNull() || v.IsUndefined()) return true;
  if (!v.IsBuffer()) return false;
  auto b = v.As<Napi::Buffer<uint8_t>>();
  return rows::decode_policy(b.Data(), b.Length(), out);
}

}  // namespace

PolicyEngine* DeviceWrap::Engine(Napi::Env env) {
  PolicyEngine* pe = dev_.policy();
  if (!pe) {
    Napi::Error e = Napi::Error::New(env, "policy is not enabled on this device (enablePolicy())");
    e.Set("code", Napi::String::New(env, "WM_POLICY_DISABLED"));
    e.ThrowAsJavaScriptException();
  }
  return pe;
}

Napi::Value DeviceWrap::EnablePolicy(const Napi::CallbackInfo& info) {
  dev_.enable_policy();
  return info.Env().Undefined();
}

// setPeerIdentity(peer, tagged, defaultIdentity, clusterIds[])
Napi::Value DeviceWrap::SetPeerIdentity(const Napi::CallbackInfo& info) {
  if (!info[3].IsArray()) return ThrowType(info.Env(), "setPeerIdentity(peer, tagged, defaultIdentity, clusters[])");
  Napi::Array a = info[3].As<Napi::Array>();
  std::vector<uint8_t> clusters;
  for (uint32_t i = 0; i < a.Length(); i++) clusters.push_back(uint8_t(a.Get(i).As<Napi::Number>().Uint32Value()));
  dev_.set_peer_identity(info[0].As<Napi::Number>().Uint32Value(), info[1].ToBoolean(),
                         info[2].As<Napi::Number>().Uint32Value(), clusters);
  return info.Env().Undefined();
}

// ipcacheUpdate(upserts, removes): Buffers of rows.h IpcacheRow (28 bytes).
Napi::Value DeviceWrap::IpcacheUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  for (int arg = 0; arg < 2; arg++) {
    if (!info[arg].IsBuffer()) return ThrowType(env, "ipcacheUpdate(upserts: Buffer, removes: Buffer)");
    auto b = info[arg].As<Napi::Buffer<uint8_t>>();
    if (b.Length() % sizeof(rows::IpcacheRow)) return ThrowType(env, "ipcache rows are 28 bytes");
    for (size_t i = 0; i < b.Length() / sizeof(rows::IpcacheRow); i++) {
      rows::IpcacheRow r = rows::row_at<rows::IpcacheRow>(b.Data(), i);
      int fam = rows::family_bytes(r.family), cidr = r.prefix_len;
      if (!fam || cidr > fam * 8) return ThrowType(env, "ipcache row: bad family (4 or 6) or prefix length");
      if (arg == 0)
        pe->ipcache_upsert(r.addr, fam, cidr, IpcacheValue{r.identity, r.endpoint});
      else
        pe->ipcache_remove(r.addr, fam, cidr);
    }
  }
  return env.Undefined();
}

Napi::Value DeviceWrap::IpcacheLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  if (!info[0].IsBuffer()) return ThrowType(env, "ipcacheLookup(address: Buffer)");
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  if (b.Length() != 4 && b.Length() != 16) return ThrowType(env, "address must be 4 or 16 bytes");
  IpcacheValue v;
  if (!pe->ipcache_lookup(b.Data(), int(b.Length()), &v)) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("identity", double(v.identity));
  o.Set("endpoint", double(v.endpoint));
  return o;
}

// setEndpointPolicy(endpointId, identity, ingress: Buffer | null, egress: Buffer | null)
Napi::Value DeviceWrap::SetEndpointPolicy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  std::shared_ptr<PolicyMap> in, eg;
  if (!ParsePolicyMap(info[2], &in) || !ParsePolicyMap(info[3], &eg))
    return ThrowType(env, "policy maps are null or Buffers of 16-byte rows with port_lo <= port_hi");
  pe->set_endpoint(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(), std::move(in),
                   std::move(eg));
  return env.Undefined();
}

// "ingress" | "egress" -> true for ingress; anything else throws.
static bool ParseDirection(const Napi::Value& v, bool* ingress) {
  if (!v.IsString()) return false;
  std::string d = v.As<Napi::String>().Utf8Value();
  *ingress = d == "ingress";
  return d == "ingress" || d == "egress";
}

// policyMapUpdate(endpointId, direction, upserts: Buffer, removes: Buffer) -> boolean: a delta to
// one enforced map (PolicyMap::update); false when the endpoint or that map does not exist.
Napi::Value DeviceWrap::PolicyMapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  bool ingress = false;
  std::vector<PolicyEntry> ups, dels;
  if (!info[0].IsNumber() || !ParseDirection(info[1], &ingress) || !info[2].IsBuffer() || !info[3].IsBuffer())
    return ThrowType(env, "policyMapUpdate(endpoint, 'ingress' | 'egress', upserts: Buffer, removes: Buffer)");
  auto u = info[2].As<Napi::Buffer<uint8_t>>(), d = info[3].As<Napi::Buffer<uint8_t>>();
  if (!rows::decode_policy_entries(u.Data(), u.Length(), &ups) || !rows::decode_policy_entries(d.Data(), d.Length(), &dels))
    return ThrowType(env, "policy rows are 16 bytes with a known action and port_lo <= port_hi");
  return Napi::Boolean::New(env, pe->policy_map_update(info[0].As<Napi::Number>().Uint32Value(), ingress, ups, dels));
}

// policyMapEntries(endpointId, direction) -> Buffer of policy rows grouped by identity, or null (no such map).
Napi::Value DeviceWrap::PolicyMapEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  bool ingress = false;
  if (!info[0].IsNumber() || !ParseDirection(info[1], &ingress))
    return ThrowType(env, "policyMapEntries(endpoint, 'ingress' | 'egress')");
  std::vector<PolicyEntry> es;
  if (!pe->policy_map_entries(info[0].As<Napi::Number>().Uint32Value(), ingress, &es)) return env.Null();
  auto b = Napi::Buffer<uint8_t>::New(env, es.size() * sizeof(rows::PolicyRow));
  for (size_t i = 0; i < es.size(); i++) {
    rows::PolicyRow r{};
    r.identity = es[i].identity;
    r.proto = es[i].proto;
    r.action = es[i].action;
    r.port_lo = es[i].port_lo;
    r.port_hi = es[i].port_hi;
    r.rule = es[i].rule;
    std::memcpy(b.Data() + i * sizeof r, &r, sizeof r);
  }
  return b;
}

Napi::Value DeviceWrap::RemoveEndpoint(const Napi::CallbackInfo& info) {
  PolicyEngine* pe = Engine(info.Env());
  if (pe) pe->remove_endpoint(info[0].As<Napi::Number>().Uint32Value());
  return info.Env().Undefined();
}

// drainFlows() -> { records: Buffer (72-byte FlowRecords), lost }
Napi::Value DeviceWrap::DrainFlows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  std::vector<FlowRecord> recs;
  uint64_t lost = pe->drain_flows(&recs);
  Napi::Object o = Napi::Object::New(env);
  o.Set("records", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(recs.data()),
                                               recs.size() * sizeof(FlowRecord)));
  o.Set("lost", double(lost));
  return o;
}

// policyCheck(packet: Buffer, srcIdentity?: number) -> the engine's verdict on one
// IP packet, as the TX thread (no identity: read from the TUN) or the RX
// thread (from peer 1, tagged with srcIdentity) would take it; 'malformed'
// when parsing refuses it. For tests and tools: no packet moves.
Napi::Value DeviceWrap::PolicyCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  if (!info[0].IsBuffer()) return ThrowType(env, "policyCheck(packet: Buffer, srcIdentity?: number)");
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  IpInfo ip;
  PacketView pv;
  if (!parse_ip(b.Data(), b.Length(), &ip) || !parse_l4(b.Data(), ip, &pv))
    return Napi::String::New(env, "malformed");
  uint64_t wall = uint64_t(monotonic_ms());
  std::shared_lock<std::shared_mutex> lock(pe->mu);
  if (info[1].IsNumber()) {
    static const char* const rx[] = {"drop", "deliver", "redirect"};
    return Napi::String::New(env, rx[pe->rx(pv, info[1].As<Napi::Number>().Uint32Value(), 1, wall)]);
  }
  static const char* const tx[] = {"drop", "forward", "hairpin", "redirect"};
  uint32_t wire = 0;
  return Napi::String::New(env, tx[pe->tx(pv, wall, &wire)]);
}

// setConntrackLimits(maxEntries, perEndpoint, natPerEndpoint?): the policy conntrack's bounds; the
// service NAT table gets maxEntries too (a flow holds two of its entries) and
// natPerEndpoint per client (default: LoadBalancer::kDefaultPerClient).
Napi::Value DeviceWrap::SetConntrackLimits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  if (!info[0].IsNumber() || !info[1].IsNumber()) return ThrowType(env, "setConntrackLimits(maxEntries, perEndpoint)");
  int64_t max = info[0].As<Napi::Number>().Int64Value(), per = info[1].As<Napi::Number>().Int64Value();
  if (max < 1 || per < 1) return ThrowType(env, "conntrack limits must be positive");
  int64_t nat_per = info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : int64_t(LoadBalancer::kDefaultPerClient);
  if (nat_per < 2) return ThrowType(env, "natPerEndpoint must be at least 2 (one flow)");
  pe->ct_set_limits(size_t(max), size_t(per));
  dev_.lb()->set_nat_limit(size_t(max), size_t(nat_per));
  return env.Undefined();
}

Napi::Value DeviceWrap::SetHostFirewall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (pe) pe->set_host_firewall(info[0].ToBoolean());
  return env.Undefined();
}

Napi::Value DeviceWrap::CtEndpointEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PolicyEngine* pe = Engine(env);
  if (!pe) return env.Undefined();
  return Napi::Number::New(env, double(pe->ct_endpoint_entries(info[0].As<Napi::Number>().Uint32Value())));
}

Napi::Value DeviceWrap::CtGc(const Napi::CallbackInfo& info) {
  PolicyEngine* pe = Engine(info.Env());
  if (!pe) return info.Env().Undefined();
  size_t n = pe->ct_gc() + dev_.lb()->gc(uint32_t(monotonic_ms() / 1000));
  return Napi::Number::New(info.Env(), double(n));
}

}  // namespace addon
}  // namespace wm
