// LoadBalancer: service address translation of the mesh data path.
//
//   TX, before policy: a packet to a frontend (service VIP, port, protocol)
//     looks up its flow in the NAT table; an established flow keeps its
//     backend while that backend is alive, a new one picks a backend from the
//     service's Maglev table by the flow hash. The destination is rewritten
//     to the backend (DNAT), and a reverse entry is created for the replies.
//     A flow whose backend died, or a new flow to a service without backends,
//     is rejected: the caller sends the RST / ICMP unreachable built by
//     build_reject and drops the packet.
//   Replies (RX after ingress policy, TX hairpin after policy): a packet
//     matching a reverse entry gets its source rewritten back to the VIP.
//   Policy thus always sees backend addresses, as in Cilium.
//
// Locking: mu guards the frontend map and the services. Packet threads hold
// it shared for a whole batch; the control thread takes it exclusively only
// to swap a service pointer (tables are built before, outside the lock, and
// the old service is freed after). The NAT table is a ShardedMap with its
// own locks.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "../net/ip.h"
#include "../policy/flatmap.h"
#include "../policy/sharded.h"
#include "frontends.h"
#include "maglev.h"

namespace wm {

// One service port: every frontend of it (its VIP in each cluster) shares it.
struct LbService {
  uint32_t id = 0;
  uint32_t m = 0;
  std::vector<Frontend> frontends;
  // Backends that may carry flows, sorted by key; weight 0 = alive but not
  // selected for new flows (another affinity tier is preferred).
  std::vector<BackendKey> backends;
  std::vector<uint32_t> weights;
  MaglevTable table;  // slot -> backend index; empty: no selectable backend
  bool alive(const BackendKey& k) const;
};

enum LbCounter : int {
  kLbNewFlows,
  kLbRejectNoBackend,
  kLbRejectDeadBackend,
  kLbNatFull,
  kLbReverseTranslated,
  kLbDropMidflowNoBackend,
  kLbNatEvicted,
  kLbNatQuotaFull,
  kLbNatQuotaSweeps,
  kLbCounterCount
};
extern const char* const kLbCounterNames[kLbCounterCount];

enum LbResult { kLbNone, kLbTranslated, kLbReject, kLbDrop };

class LoadBalancer {
 public:
  // 500 000 entries (250 000 flows) stay within 16384 slots per shard: 64 x 16384 x 80 bytes = 84 MB when full.
  // A client (the flow's source address: a local pod, whose address the pod
  // guard vouches for, or the node) may hold per_client entries, 65 536 by
  // default (32 768 flows, 5 MB): one pod's flood cannot fill the table.
  static constexpr size_t kDefaultPerClient = 65536;
  explicit LoadBalancer(size_t max_nat_entries = 500000);
  void set_nat_limit(size_t max_entries, size_t per_client = kDefaultPerClient) {
    nat_.set_max_entries(max_entries);
    per_client_.store(per_client, std::memory_order_relaxed);
  }
  // Entries held by the client with the most now, and the most any client held since start.
  size_t nat_client_max();
  size_t nat_client_peak() const { return client_peak_.load(std::memory_order_relaxed); }

  // ---- control thread
  // Replaces (or adds) a service; backends are sorted here. Frontends that
  // belonged to the service before and are not listed go away.
  void upsert(std::shared_ptr<LbService> svc);
  void remove(uint32_t id);
  size_t services() const;
  size_t nat_size() const { return nat_.size(); }
  // Expires idle flows (both directions of a flow go together); returns how many entries went.
  size_t gc(uint32_t now_s);
  uint64_t counter(int c) const { return counters_[c].load(std::memory_order_relaxed); }
  // The backend a flow would get, without touching the NAT table (for tests
  // and tools): false when the frontend is unknown or has no backend.
  bool pick(const Frontend& fe, const uint8_t* src, uint16_t sport, BackendKey* out);

  // ---- L7 proxy redirect (mesh mode; the agent's proxy listens on addr:port)
  void set_proxy(const uint8_t addr[4], uint16_t port);
  // The original destination and the source identity of a flow the proxy
  // accepted from client:port; false when there is none.
  bool proxy_original(const uint8_t client[4], uint16_t client_port, uint8_t dst[4], uint16_t* dst_port,
                      uint32_t* identity);

  // ---- packet threads (caller holds mu shared)
  // A packet of a flow already sent to the proxy: rewritten to it (true).
  bool redirected(uint8_t* pkt, const IpInfo& ip, uint16_t sport, uint16_t* dport, uint8_t tcp_flags, uint32_t now_s);
  // Sends a new flow to the proxy (policy said redirect): entries + rewrite; false when the proxy is not set up.
  bool redirect(uint8_t* pkt, const IpInfo& ip, uint16_t sport, uint16_t* dport, uint32_t identity, uint8_t tcp_flags,
                uint32_t now_s);
  // A packet from the proxy's listening socket (its replies, to be turned back into the pod's).
  bool from_proxy(const IpInfo& ip, uint16_t sport) const {
    return proxy_port_.load(std::memory_order_relaxed) == sport && ip.version == 4 &&
           std::memcmp(ip.src, proxy_addr_, 4) == 0;
  }

  // The service of a frontend and the backend its Maglev table gives a flow
  // (null backend: no selectable backend); null service: not a frontend.
  // One frontend hash, one frontend-table probe, the flow hash, one table
  // read: no allocation, no lock of its own (frontends.h).
  const LbService* select(const Frontend& fe, const uint8_t* src, uint16_t sport, const BackendKey** backend) const;
  // *created: this packet made the flow's NAT entries (forget() them if policy then drops it).
  LbResult forward(uint8_t* pkt, const IpInfo& ip, uint16_t sport, uint16_t* dport, uint8_t tcp_flags, uint32_t now_s,
                   bool* created = nullptr);
  // Removes the entries forward() just made for a packet policy dropped: a
  // denied flow must not hold NAT entries. ip: the translated packet; vip,
  // vport: its destination before translation.
  void forget(const IpInfo& ip, uint16_t sport, uint16_t backend_port, const uint8_t* vip, uint16_t vport);
  // true: the packet was a reply of a translated flow and now comes from the VIP.
  bool reverse(uint8_t* pkt, const IpInfo& ip, uint16_t* sport, uint16_t dport, uint8_t tcp_flags, uint32_t now_s);
  bool active() const { return frontends_n_.load(std::memory_order_relaxed) != 0; }
  // Some flow is redirected to the proxy now: only then do packets pay a redirect lookup.
  bool proxy_active() const { return redirects_.load(std::memory_order_relaxed) != 0; }

  mutable std::shared_mutex mu;

 private:
  enum NatKind : uint8_t { kNatForward = 0, kNatReverse = 1, kNatRedirect = 2 };
  struct NatKey {
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    uint8_t proto, family, kind, pad;
  };
  struct NatEntry {
    uint8_t addr[16];  // forward: the backend; redirect: the proxy; reverse: the VIP / the pod
    uint16_t port;
    uint8_t closing, tcp;
    uint32_t service;
    uint32_t last_s;
    uint32_t identity;   // redirect pairs: the source identity the proxy decides for
    uint8_t pair_kind;   // the kind of the pair's first entry (kNatForward or kNatRedirect)
    uint8_t replied;     // reverse entries: a reply passed (the flow is no longer half-open)
    uint8_t pad[2];
  };
  static NatKey packet_key(const IpInfo& ip, uint16_t sport, uint16_t dport, uint8_t kind);
  // The key of the replies to a flow `first` sent to `to`:`to_port` (16-byte, zero-padded address).
  static NatKey reverse_of(const NatKey& first, const uint8_t* to, uint16_t to_port);
  // Looks k up, refreshes it and rewrites the packet's destination (dst) or source to the entry's address and port.
  bool translate(uint8_t* pkt, const IpInfo& ip, const NatKey& k, bool dst, uint16_t* port, uint8_t tcp_flags,
                 uint32_t now_s);
  // Creates a flow's two entries (first: client -> original destination, rewritten to `to`); false when full.
  bool add_pair(const NatKey& first, const uint8_t* to, uint16_t to_port, const uint8_t* orig_dst, uint16_t orig_port,
                uint32_t service, uint32_t identity, bool closing, uint32_t now_s);
  // Per-client quota (entries, two per pair), keyed by the client's address.
  struct Client {
    uint8_t addr[16];
    uint8_t family;
    bool operator==(const Client& o) const { return family == o.family && std::memcmp(addr, o.addr, 16) == 0; }
  };
  struct ClientHash {
    size_t operator()(const Client& c) const { return size_t(hash_bytes(&c, sizeof c, 0x6e6174636c69656eull)); }
  };
  struct Usage {
    int64_t pairs = 0;
    uint32_t last_sweep_s = 0;
  };
  static Client client_of(const NatKey& first) {
    Client c;
    std::memcpy(c.addr, first.src, 16);
    c.family = first.family;
    return c;
  }
  // Charges a new pair to its client: false when the client's quota stays
  // full after (at most once a second) sweeping its own evictable pairs.
  bool charge(const Client& c, uint32_t now_s);
  void release(const Client& c, int64_t pairs = 1);
  // Removes the pairs idle for a second that no reply has passed (a SYN
  // flood's) or that are closing, of one client (only) or of all; never an
  // answered open flow.
  size_t sweep_pairs(uint32_t now_s, const Client* only);
  // The table is full: the client holding most pairs loses its evictable
  // ones first, then everyone's go; at most once a second.
  size_t sweep_evictable(uint32_t now_s);
  // The other entry of k's pair.
  static NatKey twin_of(const NatKey& k, const NatEntry& e);
  void count(int c, uint64_t n = 1) { counters_[c].fetch_add(n, std::memory_order_relaxed); }
  void rebuild_frontends();  // mu held exclusively

  std::unordered_map<uint32_t, std::shared_ptr<const LbService>> services_;
  FrontendTable frontends_;
  std::atomic<size_t> frontends_n_{0};
  ShardedMap<NatKey, NatEntry> nat_;
  uint8_t proxy_addr_[4] = {0, 0, 0, 0};
  std::atomic<uint16_t> proxy_port_{0};
  std::atomic<size_t> redirects_{0};  // live redirect pairs
  std::atomic<uint32_t> last_eviction_s_{0};
  std::atomic<size_t> per_client_{kDefaultPerClient};
  std::atomic<size_t> client_peak_{0};
  std::mutex quota_mu_;  // guards clients_; never held while a NAT shard is locked
  std::unordered_map<Client, Usage, ClientHash> clients_;
  std::atomic<uint64_t> counters_[kLbCounterCount];
};

}  // namespace wm
