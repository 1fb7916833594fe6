#include "engine.h"

#include <time.h>

#include <cstring>

namespace wm {

const char* const kPolicyCounterNames[kPolCounterCount] = {
    "policy_forwarded_new_flows",
    "drop_policy_denied",
    "drop_policy_default_deny",
    "drop_identity_cluster_mismatch",
    "drop_source_not_allowed",
    "drop_malformed_tag",
    "conntrack_full",
    "policy_hairpin_packets",
    "policy_redirected_flows",
    "policy_to_kernel_packets",
};

bool parse_l4(const uint8_t* pkt, const IpInfo& ip, PacketView* out) {
  out->ip = ip;
  out->sport = out->dport = 0;
  out->tcp_flags = 0;
  out->has_ports = false;
  out->icmp_error = false;
  const uint8_t* l4 = pkt + ip.header_len;
  size_t l4len = ip.total_len - ip.header_len;
  if (ip.fragment && (load_be16(pkt + 6) & 0x1FFF) != 0) return true;  // later fragment: no L4 header
  switch (ip.proto) {
    case kProtoTCP:
      if (l4len < 14) return false;
      out->sport = load_be16(l4);
      out->dport = load_be16(l4 + 2);
      out->tcp_flags = l4[13];
      out->has_ports = true;
      return true;
    case kProtoUDP:
    case 132:  // SCTP: ports at the same offsets
      if (l4len < 8) return false;
      out->sport = load_be16(l4);
      out->dport = load_be16(l4 + 2);
      out->has_ports = true;
      return true;
    case kProtoICMP:
    case kProtoICMPv6: {
      if (l4len < 8) return false;
      uint8_t type = l4[0];
      bool v4 = ip.proto == kProtoICMP;
      bool echo = v4 ? (type == 8 || type == 0) : (type == 128 || type == 129);
      if (echo) {
        // Request and reply share the identifier: use it as both "ports" so a
        // reply normalizes to its request's conntrack key.
        out->sport = out->dport = load_be16(l4 + 4);
      } else {
        out->icmp_error = v4 ? (type == 3 || type == 11 || type == 12) : (type >= 1 && type <= 4);
      }
      return true;
    }
    default:
      return true;
  }
}

PolicyEngine::PolicyEngine() {
  for (auto& c : counters_) c.store(0);
}

uint32_t PolicyEngine::now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint32_t(ts.tv_sec);
}

void PolicyEngine::ipcache_upsert(const uint8_t* addr, int bytes, int cidr, IpcacheValue v) {
  std::unique_lock<std::shared_mutex> lock(mu);
  ipcache_.upsert(addr, bytes, cidr, v);
}

bool PolicyEngine::ipcache_remove(const uint8_t* addr, int bytes, int cidr) {
  std::unique_lock<std::shared_mutex> lock(mu);
  return ipcache_.remove(addr, bytes, cidr);
}

bool PolicyEngine::ipcache_lookup(const uint8_t* addr, int bytes, IpcacheValue* out) {
  std::shared_lock<std::shared_mutex> lock(mu);
  return ipcache_.lookup(addr, bytes, out);
}

void PolicyEngine::ipcache_reserve(size_t n) {
  std::unique_lock<std::shared_mutex> lock(mu);
  ipcache_.reserve(n);
}

size_t PolicyEngine::ipcache_size() {
  std::shared_lock<std::shared_mutex> lock(mu);
  return ipcache_.size();
}

void PolicyEngine::set_endpoint(uint32_t id, uint32_t identity, std::shared_ptr<const PolicyMap> ingress,
                                std::shared_ptr<const PolicyMap> egress) {
  Endpoint e{identity, std::move(ingress), std::move(egress)};
  std::unique_lock<std::shared_mutex> lock(mu);
  std::swap(endpoints_[id], e);  // the old maps are freed with e, after the lock
}

void PolicyEngine::remove_endpoint(uint32_t id) {
  std::shared_ptr<const PolicyMap> in, out;  // freed after the lock is released
  std::unique_lock<std::shared_mutex> lock(mu);
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) return;
  in = std::move(it->second.ingress);
  out = std::move(it->second.egress);
  endpoints_.erase(it);
}

void PolicyEngine::record(const PacketView& pv, FlowVerdict v, FlowReason r, FlowDirection d, uint32_t src_id,
                          uint32_t dst_id, uint32_t rule, uint32_t peer, uint64_t wall_ms, uint8_t flags) {
  FlowRecord f;
  std::memset(&f, 0, sizeof f);
  f.time_ms = wall_ms;
  f.verdict = v;
  f.reason = r;
  f.direction = d;
  f.proto = pv.ip.proto;
  f.family = uint8_t(pv.ip.version);
  f.flags = flags;
  f.sport = pv.sport;
  f.dport = pv.dport;
  f.src_identity = src_id;
  f.dst_identity = dst_id;
  f.rule = rule;
  f.peer = peer;
  if (pv.ip.src) std::memcpy(f.src, pv.ip.src, size_t(pv.ip.addr_len));
  if (pv.ip.dst) std::memcpy(f.dst, pv.ip.dst, size_t(pv.ip.addr_len));
  flows_.push(f);
}

void PolicyEngine::record_drop(const PacketView* pv, FlowReason reason, uint32_t src_identity, uint32_t peer,
                               uint64_t wall_ms) {
  count(reason == kReasonIdentityCluster    ? kPolDropIdentityCluster
        : reason == kReasonSourceNotAllowed ? kPolDropSourceNotAllowed
                                            : kPolDropMalformedTag);
  PacketView empty;
  const PacketView& v = pv ? *pv : empty;
  uint32_t dst_id = 0;
  IpcacheValue d;
  if (pv && ipcache_.lookup(pv->ip.dst, pv->ip.addr_len, &d)) dst_id = d.identity;
  record(v, kFlowDropped, reason, kFlowIngress, src_identity, dst_id, 0, peer, wall_ms, 0);
}

uint32_t PolicyEngine::untagged_identity(const PacketView& pv, uint32_t peer_default) {
  IpcacheValue s;
  if (ipcache_.lookup(pv.ip.src, pv.ip.addr_len, &s) && s.identity >= kIdentityLocalScope) return s.identity;
  return peer_default;
}

PolicyEngine::CheckResult PolicyEngine::check(const Endpoint& ep, CtScope scope, uint32_t remote, const PacketView& pv,
                                             uint32_t src_id, uint32_t dst_id, uint32_t peer, uint64_t wall_ms,
                                             uint8_t flags) {
  if (pv.icmp_error) return kCheckPass;  // errors about a flow pass like its replies (docs/architecture.md)
  FlowTuple t{pv.ip.src, pv.ip.dst, pv.ip.addr_len, pv.sport, pv.dport, pv.ip.proto, pv.tcp_flags};
  uint32_t now = now_s();
  // (a redirected flow's later packets are caught by the device's redirect table before this)
  if (ct_.lookup(scope, t, now) != kCtMiss) return kCheckPass;
  FlowDirection dir = scope == kCtIngress ? kFlowIngress : kFlowEgress;
  const PolicyMap* m = (scope == kCtIngress ? ep.ingress : ep.egress).get();
  uint32_t rule = 0;
  bool redirect = false;
  if (m) {
    PolicyResult res = m->lookup(remote, pv.ip.proto, pv.dport, pv.has_ports);
    // L7 needs the proxy: only for ingress TCP over IPv4 (the proxy's address family); anything else is dropped
    redirect = res.verdict == kPolicyRedirect;
    bool proxyable = scope == kCtIngress && pv.ip.proto == kProtoTCP && pv.ip.version == 4 && pv.has_ports;
    if (res.verdict != kPolicyAllow && !(redirect && proxyable)) {
      bool explicit_deny = res.verdict == kPolicyDeny;
      count(explicit_deny ? kPolDropDeny : kPolDropDefaultDeny);
      record(pv, kFlowDropped, explicit_deny ? kReasonPolicyDeny : kReasonPolicyDefaultDeny, dir, src_id, dst_id,
             res.rule, peer, wall_ms, flags);
      return kCheckDrop;
    }
    rule = res.rule;
  }
  FlowReason r = kReasonNone;
  if (!ct_.create(scope, t, now, rule)) {
    count(kPolCtFull);
    r = kReasonCtFull;
  }
  count(redirect ? kPolRedirected : kPolForwardedNew);
  record(pv, kFlowForwarded, r, dir, src_id, dst_id, rule, peer, wall_ms, uint8_t(flags | (redirect ? kFlowFlagProxy : 0)));
  return redirect ? kCheckRedirect : kCheckPass;
}

PolicyEngine::TxAction PolicyEngine::tx(const PacketView& pv, uint64_t wall_ms, uint32_t* wire_identity, bool* src_local) {
  IpcacheValue s{kIdentityWorld, 0}, d{kIdentityWorld, 0};
  ipcache_.lookup(pv.ip.src, pv.ip.addr_len, &s);
  ipcache_.lookup(pv.ip.dst, pv.ip.addr_len, &d);
  const Endpoint* se = nullptr;
  const Endpoint* de = nullptr;
  if (s.endpoint) {
    auto it = endpoints_.find(s.endpoint);
    if (it != endpoints_.end()) se = &it->second;
  }
  if (d.endpoint) {
    auto it = endpoints_.find(d.endpoint);
    if (it != endpoints_.end()) de = &it->second;
  }
  if (src_local) *src_local = se != nullptr;
  uint32_t src_id = se ? se->identity : s.identity;
  uint32_t dst_id = de ? de->identity : d.identity;
  uint8_t flags = de ? 2 : 0;
  // Node-local (CIDR) identities mean nothing to the receiver.
  *wire_identity = src_id >= kIdentityLocalScope ? kIdentityWorld : src_id;
  if (se && check(*se, kCtEgress, dst_id, pv, src_id, dst_id, 0, wall_ms, flags) == kCheckDrop) return kTxDrop;
  if (de) {
    CheckResult r = check(*de, kCtIngress, src_id, pv, src_id, dst_id, 0, wall_ms, flags);
    if (r == kCheckDrop) return kTxDrop;
    count(kPolHairpin);
    return r == kCheckRedirect ? kTxRedirect : kTxHairpin;
  }
  return kTxForward;
}

PolicyEngine::RxAction PolicyEngine::rx(const PacketView& pv, uint32_t src_identity, uint32_t peer, uint64_t wall_ms) {
  IpcacheValue d;
  if (!ipcache_.lookup(pv.ip.dst, pv.ip.addr_len, &d) || !d.endpoint) return kRxDeliver;  // not ours to check (relay)
  auto it = endpoints_.find(d.endpoint);
  if (it == endpoints_.end()) return kRxDeliver;
  switch (check(it->second, kCtIngress, src_identity, pv, src_identity, it->second.identity, peer, wall_ms, 0)) {
    case kCheckDrop:
      return kRxDrop;
    case kCheckRedirect:
      return kRxRedirect;
    default:
      return kRxDeliver;
  }
}

}  // namespace wm
