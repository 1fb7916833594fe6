// PolicyEngine: identity and policy decisions of the mesh data path.
//
//   TX (a packet read from the TUN): ipcache(src) -> source identity and local
//     endpoint -> egress check of that endpoint; ipcache(dst) -> destination
//     identity; a destination on this node is delivered back into the TUN
//     (hairpin) after the destination endpoint's ingress check, anything else
//     goes to its peer tagged with the source identity.
//   RX (a decrypted packet from a peer): the identity from the tag (checked by
//     the device against the clusters the peer may speak for) -> ingress check
//     of the destination endpoint, if it is on this node.
//   A check: conntrack first (established flows and replies pass), then the
//     endpoint's policy map for the direction (none = not enforced, allow);
//     an allowed new flow gets a conntrack entry and a flow record, a drop a
//     flow record and a counter by reason.
//
// Locking: mu guards the ipcache and the endpoint table. Packet threads hold
// it shared for a whole batch; the control thread holds it exclusively for a
// table edit. A rule change swaps whole policy maps (built outside the lock,
// shared_ptr): the packet threads wait for a pointer swap. An identity that
// appears or goes patches the maps in place (policy_map_update) under the
// exclusive lock: they wait for that identity's entries to be written. The
// compaction such patches call for now and then is copied under mu shared and
// swapped in under the exclusive lock (a pointer swap; policymap.h states the
// rules and why no update is lost).
// Conntrack and the flow ring have their own locks; the ICMP record gate (icmprecord.h) is lock-free.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <unordered_map>

#include "../net/ip.h"
#include "conntrack.h"
#include "flows.h"
#include "icmprecord.h"
#include "ipcache.h"
#include "policymap.h"

namespace wm {

// Cilium's reserved identities (all below 256, cluster bits zero).
constexpr uint32_t kIdentityHost = 1, kIdentityWorld = 2, kIdentityUnmanaged = 3, kIdentityHealth = 4,
                   kIdentityInit = 5, kIdentityRemoteNode = 6;
constexpr uint32_t kIdentityLocalScope = 1u << 24;  // CIDR identities: node-local, never on the wire
// The cluster bits of a cluster-scoped identity (256 .. kIdentityLocalScope - 1):
// cluster << 16 | local in a mesh of up to 255 clusters (the default),
// cluster << 15 | local with 511 (Cilium's max-connected-clusters=511).
inline uint32_t identity_cluster(uint32_t id, uint32_t max_clusters = 255) {
  return max_clusters == 511 ? (id >> 15) & 0x1FF : (id >> 16) & 0xFF;
}

struct PacketView {
  IpInfo ip;
  // The upper-layer protocol policy and conntrack decide on (past IPv6
  // extension headers; ip.proto is only the first next header).
  uint8_t proto = 0;
  // kFound: ports (if any) were read. Otherwise the packet carries no L4
  // header policy can trust: it passes only where a rule allows its protocol
  // without ports (never, for an over-long chain), counted when dropped.
  UpperLayer::Kind l4 = UpperLayer::kFound;
  uint16_t sport = 0, dport = 0;
  uint8_t tcp_flags = 0;
  bool has_ports = false;
  bool icmp_error = false;  // passes like a reply when it quotes a tracked flow of its destination
  // ICMP other than a query or its answer (icmp.h): no conntrack lookup or entry, policy decides each packet.
  bool stateless = false;
  uint8_t icmp_request = 0;  // an ICMP query's request type (FlowTuple::icmp_request); 0: not a query
  bool icmp_reply = false;   // ... and this is its answer: finds an entry, never creates one
  // An ICMP error's quoted packet, as its sender (the error's destination) sent it.
  struct Quoted {
    const uint8_t* src = nullptr;
    const uint8_t* dst = nullptr;
    uint16_t sport = 0, dport = 0;
    uint8_t proto = 0;
    uint8_t icmp_request = 0;
    bool icmp_reply = false;
    bool valid = false;  // addresses (and ports, for protocols with ports) could be read
  } quoted;
};
bool parse_l4(const uint8_t* pkt, const IpInfo& ip, PacketView* out);

enum PolicyCounter : int {
  kPolForwardedNew,
  kPolDropDeny,
  kPolDropDefaultDeny,
  kPolDropIdentityCluster,
  kPolDropSourceNotAllowed,
  kPolDropMalformedTag,
  kPolCtFull,
  kPolHairpin,
  kPolRedirected,
  kPolDropFragment,
  kPolDropIpv6ExtChain,
  kPolToKernel,
  kPolIcmpUnrecorded,  // allowed untracked ICMP of a new tuple not recorded: its sender's budget was spent (icmprecord.h)
  kPolDropTransit,
  kPolCounterCount
};
extern const char* const kPolicyCounterNames[kPolCounterCount];

class PolicyEngine {
 public:
  // kTxRedirect: a local destination whose ingress L7 rules send the flow to the proxy.
  enum TxAction { kTxDrop, kTxForward, kTxHairpin, kTxRedirect };
  enum RxAction { kRxDrop, kRxDeliver, kRxRedirect };

  PolicyEngine();

  // ---- control thread (takes mu exclusively)
  void ipcache_upsert(const uint8_t* addr, int family_bytes, int cidr, IpcacheValue v);
  bool ipcache_remove(const uint8_t* addr, int family_bytes, int cidr);
  bool ipcache_lookup(const uint8_t* addr, int family_bytes, IpcacheValue* out);
  void ipcache_reserve(size_t n);
  size_t ipcache_size();
  size_t ipcache_locals();
  // Maps may be null: that direction is not enforced.
  void set_endpoint(uint32_t id, uint32_t identity, std::shared_ptr<PolicyMap> ingress,
                    std::shared_ptr<PolicyMap> egress);
  // A delta to one endpoint's map of one direction (PolicyMap::update), in
  // place under mu. false: no such endpoint, or that direction is not enforced.
  bool policy_map_update(uint32_t id, bool ingress, const std::vector<PolicyEntry>& upserts,
                         const std::vector<PolicyEntry>& removes);
  // Policy map compactions swapped in, and those dropped because a writer
  // changed the map between the copy and the swap (its garbage waits for the next update).
  uint64_t compactions() const { return compactions_.load(std::memory_order_relaxed); }
  uint64_t compactions_dropped() const { return compactions_dropped_.load(std::memory_order_relaxed); }
  // A copy of an endpoint's map of one direction (entries grouped by identity); false when none.
  // *slots (optional): the map's slots, entries in force plus garbage (PolicyMap::slots()).
  bool policy_map_entries(uint32_t id, bool ingress, std::vector<PolicyEntry>* out, size_t* slots = nullptr);
  void remove_endpoint(uint32_t id);
  // Host firewall: packets from peers to this node's own addresses (router
  // address included) or to anything that is not a pod take the "host"
  // endpoint's ingress check (default: only other nodes themselves, the
  // remote-node identity; replies of the node's own flows pass by conntrack).
  void set_host_firewall(bool on);
  size_t ct_gc() { return ct_.gc(now_s()); }
  size_t ct_size() const { return ct_.size(); }
  void ct_set_limits(size_t max_entries, size_t per_endpoint) { ct_.set_limits(max_entries, per_endpoint); }
  size_t ct_endpoint_entries(uint32_t endpoint) { return ct_.endpoint_entries(endpoint); }
  uint64_t ct_counter(int c) const { return ct_.counter(c); }
  uint64_t drain_flows(std::vector<FlowRecord>* out) { return flows_.drain(out); }
  uint64_t counter(int c) const { return counters_[c].load(std::memory_order_relaxed); }

  // ---- packet threads (caller holds mu shared)
  // *wire_identity: the identity to tag the packet with. *src_local (optional):
  // the source is an endpoint of this node (its egress policy was applied), so
  // the device may hand the packet back to the kernel when no peer takes it
  // (world, other nodes' underlay addresses without a tunnel): count_to_kernel().
  TxAction tx(const PacketView& pv, uint64_t wall_ms, uint32_t* wire_identity, bool* src_local = nullptr);
  void count_to_kernel() { count(kPolToKernel); }
  // src_identity: already validated against the sending peer.
  RxAction rx(const PacketView& pv, uint32_t src_identity, uint32_t peer, uint64_t wall_ms);
  // A drop the device decided (tag checks, cryptokey routing).
  void record_drop(const PacketView* pv, FlowReason reason, uint32_t src_identity, uint32_t peer, uint64_t wall_ms);
  // An endpoint's map of one direction asked directly (tests, benchmarks):
  // false when there is no such map.
  bool policy_lookup(uint32_t endpoint, bool ingress, uint32_t identity, uint8_t proto, uint16_t port, PolicyResult* out);
  // Identity for a plain (untagged) packet from a peer: a CIDR identity of its
  // source address if a policy names one, else the peer's default.
  uint32_t untagged_identity(const PacketView& pv, uint32_t peer_default);

  std::shared_mutex mu;

 private:
  struct Endpoint {
    uint32_t id;  // conntrack entries are charged to it
    uint32_t identity;
    // each endpoint owns its maps (update() changes them in place)
    std::shared_ptr<PolicyMap> ingress, egress;
  };
  static uint32_t now_s();
  enum CheckResult { kCheckDrop, kCheckPass, kCheckRedirect };
  // What an allowed new flow gets once every check on its way agreed: a
  // conntrack entry, a counter and a flow record (admit).
  struct Admission {
    bool pending = false;
    CtScope scope = kCtEgress;
    bool redirect = false;
    uint32_t endpoint = 0, rule = 0, src_id = 0, dst_id = 0, peer = 0;
    uint64_t wall_ms = 0;
    uint8_t flags = 0;
    bool track = true;  // false: passed without a conntrack entry (stateless ICMP, an ICMP answer)
    uint32_t source_endpoint = 0;  // ingress from a pod of this node: its endpoint id (icmp_records_' sender)
  };
  // The verdict of one endpoint's check; a drop is counted and recorded here,
  // an allowed new flow is left pending in *adm.
  CheckResult decide(const Endpoint& ep, CtScope scope, uint32_t remote_identity, const PacketView& pv,
                     uint32_t src_identity, uint32_t dst_identity, uint32_t peer, uint64_t wall_ms, uint8_t flags,
                     Admission* adm);
  // Creates the pending entry; false: a flow someone else started, refused by its
  // source's bound (dropped: passed without an entry, the pod's answer would be a flow charged to the pod).
  bool admit(const PacketView& pv, const Admission& a);
  // Whether an allowed packet no conntrack entry tracks is a new flow to record and count (icmp_records_).
  bool untracked_is_new(const PacketView& pv, const Admission& a);
  // Swaps a garbage-free copy of `old`, the endpoint's map of that direction, in; false when stale.
  bool compact(uint32_t id, bool ingress, const std::shared_ptr<PolicyMap>& old);
  // Whether an ICMP error passes as part of the flow it quotes: that flow is
  // tracked, was sent by the error's destination, and the error comes from
  // the flow's other end or from a router (src_id: this node, another node,
  // the world or a CIDR identity), never from a third pod.
  bool related(const PacketView& pv, uint32_t src_id);
  void drop(const PacketView& pv, PolicyResult res, FlowDirection dir, uint32_t src_id, uint32_t dst_id, uint32_t peer,
            uint64_t wall_ms, uint8_t flags);
  void record(const PacketView& pv, FlowVerdict v, FlowReason r, FlowDirection d, uint32_t src_id, uint32_t dst_id,
              uint32_t rule, uint32_t peer, uint64_t wall_ms, uint8_t flags);
  void count(int c) { counters_[c].fetch_add(1, std::memory_order_relaxed); }

  IPCache ipcache_;
  std::unordered_map<uint32_t, Endpoint> endpoints_;
  Endpoint host_{0, kIdentityHost, nullptr, nullptr};  // conntrack entries of the node's own flows are charged to 0
  bool host_firewall_ = false;
  Conntrack ct_;
  FlowRing flows_;
  IcmpRecordGate icmp_records_;
  std::atomic<uint64_t> counters_[kPolCounterCount];
  std::atomic<uint64_t> compactions_{0}, compactions_dropped_{0};
};

}  // namespace wm
