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
// table edit. Policy maps are immutable and swapped whole (shared_ptr), so an
// update never pauses the packet threads for longer than a pointer swap.
// Conntrack and the flow ring have their own locks.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <unordered_map>

#include "../net/ip.h"
#include "conntrack.h"
#include "flows.h"
#include "ipcache.h"
#include "policymap.h"

namespace wm {

// Cilium's reserved identities (all below 256, cluster bits zero).
constexpr uint32_t kIdentityHost = 1, kIdentityWorld = 2, kIdentityUnmanaged = 3, kIdentityHealth = 4,
                   kIdentityInit = 5, kIdentityRemoteNode = 6;
constexpr uint32_t kIdentityLocalScope = 1u << 24;  // CIDR identities: node-local, never on the wire
inline uint32_t identity_cluster(uint32_t id) { return (id >> 16) & 0xFF; }

struct PacketView {
  IpInfo ip;
  uint16_t sport = 0, dport = 0;
  uint8_t tcp_flags = 0;
  bool has_ports = false;
  bool icmp_error = false;  // related to some flow: passes like a reply
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
  kPolToKernel,
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
  // Maps may be null: that direction is not enforced.
  void set_endpoint(uint32_t id, uint32_t identity, std::shared_ptr<const PolicyMap> ingress,
                    std::shared_ptr<const PolicyMap> egress);
  void remove_endpoint(uint32_t id);
  size_t ct_gc() { return ct_.gc(now_s()); }
  size_t ct_size() const { return ct_.size(); }
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
  // Identity for a plain (untagged) packet from a peer: a CIDR identity of its
  // source address if a policy names one, else the peer's default.
  uint32_t untagged_identity(const PacketView& pv, uint32_t peer_default);

  std::shared_mutex mu;

 private:
  struct Endpoint {
    uint32_t identity;
    std::shared_ptr<const PolicyMap> ingress, egress;
  };
  static uint32_t now_s();
  enum CheckResult { kCheckDrop, kCheckPass, kCheckRedirect };
  CheckResult check(const Endpoint& ep, CtScope scope, uint32_t remote_identity, const PacketView& pv, uint32_t src_identity,
             uint32_t dst_identity, uint32_t peer, uint64_t wall_ms, uint8_t flags);
  void record(const PacketView& pv, FlowVerdict v, FlowReason r, FlowDirection d, uint32_t src_id, uint32_t dst_id,
              uint32_t rule, uint32_t peer, uint64_t wall_ms, uint8_t flags);
  void count(int c) { counters_[c].fetch_add(1, std::memory_order_relaxed); }

  IPCache ipcache_;
  std::unordered_map<uint32_t, Endpoint> endpoints_;
  Conntrack ct_;
  FlowRing flows_;
  std::atomic<uint64_t> counters_[kPolCounterCount];
};

}  // namespace wm
