// A WireGuard peer of the native device, its live block and a keypair (locking rules: device.h).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "../crypto/aead.h"
#include "../net/endpoint.h"
#include "../policy/engine.h"
#include "peer_clusters.h"
#include "peer_mutex.h"
#include "replay.h"
#include "roam.h"

namespace wm {

struct Keypair {
  uint32_t local_index = 0;
  uint32_t remote_index = 0;
  uint32_t peer_id = 0;
  bool initiator = false;
  uint64_t created_ms = 0;
  std::unique_ptr<ChaChaPoly> send;
  std::unique_ptr<ChaChaPoly> recv;
  std::atomic<uint64_t> send_counter{0};
  ReplayFilter replay;
};

// What a peer holds once it carries traffic: its sessions, staged packets, counters, timers and probe figures
// (208 of the 408 bytes a Peer was). An agent holds a peer for every node of every connected cluster (16,000 at
// 16 x 1000) and most of them never carry a packet, so this block is made by the first thing that makes the peer
// active (Peer::live: a keypair installed, a handshake requested, a packet staged, anything authenticated sent or
// received, a probe request packed for it or a probe reply queued) and freed only with the peer: a pointer, once
// set, never changes, so a thread that read it under table_mu_ (shared) may use it as long as it could use the Peer.
struct PeerLive {
  // Under Peer::mu.
  std::shared_ptr<Keypair> previous, current, next;
  // Packets waiting for a session (at most kStagedMax, oldest dropped first), under Peer::mu. A vector, not a
  // deque: an empty std::deque allocates ~600 B (issue 16).
  std::vector<std::vector<uint8_t>> staged;
  std::atomic<uint64_t> rx_bytes{0}, tx_bytes{0}, rx_packets{0}, tx_packets{0};
  // Monotonic ms of the events the timers in src/wireguard/timers.ts act on.
  std::atomic<uint64_t> last_data_sent_ms{0}, last_data_recv_ms{0};
  std::atomic<uint64_t> last_auth_sent_ms{0}, last_auth_recv_ms{0};
  // First data sent since anything authenticated was received (0 = none): the
  // "new handshake" timer. First data received since anything was sent: the
  // "send keepalive" timer.
  std::atomic<uint64_t> sent_unanswered_ms{0}, recv_unanswered_ms{0};
  std::atomic<uint64_t> handshake_requested_ms{0};
  // Liveness probes (mesh mode): when the last answer came and its round-trip
  // time in µs (as measured; the probe monitor keeps the windowed minimum).
  std::atomic<uint64_t> last_probe_reply_ms{0};
  std::atomic<uint64_t> probe_rtt_us{0};
  std::atomic<uint64_t> probes_sent{0}, probe_replies{0};
  // Our replies to its probe requests waiting in the TX control queue (≤ Device::kProbeRepliesQueuedMax):
  // counted in by the RX thread when queued, out by the TX thread when packed (Device::queue_probe_reply,
  // pack_control); replies queued to a removed peer are skipped and go with it. Refused: cumulative, either bound.
  std::atomic<uint32_t> probe_replies_queued{0};
  std::atomic<uint64_t> probe_replies_refused{0};
};

// Fields in an order that leaves 6 B of padding between them (the mesh ones are apart: each names its lock).
struct Peer {
  uint32_t id = 0;
  // Mesh mode (guarded by table_mu_, as `clusters` and `tagged`): the identity of untagged packets.
  uint32_t default_identity = kIdentityWorld;
  // Guards the live block's keypair slots and staged queue, endpoint and roam: 4 bytes (peer_mutex.h), where a
  // std::mutex took 40.
  PeerMutex mu;
  Endpoint endpoint;
  // Mesh mode (table_mu_): clusters whose identities the peer may send (its own, plus those it relays for),
  // 1..max_clusters().
  PeerClusters clusters;
  // In Device::active_ (at active_pos), both guarded by active_mu_; read
  // without it only as a hint (a stale false takes the lock and looks again).
  uint32_t active_pos = 0;
  std::atomic<bool> listed{false};
  // Mesh mode (table_mu_): tag outgoing plaintext with the source identity.
  bool tagged = false;
  // Where the endpoint may roam (roam.h; under mu): anywhere unless set_roaming pinned it. Read only when a
  // packet's source differs from the endpoint.
  RoamSet roam;

  Peer() = default;
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  ~Peer() { delete live_.load(std::memory_order_acquire); }

  // The live block to read: the peer's own, or idle()'s (every figure 0, no keypair, nothing staged) while it has
  // none. Never allocates: status and timer reads of idle peers stay free. Const, so nothing is written to it.
  const PeerLive& view() const {
    const PeerLive* l = live_.load(std::memory_order_acquire);
    return l ? *l : idle();
  }
  // The live block to write, made on the first call. Only under Device::table_mu_ (either mode: the locking rules
  // in device.h): two first calls race on a compare-exchange and the loser frees its copy.
  PeerLive& live() {
    PeerLive* l = live_.load(std::memory_order_acquire);
    return l ? *l : make_live();
  }
  bool has_live() const { return live_.load(std::memory_order_acquire) != nullptr; }

 private:
  // Every figure 0, no keypair, nothing staged; never destroyed (no teardown while packet threads may read it).
  static const PeerLive& idle() {
    static const PeerLive* k = new PeerLive();  // leaked on purpose: outlives every thread
    return *k;
  }
  PeerLive& make_live() {
    auto* fresh = new PeerLive();
    PeerLive* held = nullptr;
    // release: a thread that loads the pointer (acquire) sees the block's zeroed fields
    if (live_.compare_exchange_strong(held, fresh, std::memory_order_acq_rel, std::memory_order_acquire)) return *fresh;
    delete fresh;
    return *held;
  }
  std::atomic<PeerLive*> live_{nullptr};
};

// A Peer is 120 bytes, a 128-byte malloc chunk (s38: its lock one futex word, peer_mutex.h; 152 B in a 160-byte
// chunk before, 208 B in a 224-byte one before s35, which put the roaming set's first address inline and the
// others in a block of their own), its live block (208 B) only once it is active: at 16,000 idle peers ~4.4 MiB
// less than the 408-byte Peer of s29 that held both (docs/benchmarks.md, s30, s35 and s38).
static_assert(sizeof(Peer) <= 120, "an idle peer fits a 128-byte malloc chunk");

}  // namespace wm
