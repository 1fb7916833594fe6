#include "engine.h"

#include "icmp.h"

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
    "drop_fragment",
    "drop_ipv6_ext_chain",
    "policy_to_kernel_packets",
    "policy_icmp_unrecorded",
    "drop_transit",
};

namespace {
FlowTuple tuple(const PacketView& pv) {
  return FlowTuple{pv.ip.src, pv.ip.dst, pv.ip.addr_len, pv.sport, pv.dport, pv.proto, pv.tcp_flags, pv.icmp_request,
                   pv.icmp_reply};
}
}  // namespace

bool parse_l4(const uint8_t* pkt, const IpInfo& ip, PacketView* out) {
  out->ip = ip;
  out->sport = out->dport = 0;
  out->tcp_flags = 0;
  out->has_ports = false;
  out->icmp_error = false;
  out->stateless = false;
  out->icmp_request = 0;
  out->icmp_reply = false;
  out->quoted.valid = false;
  UpperLayer ul;
  if (!find_upper_layer(pkt, ip, &ul)) return false;
  out->proto = ul.proto;
  out->l4 = ul.kind;
  if (ul.kind != UpperLayer::kFound) return true;  // no L4 header to read (check() decides)
  const uint8_t* l4 = pkt + ul.offset;
  size_t l4len = ip.total_len - ul.offset;
  switch (ul.proto) {
    case kProtoTCP:
      if (l4len < 14) return false;
      out->sport = load_be16(l4);
      out->dport = load_be16(l4 + 2);
      out->tcp_flags = l4[13];
      out->has_ports = true;
      return true;
    case kProtoUDP:
    case kProtoSCTP:  // ports at the same offsets
      if (l4len < 8) return false;
      out->sport = load_be16(l4);
      out->dport = load_be16(l4 + 2);
      out->has_ports = true;
      return true;
    case kProtoICMP:
    case kProtoICMPv6: {
      if (l4len < 8) return false;
      // ICMP in IPv6 / ICMPv6 in IPv4: no meaning, no conntrack
      if (ip.version == 4 ? ul.proto != kProtoICMP : ul.proto != kProtoICMPv6)
        out->stateless = true;
      else
        parse_icmp(l4, l4len, ip.version, out);
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

size_t PolicyEngine::ipcache_locals() {
  std::shared_lock<std::shared_mutex> lock(mu);
  return ipcache_.locals_held();
}

void PolicyEngine::set_endpoint(uint32_t id, uint32_t identity, std::shared_ptr<PolicyMap> ingress,
                                std::shared_ptr<PolicyMap> egress) {
  Endpoint e{id, identity, std::move(ingress), std::move(egress)};
  std::unique_lock<std::shared_mutex> lock(mu);
  std::swap(endpoints_[id], e);  // the old maps are freed with e, after the lock
}

bool PolicyEngine::policy_map_update(uint32_t id, bool ingress, const std::vector<PolicyEntry>& upserts,
                                     const std::vector<PolicyEntry>& removes) {
  std::shared_ptr<PolicyMap> m;  // kept alive for the compaction below
  {
    std::unique_lock<std::shared_mutex> lock(mu);
    auto it = endpoints_.find(id);
    if (it == endpoints_.end()) return false;
    m = ingress ? it->second.ingress : it->second.egress;
    if (!m) return false;
    m->update(upserts, removes);
    if (!m->wants_compaction()) return true;
  }
  compact(id, ingress, m);
  return true;
}

// The copy under mu shared (writers out, packet threads on), the swap under mu
// exclusive, O(1); the locking rules are policymap.h's.
bool PolicyEngine::compact(uint32_t id, bool ingress, const std::shared_ptr<PolicyMap>& old) {
  std::shared_ptr<PolicyMap> fresh;  // after the swap: the displaced map, freed after the lock
  uint64_t generation;
  {
    std::shared_lock<std::shared_mutex> lock(mu);
    generation = old->generation();
    fresh = old->compacted();
  }
  std::unique_lock<std::shared_mutex> lock(mu);
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) return false;
  std::shared_ptr<PolicyMap>& slot = ingress ? it->second.ingress : it->second.egress;
  // a writer came in between (new map, or an update to this one): the copy is stale
  if (slot != old || old->generation() != generation) {
    compactions_dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  slot.swap(fresh);
  compactions_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool PolicyEngine::policy_lookup(uint32_t endpoint, bool ingress, uint32_t identity, uint8_t proto, uint16_t port,
                                 PolicyResult* out) {
  auto it = endpoints_.find(endpoint);
  if (it == endpoints_.end()) return false;
  const PolicyMap* m = (ingress ? it->second.ingress : it->second.egress).get();
  if (!m) return false;
  *out = m->lookup(identity, proto, port, true);
  return true;
}

bool PolicyEngine::policy_map_entries(uint32_t id, bool ingress, std::vector<PolicyEntry>* out, size_t* slots) {
  std::shared_lock<std::shared_mutex> lock(mu);
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) return false;
  const PolicyMap* m = (ingress ? it->second.ingress : it->second.egress).get();
  if (!m) return false;
  *out = m->entries();
  if (slots) *slots = m->slots();
  return true;
}

void PolicyEngine::remove_endpoint(uint32_t id) {
  std::shared_ptr<PolicyMap> in, out;  // freed after the lock is released
  std::unique_lock<std::shared_mutex> lock(mu);
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) return;
  in = std::move(it->second.ingress);
  out = std::move(it->second.egress);
  endpoints_.erase(it);
}

void PolicyEngine::set_host_firewall(bool on) {
  std::shared_ptr<PolicyMap> in;
  if (on) in = std::make_shared<PolicyMap>(std::vector<PolicyEntry>{{kIdentityRemoteNode, 0, kActionAllow, 0, 65535, 0}});
  std::unique_lock<std::shared_mutex> lock(mu);
  std::swap(host_.ingress, in);  // the old map is freed with `in`, after the lock
  host_firewall_ = on;
}

void PolicyEngine::record(const PacketView& pv, FlowVerdict v, FlowReason r, FlowDirection d, uint32_t src_id,
                          uint32_t dst_id, uint32_t rule, uint32_t peer, uint64_t wall_ms, uint8_t flags) {
  FlowRecord f;
  std::memset(&f, 0, sizeof f);
  f.time_ms = wall_ms;
  f.verdict = v;
  f.reason = r;
  f.direction = d;
  f.proto = pv.proto;
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

PolicyEngine::CheckResult PolicyEngine::decide(const Endpoint& ep, CtScope scope, uint32_t remote,
                                              const PacketView& pv, uint32_t src_id, uint32_t dst_id, uint32_t peer,
                                              uint64_t wall_ms, uint8_t flags, Admission* adm) {
  adm->pending = false;
  // An ICMP error passes like a reply of the flow it quotes, if that flow is
  // tracked, was sent by the error's destination, and the error comes from
  // who may send one (related()); anything else (a forged "unreachable" or
  // "fragmentation needed" aimed at another pod's connection) is an ICMP
  // packet like any other, for policy to decide.
  if (pv.icmp_error && related(pv, src_id)) return kCheckPass;
  FlowTuple t = tuple(pv);
  FlowDirection dir = scope == kCtIngress ? kFlowIngress : kFlowEgress;
  const PolicyMap* m = (scope == kCtIngress ? ep.ingress : ep.egress).get();
  // An over-long chain hides its protocol: even "allow all protocols" could
  // be the allowed twin of a denied port, so it never passes enforced policy
  // (and never gets a conntrack entry it could later ride on).
  if (m && pv.l4 == UpperLayer::kChainTooLong) {
    count(kPolDropIpv6ExtChain);
    record(pv, kFlowDropped, kReasonIpv6ExtChain, dir, src_id, dst_id, 0, peer, wall_ms, flags);
    return kCheckDrop;
  }
  uint32_t now = now_s();
  // (a redirected flow's later packets are caught by the device's redirect table before this)
  // A flow admitted for the proxy goes to the proxy again (or nowhere, while it is down).
  // Stateless ICMP (an error related() did not pass included) meets policy alone.
  CtResult ct = pv.stateless ? kCtMiss : ct_.lookup(scope, t, now);
  if (ct == kCtProxied) return kCheckRedirect;
  if (ct != kCtMiss) return kCheckPass;
  uint32_t rule = 0;
  bool redirect = false;
  if (m) {
    PolicyResult res = m->lookup(remote, pv.proto, pv.dport, pv.has_ports);
    // L7 needs the proxy: only for ingress TCP over IPv4 (the proxy's address family); anything else is dropped
    redirect = res.verdict == kPolicyRedirect;
    bool proxyable = scope == kCtIngress && pv.proto == kProtoTCP && pv.ip.version == 4 && pv.has_ports;
    if (res.verdict != kPolicyAllow && !(redirect && proxyable)) {
      drop(pv, res, dir, src_id, dst_id, peer, wall_ms, flags);
      return kCheckDrop;
    }
    rule = res.rule;
  }
  // an ICMP answer finds its request's entry but makes none: unsolicited, it meets policy each time
  bool track = !pv.stateless && !pv.icmp_reply;
  *adm = Admission{true, scope, redirect, ep.id, rule, src_id, dst_id, peer, wall_ms, flags, track};
  return redirect ? kCheckRedirect : kCheckPass;
}

bool PolicyEngine::related(const PacketView& pv, uint32_t src_id) {
  const PacketView::Quoted& q = pv.quoted;
  size_t n = size_t(pv.ip.addr_len);
  if (!q.valid || std::memcmp(q.src, pv.ip.dst, n) != 0) return false;
  // The sender: the quoted flow's destination itself (a port unreachable),
  // or a router on the path (a node or the world: "fragmentation needed",
  // "time exceeded"); a pod or reserved endpoint identity that is neither
  // is a third party.
  bool router = src_id == kIdentityHost || src_id == kIdentityRemoteNode || src_id == kIdentityWorld ||
                src_id >= kIdentityLocalScope;
  if (!router && std::memcmp(pv.ip.src, q.dst, n) != 0) return false;
  return ct_.tracked(
      FlowTuple{q.src, q.dst, pv.ip.addr_len, q.sport, q.dport, q.proto, 0, q.icmp_request, q.icmp_reply});
}

bool PolicyEngine::admit(const PacketView& pv, const Admission& a) {
  if (!a.pending) return true;
  // ICMP no entry tracks passes again on every packet: recorded as a new flow
  // only when icmp_records_ has not seen it lately (icmprecord.h).
  if (!a.track && !untracked_is_new(pv, a)) return true;
  FlowTuple t = tuple(pv);
  CtCreate c = a.track ? ct_.create(a.scope, t, now_s(), a.rule, a.endpoint, a.redirect) : kCtCreated;
  bool full = c == kCtTableFull || c == kCtQuotaFull || c == kCtSourceFull, refused = c == kCtSourceFull;
  if (full) count(kPolCtFull);
  if (!refused) count(a.redirect ? kPolRedirected : kPolForwardedNew);
  record(pv, refused ? kFlowDropped : kFlowForwarded, full ? kReasonCtFull : kReasonNone,
         a.scope == kCtIngress ? kFlowIngress : kFlowEgress, a.src_id, a.dst_id, a.rule, a.peer, a.wall_ms,
         uint8_t(a.flags | (a.redirect ? kFlowFlagProxy : 0)));
  return !refused;
}

bool PolicyEngine::untracked_is_new(const PacketView& pv, const Admission& a) {
  IcmpRecordGate::Tuple t;
  t.direction = a.scope == kCtIngress ? kFlowIngress : kFlowEgress;
  t.family = uint8_t(pv.ip.version);
  t.proto = pv.proto;
  t.src_identity = a.src_id;
  t.dst_identity = a.dst_id;
  std::memcpy(t.src, pv.ip.src, size_t(pv.ip.addr_len));
  std::memcpy(t.dst, pv.ip.dst, size_t(pv.ip.addr_len));
  // A pod of this node by its endpoint, a remote node by its peer, anyone
  // else (the world, and the host: its egress has endpoint 0, not a pod) by
  // its source prefix: outside floods never spend a pod's budget.
  using Sender = IcmpRecordGate::Sender;
  uint32_t pod = a.scope == kCtEgress ? a.endpoint : a.source_endpoint;
  Sender s = pod      ? Sender::pod(pod)
             : a.peer ? Sender::peer(a.peer)
                      : Sender::source(t.family, pv.ip.src);
  IcmpRecordGate::Verdict v = icmp_records_.admit(t, s, now_s());
  if (v == IcmpRecordGate::kOverBudget) count(kPolIcmpUnrecorded);
  return v == IcmpRecordGate::kRecord;
}

void PolicyEngine::drop(const PacketView& pv, PolicyResult res, FlowDirection dir, uint32_t src_id, uint32_t dst_id,
                        uint32_t peer, uint64_t wall_ms, uint8_t flags) {
  // A packet without a readable L4 header is counted by why it had none: the
  // rule that matched (or not) only saw its protocol.
  FlowReason r = pv.l4 == UpperLayer::kLaterFragment   ? kReasonFragment
                 : pv.l4 != UpperLayer::kFound          ? kReasonIpv6ExtChain
                 : res.verdict == kPolicyDeny           ? kReasonPolicyDeny
                                                        : kReasonPolicyDefaultDeny;
  count(r == kReasonFragment       ? kPolDropFragment
        : r == kReasonIpv6ExtChain ? kPolDropIpv6ExtChain
        : r == kReasonPolicyDeny   ? kPolDropDeny
                                   : kPolDropDefaultDeny);
  record(pv, kFlowDropped, r, dir, src_id, dst_id, res.rule, peer, wall_ms, flags);
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
  // a pod's packet (before the node's own flows borrow the host pseudo-endpoint below)
  if (src_local) *src_local = se != nullptr;
  // The node's own flows (the gateway connects from the router address) get
  // conntrack entries, so their replies pass the host firewall.
  if (!se && host_firewall_ && s.identity == kIdentityHost) se = &host_;
  uint32_t src_id = se ? se->identity : s.identity;
  uint32_t dst_id = de ? de->identity : d.identity;
  uint8_t flags = de ? 2 : 0;
  // Node-local (CIDR) identities mean nothing to the receiver.
  *wire_identity = src_id >= kIdentityLocalScope ? kIdentityWorld : src_id;
  // Both ends decide before either gets a conntrack entry: a flow the
  // destination refuses leaves nothing behind at the source either.
  Admission eg, in;
  if (se && decide(*se, kCtEgress, dst_id, pv, src_id, dst_id, 0, wall_ms, flags, &eg) == kCheckDrop) return kTxDrop;
  if (de) {
    CheckResult r = decide(*de, kCtIngress, src_id, pv, src_id, dst_id, 0, wall_ms, flags, &in);
    in.source_endpoint = se ? se->id : 0;
    if (r == kCheckDrop || !admit(pv, in)) return kTxDrop;
    admit(pv, eg);
    count(kPolHairpin);
    return r == kCheckRedirect ? kTxRedirect : kTxHairpin;
  }
  admit(pv, eg);
  return kTxForward;
}

PolicyEngine::RxAction PolicyEngine::rx(const PacketView& pv, uint32_t src_identity, uint32_t peer, uint64_t wall_ms) {
  IpcacheValue d{kIdentityWorld, 0};
  bool known = ipcache_.lookup(pv.ip.dst, pv.ip.addr_len, &d);
  const Endpoint* ep = nullptr;
  if (known && d.endpoint) {
    auto it = endpoints_.find(d.endpoint);
    if (it != endpoints_.end()) ep = &it->second;
  }
  if (!ep) {
    // A pod elsewhere (identity of a cluster, not reserved, not a CIDR): relayed, checked where it lives.
    bool pod = known && d.identity >= 256 && d.identity < kIdentityLocalScope;
    if (pod) return kRxDeliver;
    // Neither a pod nor this node (the world, an underlay host, a VIP, another node's address): the kernel would
    // forward it, so any connected node (tagging `host`, read as remote-node) could route through us into our
    // underlay. The mesh sends a peer nothing of the kind (hosts' own traffic is not tunnelled; relays carry
    // pods' traffic), so it is dropped whatever it tags, and whatever the host firewall setting: that setting
    // only governs packets addressed to this node. The node's own flows' replies come to its own (host)
    // addresses, which the host endpoint's check below still passes.
    if (!(known && d.identity == kIdentityHost)) {
      count(kPolDropTransit);
      record(pv, kFlowDropped, kReasonTransit, kFlowIngress, src_identity, d.identity, 0, peer, wall_ms, 0);
      return kRxDrop;
    }
    if (!host_firewall_) return kRxDeliver;
    ep = &host_;  // this node itself
  }
  Admission adm;
  CheckResult r = decide(*ep, kCtIngress, src_identity, pv, src_identity, ep == &host_ ? d.identity : ep->identity, peer,
                         wall_ms, 0, &adm);
  if (!admit(pv, adm)) return kRxDrop;
  switch (r) {
    case kCheckDrop:
      return kRxDrop;
    case kCheckRedirect:
      return kRxRedirect;
    default:
      return kRxDeliver;
  }
}

}  // namespace wm
