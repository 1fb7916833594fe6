// The native data path of one WireGuard device.
//
// Pipeline
//   TX thread: TUN read (batch, up to 64 reads) -> split super-packets into MTU
//     packets (offload.h), written straight into message slots of the TX arena
//     -> allowed-IPs lookup of the destination -> current keypair of the peer
//     -> pad + ChaCha20-Poly1305 in place -> group per endpoint into UDP GSO
//     sends -> sendmmsg. No keypair yet: the packet is staged on the peer and
//     a HandshakeNeeded event goes up to JavaScript.
//   RX thread: recvmmsg (UDP GRO) -> split by segment size -> type 1/2/3: mac1
//     check, cookie/rate limit under load, queued to JavaScript as events;
//     type 4: receiver index -> keypair -> decrypt in place -> replay window ->
//     keypair promotion / roaming (roam.h) -> cryptokey routing of the inner source ->
//     TCP coalescing (offload.h) -> writev to the TUN.
//   Mesh mode (enable_policy): TX asks the PolicyEngine (policy/engine.h) for
//     the source identity and the egress verdict before routing, delivers
//     packets for endpoints on this node back into the TUN (hairpin), and
//     prefixes the plaintext for tagged peers with the identity tag
//     (docs/wire-format.md); RX strips and checks the tag (the identity's
//     cluster must be one the peer may speak for) and asks for the ingress
//     verdict. Plain WireGuard (wiremesh-wg) never enables it.
//   JavaScript (control thread): handshakes, timers, UAPI. It installs keypairs
//   and peers through the methods below and never touches a data packet.
//
// Locking rules
//   table_mu_ (shared_mutex) guards peers_, allowed_ and indices_. Packet
//     threads hold it shared while they decide a batch, so the raw Peer/Keypair
//     pointers they take from the tables stay valid for that; control calls hold
//     it exclusively for the few microseconds a table edit takes. No packet I/O
//     (sendmmsg with its EAGAIN/ENOBUFS poll-and-retry, TUN writes of
//     hairpinned packets and rejects) happens under it nor under the engine's
//     or load balancer's mu: it runs after the batch's locks are released, so a
//     full socket buffer never holds a control call's exclusive table edit (nor,
//     with a writer waiting, the RX thread) for the length of the retries. What
//     the I/O needs survives the unlock: messages live in the TX arena and
//     endpoints are copied per peer; the UDP sockets only change with the
//     threads stopped (rebind). The RX thread writes to the TUN after its batch;
//     its one cookie-reply sendto is MSG_DONTWAIT, never retried.
//   Peer::mu guards a peer's keypair slots, endpoint, roaming set and staged queue. Never take
//     table_mu_ while holding a Peer::mu.
//   A peer's live block (PeerLive: keypair slots, staged queue, counters, timers) is made
//     (Peer::live) only under table_mu_, either mode, and freed only with the peer (table_mu_
//     exclusive); keypairs are installed only with table_mu_ exclusive. So a reader under
//     table_mu_ shared that found no block (Peer::view: the idle block's zeros) cannot miss a
//     keypair, and one that holds it exclusive sees no block appear.
//   Keypair send contexts are used only by the TX thread, receive contexts and
//     the replay filter only by the RX thread; the send counter is atomic.
//   events_mu_ guards the event queue; ctl_mu_ the TX control queue. The RX
//     thread takes ctl_mu_ under table_mu_ (and in mesh mode the engine's and
//     load balancer's mu, all shared) to queue probe replies against their
//     peer's quota; nothing is locked while ctl_mu_ is held.
//   active_mu_ guards the active list (active_, Peer::listed, Peer::active_pos).
//     It is a leaf: taken under table_mu_ (either mode) and under a Peer::mu,
//     never held while taking another lock. A peer joins the list (mark_active)
//     wherever what makes it active is set: a keypair installed, a handshake
//     requested, a packet staged, anything authenticated sent or received; it
//     leaves only under table_mu_ held exclusively (removed, or its keypairs
//     cleared and nothing else active about it), so no packet thread can be
//     marking it then. peer_stats(active_only) walks the list, not peers_.
//   PolicyEngine::mu is taken shared by packet threads after table_mu_ (never
//     the other way round); control calls into the engine take only its mu.
//
// Files: peer.h (a peer, its live block, a keypair), device.cc (lifecycle, control
// calls), device_peers.cc (the active list, peer stats), device_tx.cc (TX thread),
// device_txctl.cc (its control round), device_rx.cc (RX thread), device_mesh.cc
// (tags, hairpin, probes).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../crypto/aead.h"
#include "../net/endpoint.h"
#include "../net/tun.h"
#include "../net/udp.h"
#include "../policy/engine.h"
#include "../services/lb.h"
#include "allowedips.h"
#include "cookie.h"
#include "peer.h"
#include "probe_monitor.h"
#include "ratelimiter.h"
#include "replay.h"
#include "roam.h"

namespace wm {

uint64_t monotonic_ms();

// Identity tag in front of the IP packet in a transport message's plaintext
// (docs/wire-format.md): 0x10 (kind 1, version 0), flags, 2 reserved bytes,
// the 32-bit source identity big-endian.
constexpr size_t kTagSize = 8;
constexpr uint8_t kTagV0 = 0x10;
// Liveness probe plaintext (kind 2): 0x20 request / 0x21 reply, a 7-byte tag,
// the sender's 8-byte monotonic timestamp (ns), echoed unchanged in the reply.
// 16 bytes; never an IP packet (version 2). The tag is a MAC of the peer and
// the timestamp under a key only the sender holds (Device::probe_tag): a peer
// can echo a probe it received, not make one up.
constexpr uint8_t kProbeRequest = 0x20, kProbeReply = 0x21;
constexpr size_t kProbeSize = 16;
constexpr size_t kProbeTagSize = 7;

enum Counter : int {
  kRxPackets,
  kTxPackets,
  kRxKeepalives,
  kRxHandshakeMessages,
  kDropNotWireGuard,
  kDropBadMac1,
  kCookieRepliesSent,
  kDropRateLimited,
  kDropHandshakeQueueFull,
  kDropUnknownReceiver,
  kDropKeypairExpired,
  kDropDecryptFailed,
  kDropReplayed,
  kDropMalformedInner,
  kDropCryptokeyRouting,
  kDropNoRoute,
  kDropNoEndpoint,
  kDropMalformedTun,
  kDropStageOverflow,
  kTxSendErrors,
  kTunWriteErrors,
  kHandshakeRequests,
  kDropProbeForged,
  kDropControlOverflow,
  kDropProbeReplyQuota,
  kEndpointRoamRefused,
  kCounterCount
};
extern const char* const kCounterNames[kCounterCount];

enum EventKind : int {
  kEventHandshakeMessage = 1,  // data = the message, from = sender
  kEventHandshakeNeeded = 2,   // peer
  kEventTunClosed = 3,
  kEventKeypairConfirmed = 4,  // peer: a responder's next keypair was used by the initiator
};

struct Event {
  int kind = 0;
  uint32_t peer = 0;
  std::vector<uint8_t> data;
  Endpoint from;
};

struct PeerStats {
  uint32_t id;
  uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets;
  uint64_t last_data_sent_ms, last_data_recv_ms, last_auth_sent_ms, last_auth_recv_ms;
  uint64_t sent_unanswered_ms, recv_unanswered_ms;
  uint64_t last_probe_reply_ms, probe_rtt_us, probes_sent, probe_replies, probe_replies_queued, probe_replies_refused;
  bool has_current;
  bool current_initiator;
  uint64_t current_age_ms;
  bool has_next;
  Endpoint endpoint;
};

class Device {
 public:
  struct Options {
    std::string tun_name;
    bool vnet_hdr = true;
    int mtu = 1420;
    int port = 0;
    uint32_t fwmark = 0;
    bool create_tun = true;  // false: a UDP-only device (tests, benchmarks of the crypto path)
  };
  static constexpr size_t kHandshakeQueueSize = 1024;
  static constexpr size_t kStagedMax = 128;
  // Probe replies one peer may have in the TX control queue (drop_probe_reply_quota past it). An honest peer's
  // probe monitor sends one request every ProbeMonitor::kRoundMs (200 ms) and the TX thread takes the queue
  // within a round or two even behind a 114,688-message backlog: it has 1, at most 2-3, outstanding; 8 leaves room
  // for JavaScript's own probe() calls. A flooding peer holds 8 slots of the queue, not all of them.
  static constexpr uint32_t kProbeRepliesQueuedMax = 8;

  Device();
  ~Device();
  bool open(const Options& opts, std::string* err);
  // sink is called from packet threads when the event queue becomes non-empty.
  void start(std::function<void()> sink);
  void stop();
  void drain_events(std::vector<Event>* out);

  const std::string& tun_name() const { return tun_.name; }
  int port() const { return udp_.port; }
  int mtu() const { return mtu_.load(); }
  void set_mtu(int mtu) { mtu_.store(mtu); }
  bool gso() const { return udp_.gso; }
  bool rebind(int port, std::string* err);
  bool set_fwmark(uint32_t mark);

  void set_public_key(const uint8_t pub[32]) { cookies_.set_public_key(pub); }
  void upsert_peer(uint32_t id);
  void remove_peer(uint32_t id);
  void set_endpoint(uint32_t id, const Endpoint& ep);
  // Mesh peers: the endpoint may roam only to these addresses (ports ignored;
  // the first RoamSet::kMax count). pinned false: roams anywhere (WireGuard).
  void set_roaming(uint32_t id, const std::vector<Endpoint>& addrs, bool pinned);
  // Gives the peer these allowed IPs (prefixes: bytes, family_bytes, cidr), each taken from any peer holding it, one
  // it holds left in place. replace: its others go first (the agent's sets, a UAPI replace_allowed_ips); else they
  // stay (a UAPI set without it, line by line as wireguard-go does: O(the prefixes given)).
  void update_allowed_ips(uint32_t id, const std::vector<AllowedIPs::Entry>& prefixes, bool replace);
  // Appends the peer's allowed IPs, in the order its last set gave them, without those another peer took since
  // (AllowedIPs::peer_prefixes); nothing for an unknown peer.
  void allowed_ips(uint32_t id, std::vector<AllowedIPs::Entry>* out);
  // Installs a keypair: as current for the initiator, as next for the responder.
  bool install_keypair(uint32_t id, uint32_t local_index, uint32_t remote_index, const uint8_t send_key[32],
                       const uint8_t recv_key[32], bool initiator);
  void clear_keypairs(uint32_t id);
  void send_keepalive(uint32_t id);
  // Sends what was staged while the peer had no keypair; with keepalive_if_empty
  // a keepalive goes out when nothing was staged (the initiator confirms a new
  // session at once, as wireguard-go does).
  void flush_staged(uint32_t id, bool keepalive_if_empty);
  int refresh_mtu();
  bool send_handshake(const Endpoint& ep, const uint8_t* buf, size_t len);
  // active_only: skip peers that never sent or received anything and hold no
  // keypair (thousands of idle mesh peers need no timer work): O(active peers),
  // from the active list (locking rules above), not a walk of every peer.
  void peer_stats(std::vector<PeerStats>* out, bool active_only = false);
  // Peers holding a live block (PeerLive: made by their first activity, kept until removed). O(peers).
  size_t peers_with_state();
  uint64_t counter(int c) const { return counters_[c].load(std::memory_order_relaxed); }
  // Mesh mode: switches the policy engine on (once; safe while running).
  void enable_policy() { policy_on_.store(true, std::memory_order_release); }
  // The engine, or null in plain WireGuard mode.
  PolicyEngine* policy() { return policy_on_.load(std::memory_order_acquire) ? policy_.get() : nullptr; }
  // The service load balancer: on with the policy engine (mesh mode).
  LoadBalancer* lb() { return policy_on_.load(std::memory_order_acquire) ? lb_.get() : nullptr; }
  // Sends a liveness probe to a (tagged) peer; its answer updates the peer's
  // last_probe_reply_ms and probe_rtt_us.
  void probe(uint32_t id);
  // The probe monitor (probe_monitor.h): the TX thread probes the watched
  // peers every ProbeMonitor::kRoundMs; JavaScript drains the changes.
  void probe_watch(const std::vector<uint32_t>& add, const std::vector<uint32_t>& remove);
  bool probe_drain(std::vector<uint32_t>* rows) { return probes_.drain(rows); }
  void set_peer_identity(uint32_t id, bool tagged, uint32_t default_identity, const std::vector<uint16_t>& clusters);
  // The mesh's cluster-id layout (peer_clusters.h): 255 (default) or 511;
  // set once at start, before any peer identity.
  void set_max_clusters(uint32_t n) { max_clusters_.store(n, std::memory_order_relaxed); }
  uint32_t max_clusters() const { return max_clusters_.load(std::memory_order_relaxed); }
  void count(int c, uint64_t n = 1) { counters_[c].fetch_add(n, std::memory_order_relaxed); }

  // What the control thread (and the RX thread, for replies) asks of the TX thread.
  enum class CtlKind : uint8_t {
    kKeepalive = 1,
    kFlush = 2,              // send what was staged
    kFlushOrKeepalive = 3,   // send what was staged, a keepalive if nothing was
    kProbeRequest = 4,
    kProbeReply = 5,
  };
  struct Ctl {
    CtlKind kind;
    uint32_t peer;
    uint8_t probe[kProbeSize];
  };
  struct TxSeg {
    // Routed (fixed false): the IP packet, with 16 + kTagSize bytes of slot in
    // front for the message header and a tag. Fixed peer (keepalive, probe,
    // staged): the final plaintext, with 16 bytes in front.
    uint8_t* plain;
    size_t len;  // plaintext length
    bool fixed;
    // The fixed peer's id, not its Peer*: the control round packs under one hold
    // of table_mu_ and tx_process runs under another (TUN reads between, no I/O
    // under the table locks), so the peer may be removed in between; tx_process
    // finds it again and skips a segment whose peer is gone (ids are never reused).
    uint32_t peer;
  };
  // The TX thread's control round (device_txctl.cc; static for the test hooks): packs ctl[0, n) in order into
  // arena[*used, cap) as segs (a keepalive or probe takes 64 bytes, a staged packet align16(16 + len + 32)), find
  // giving each message's peer (null: gone, skipped). Stops at the first message that does not fit whole and
  // returns how many were done: the rest waits for the next round, in order. A flush cut short puts its unsent
  // packets back in front of the peer's queue (unstage); *dropped counts what the queue's bound (kStagedMax)
  // pushed out then, and a staged packet larger than cap (never in the device: cap is MiBs, packets ≤ 64 KiB).
  static size_t pack_control(const Ctl* ctl, size_t n, const std::function<Peer*(uint32_t)>& find, uint8_t* arena,
                             size_t cap, size_t* used, std::vector<TxSeg>* segs, uint64_t* dropped);
  // Puts rest (the oldest packets, in order) back in front of p's staged queue (takes p->mu), what was staged
  // since behind it; keeps the newest kStagedMax and returns how many older ones it dropped.
  static uint64_t unstage(Peer* p, std::vector<std::vector<uint8_t>>* rest);
  // A probe reply c to peer p (c.peer == p->id; p valid: table_mu_ held) joins the TX control queue q (ctl_mu_
  // held), or is refused: p already has kProbeRepliesQueuedMax queued (kDropProbeReplyQuota), or q holds
  // kTxCtlQueueMax messages waiting, whatever their kind, the round in progress not counted (kDropControlOverflow:
  // a many-peer flood; so up to about twice the bound in memory). Returns the counter to bump, kCounterCount when
  // queued (p->probe_replies_queued counted in; pack_control counts it out); a refusal adds to p->probe_replies_refused.
  static Counter queue_probe_reply(std::vector<Ctl>* q, Peer* p, const Ctl& c);

 private:
  struct TxOut {
    const Endpoint* ep;
    uint8_t* msg;
    size_t len;
  };

  void tx_loop();
  void rx_loop();
  struct TxScratch;  // the TX thread's per-batch vectors: tx_scratch.h
  void tx_process(TxScratch& scratch);
  void tx_send(TxScratch& s);
  void rx_message(uint8_t* msg, size_t len, const Endpoint& from, uint64_t now);
  void hairpin(const uint8_t* pkt, size_t len);
  // Writes a TX batch's packets back into the TUN, TCP segments of one flow
  // merged into GSO super-packets (one writev each instead of one per segment).
  void write_back(const std::vector<std::pair<const uint8_t*, size_t>>& pkts);
  uint32_t accept_tag(const Peer* p, uint32_t identity) const;
  void rx_probe(Peer* p, const uint8_t* plain, uint64_t now);
  // TX thread: one probe round when due; returns the poll timeout until the next one.
  int probe_round_due(int timeout_ms);
  Ctl probe_ctl(uint32_t id);
  // The tag of a probe to peer id sent at ns (monotonic): BLAKE2s-32 keyed
  // with probe_key_ over (id, ns), big-endian, cut to kProbeTagSize bytes.
  void probe_tag(uint32_t id, uint64_t ns, uint8_t out[kProbeTagSize]) const;
  void stage(Peer* p, const uint8_t* pkt, size_t len);
  void request_handshake(Peer* p, uint64_t now);
  void push_event(Event&& e);
  void push_ctl(const Ctl& c);
  // RX thread, table_mu_ held: queues rx_flushes_ for the TX thread (replies within their quotas); returns
  // whether anything was queued (the caller wakes the TX thread after releasing table_mu_).
  bool queue_rx_ctl();
  void wake_tx();
  Peer* find_peer(uint32_t id);
  // Puts p on the active list (table_mu_ held, either mode); cheap when it is on it.
  void mark_active(Peer* p);
  // Takes p off it (table_mu_ held exclusively).
  void unlist(Peer* p);
  // The active_only test of peer_stats (table_mu_ held; takes p->mu).
  static bool is_active(Peer* p);
  void erase_index(const Keypair* kp);  // table_mu_ held exclusively
  void erase_retired();                 // table_mu_ held exclusively
  void start_threads();
  void stop_threads();

  Options opts_;
  TunDevice tun_;
  UdpSockets udp_;
  std::atomic<int> mtu_{1420};
  CookieChecker cookies_;
  RateLimiter ratelimiter_;

  std::shared_mutex table_mu_;
  std::unordered_map<uint32_t, std::unique_ptr<Peer>> peers_;
  AllowedIPs allowed_;
  struct IndexEntry {
    std::shared_ptr<Keypair> keypair;
    Peer* peer;
  };
  std::unordered_map<uint32_t, IndexEntry> indices_;
  struct RetiredIndex {
    uint32_t index;
    const Keypair* keypair;  // identity only, never dereferenced
  };
  std::mutex retired_mu_;
  std::vector<RetiredIndex> retired_;
  // Peers that may be active (a superset of those is_active() holds for).
  std::mutex active_mu_;
  std::vector<Peer*> active_;

  std::mutex events_mu_;
  std::vector<Event> events_;
  size_t pending_handshakes_ = 0;
  std::atomic<uint64_t> under_load_until_ms_{0};
  std::function<void()> sink_;

  std::mutex ctl_mu_;
  std::vector<Ctl> ctl_;
  int tx_wake_ = -1, rx_wake_ = -1;
  std::atomic<bool> running_{false};
  std::thread tx_thread_, rx_thread_;

  // RX batch state (RX thread only).
  struct RxPacket {
    const uint8_t* data;
    size_t len;
  };
  std::vector<RxPacket> rx_pending_;
  std::vector<Ctl> rx_flushes_;
  uint64_t rx_wall_ms_ = 0;
  PolicyEngine* rx_policy_ = nullptr;  // policy() for the current batch

  // Always allocated so packet threads never see the pointer change; used
  // only once policy_on_ is set.
  std::unique_ptr<PolicyEngine> policy_ = std::make_unique<PolicyEngine>();
  std::unique_ptr<LoadBalancer> lb_ = std::make_unique<LoadBalancer>();
  std::atomic<bool> policy_on_{false};
  std::atomic<uint32_t> max_clusters_{255};
  // Key of the probes' tags (probe_tag), random per device: never leaves it.
  uint8_t probe_key_[16];
  ProbeMonitor probes_;
  uint64_t next_probe_ms_ = 0;  // TX thread only

  std::atomic<uint64_t> counters_[kCounterCount];
};

}  // namespace wm
