// The device's lifecycle and the control thread's calls (locking rules: device.h).
#include "device.h"

#include "../net/reject.h"

#include <errno.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "../net/ip.h"
#include "../net/offload.h"
#include "messages.h"
#include "device_internal.h"

namespace wm {

using namespace device_detail;

const char* const kCounterNames[kCounterCount] = {
    "rx_packets",
    "tx_packets",
    "rx_keepalives",
    "rx_handshake_messages",
    "drop_not_wireguard",
    "drop_bad_mac1",
    "cookie_replies_sent",
    "drop_rate_limited",
    "drop_handshake_queue_full",
    "drop_unknown_receiver",
    "drop_keypair_expired",
    "drop_decrypt_failed",
    "drop_replayed",
    "drop_malformed_inner",
    "drop_cryptokey_routing",
    "drop_no_route",
    "drop_no_endpoint",
    "drop_malformed_tun",
    "drop_stage_overflow",
    "tx_send_errors",
    "tun_write_errors",
    "handshake_requests",
    "drop_probe_forged",
    "drop_control_overflow",
    "drop_probe_reply_quota",
    "endpoint_roam_refused",
};

uint64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

Device::Device() {
  for (auto& c : counters_) c.store(0);
  // Without randomness the probes' tags would be guessable: the kernel's
  // generator if OpenSSL's fails, and no device at all if both do.
  if (!random_bytes(probe_key_, sizeof probe_key_) && getrandom(probe_key_, sizeof probe_key_, 0) != ssize_t(sizeof probe_key_)) {
    std::fprintf(stderr, "wiremesh: no randomness for the probe key\n");
    std::abort();
  }
}

Device::~Device() {
  stop();
  udp_.close_all();
  if (tun_.fd >= 0) close(tun_.fd);
  if (tx_wake_ >= 0) close(tx_wake_);
  if (rx_wake_ >= 0) close(rx_wake_);
}

bool Device::open(const Options& opts, std::string* err) {
  opts_ = opts;
  mtu_.store(opts.mtu);
  if (opts.create_tun) {
    if (!tun_open(opts.tun_name, opts.vnet_hdr, &tun_, err)) return false;
    std::string merr;
    if (opts.mtu > 0 && !tun_set_mtu(tun_.name, opts.mtu, &merr)) {
      *err = merr;
      return false;
    }
  }
  if (!udp_.bind(opts.port, opts.fwmark, err)) return false;
  tx_wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  rx_wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  return tx_wake_ >= 0 && rx_wake_ >= 0;
}

void Device::start(std::function<void()> sink) {
  sink_ = std::move(sink);
  start_threads();
}

void Device::start_threads() {
  if (running_.exchange(true)) return;
  tx_thread_ = std::thread([this] { tx_loop(); });
  rx_thread_ = std::thread([this] { rx_loop(); });
}

void Device::stop_threads() {
  if (!running_.exchange(false)) return;
  uint64_t one = 1;
  if (write(tx_wake_, &one, 8) < 0) {}
  if (write(rx_wake_, &one, 8) < 0) {}
  if (tx_thread_.joinable()) tx_thread_.join();
  if (rx_thread_.joinable()) rx_thread_.join();
}

void Device::stop() { stop_threads(); }

bool Device::rebind(int port, std::string* err) {
  bool was_running = running_.load();
  stop_threads();
  uint32_t mark = opts_.fwmark;
  UdpSockets fresh;
  bool ok = fresh.bind(port, mark, err);
  if (ok) {
    udp_.close_all();
    udp_ = fresh;
  }
  if (was_running) start_threads();
  return ok;
}

bool Device::set_fwmark(uint32_t mark) {
  opts_.fwmark = mark;
  return udp_.set_fwmark(mark);
}

// ---- control-thread calls -------------------------------------------------

Peer* Device::find_peer(uint32_t id) {
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second.get();
}

void Device::upsert_peer(uint32_t id) {
  std::unique_lock<std::shared_mutex> lock(table_mu_);
  if (peers_.count(id)) return;
  auto p = std::make_unique<Peer>();
  p->id = id;
  peers_[id] = std::move(p);
}

void Device::remove_peer(uint32_t id) {
  std::unique_lock<std::shared_mutex> lock(table_mu_);
  Peer* p = find_peer(id);
  if (!p) return;
  allowed_.remove_peer(id);
  unlist(p);
  for (auto it = indices_.begin(); it != indices_.end();) {
    if (it->second.peer == p)
      it = indices_.erase(it);
    else
      ++it;
  }
  peers_.erase(id);
}

void Device::set_endpoint(uint32_t id, const Endpoint& ep) {
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  Peer* p = find_peer(id);
  if (!p) return;
  std::lock_guard<PeerMutex> pl(p->mu);
  p->endpoint = ep;
}

void Device::set_roaming(uint32_t id, const std::vector<Endpoint>& addrs, bool pinned) {
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  Peer* p = find_peer(id);
  if (!p) return;
  std::lock_guard<PeerMutex> pl(p->mu);
  p->roam.assign(addrs, pinned);
}

void Device::update_allowed_ips(uint32_t id, const std::vector<AllowedIPs::Entry>& prefixes, bool replace) {
  std::unique_lock<std::shared_mutex> lock(table_mu_);
  if (!find_peer(id)) return;
  if (replace) allowed_.remove_peer(id);
  for (const auto& e : prefixes) allowed_.insert(e.addr, e.family_bytes, e.cidr, id);
}

void Device::allowed_ips(uint32_t id, std::vector<AllowedIPs::Entry>* out) {
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  allowed_.peer_prefixes(id, out);
}

bool Device::install_keypair(uint32_t id, uint32_t local_index, uint32_t remote_index, const uint8_t send_key[32],
                             const uint8_t recv_key[32], bool initiator) {
  auto kp = std::make_shared<Keypair>();
  kp->local_index = local_index;
  kp->remote_index = remote_index;
  kp->peer_id = id;
  kp->initiator = initiator;
  kp->created_ms = monotonic_ms();
  kp->send = std::make_unique<ChaChaPoly>(send_key, true);
  kp->recv = std::make_unique<ChaChaPoly>(recv_key, false);
  if (!kp->send->ok() || !kp->recv->ok()) return false;
  std::unique_lock<std::shared_mutex> lock(table_mu_);
  erase_retired();
  Peer* p = find_peer(id);
  if (!p) return false;
  std::vector<std::shared_ptr<Keypair>> dropped;
  {
    std::lock_guard<PeerMutex> pl(p->mu);
    PeerLive& l = p->live();
    if (initiator) {
      // As wireguard-go: an unconfirmed next keypair becomes previous, else the
      // current one does; the new one is current at once.
      if (l.next) {
        dropped.push_back(l.previous);
        l.previous = l.next;
        l.next.reset();
        dropped.push_back(l.current);
      } else {
        dropped.push_back(l.previous);
        l.previous = l.current;
      }
      l.current = kp;
    } else {
      // The responder may not send with it until the initiator has used it.
      dropped.push_back(l.next);
      l.next = kp;
      dropped.push_back(l.previous);
      l.previous.reset();
    }
  }
  for (auto& d : dropped) erase_index(d.get());
  indices_[local_index] = IndexEntry{kp, p};
  p->live().handshake_requested_ms.store(0);
  mark_active(p);
  return true;
}

void Device::erase_index(const Keypair* kp) {
  if (!kp) return;
  auto it = indices_.find(kp->local_index);
  // JavaScript may already have reused the index for a newer keypair.
  if (it != indices_.end() && it->second.keypair.get() == kp) indices_.erase(it);
}

void Device::erase_retired() {
  std::vector<RetiredIndex> retired;
  {
    std::lock_guard<std::mutex> rl(retired_mu_);
    retired.swap(retired_);
  }
  for (const auto& r : retired) {
    auto it = indices_.find(r.index);
    if (it != indices_.end() && it->second.keypair.get() == r.keypair) indices_.erase(it);
  }
}

void Device::clear_keypairs(uint32_t id) {
  std::unique_lock<std::shared_mutex> lock(table_mu_);
  Peer* p = find_peer(id);
  if (!p) return;
  erase_retired();
  {
    std::lock_guard<PeerMutex> pl(p->mu);
    if (p->has_live()) {  // an idle peer has nothing to clear: no block made for it
      PeerLive& l = p->live();
      for (auto* slot : {&l.previous, &l.current, &l.next}) {
        erase_index(slot->get());
        slot->reset();
      }
      std::vector<std::vector<uint8_t>>().swap(l.staged);  // their memory too, not just the packets
    }
  }
  // (exclusive: no packet thread is marking it now)
  if (!is_active(p)) unlist(p);
}


void Device::send_keepalive(uint32_t id) { push_ctl(Ctl{CtlKind::kKeepalive, id}); }

void Device::flush_staged(uint32_t id, bool keepalive_if_empty) { push_ctl(Ctl{keepalive_if_empty ? CtlKind::kFlushOrKeepalive : CtlKind::kFlush, id}); }

int Device::refresh_mtu() {
  if (tun_.fd < 0) return mtu_.load();
  int m = tun_get_mtu(tun_.name);
  if (m > 0) mtu_.store(m);
  return mtu_.load();
}

bool Device::send_handshake(const Endpoint& ep, const uint8_t* buf, size_t len) {
  bool ok = udp_.send_one(ep, buf, len);
  if (!ok) count(kTxSendErrors);
  return ok;
}

void Device::push_event(Event&& e) {
  bool notify;
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    notify = events_.empty();
    if (e.kind == kEventHandshakeMessage) pending_handshakes_++;
    events_.push_back(std::move(e));
  }
  if (notify && sink_) sink_();
}

void Device::drain_events(std::vector<Event>* out) {
  std::lock_guard<std::mutex> lock(events_mu_);
  out->swap(events_);
  events_.clear();
  pending_handshakes_ = 0;
}

void Device::push_ctl(const Ctl& c) {
  {
    // Keepalives, probes and flushes: from our own timers and handshakes, bounded by the peers (device_txctl.cc
    // takes a peer's probe replies, against its quota and the queue's bound: queue_rx_ctl).
    std::lock_guard<std::mutex> lock(ctl_mu_);
    ctl_.push_back(c);
  }
  wake_tx();
}

void Device::wake_tx() {
  uint64_t one = 1;
  if (write(tx_wake_, &one, 8) < 0) {}
}

void Device::request_handshake(Peer* p, uint64_t now) {
  // At most one request a second per peer: JavaScript rate-limits initiations
  // itself (RekeyTimeout) and retries on its own timers.
  std::atomic<uint64_t>& requested = p->live().handshake_requested_ms;
  uint64_t last = requested.load(std::memory_order_relaxed);
  if (last != 0 && now - last < 1000) return;
  if (!requested.compare_exchange_strong(last, now)) return;
  mark_active(p);
  count(kHandshakeRequests);
  Event e;
  e.kind = kEventHandshakeNeeded;
  e.peer = p->id;
  push_event(std::move(e));
}

void Device::stage(Peer* p, const uint8_t* pkt, size_t len) {
  std::lock_guard<PeerMutex> pl(p->mu);
  std::vector<std::vector<uint8_t>>& staged = p->live().staged;
  if (staged.size() >= kStagedMax) {
    staged.erase(staged.begin());  // moves ≤ 127 vector headers, only while overflowing
    count(kDropStageOverflow);
  }
  staged.emplace_back(pkt, pkt + len);
  mark_active(p);
}

}  // namespace wm
