// Locking rule of the packet threads: table_mu_ (and the policy engine's and
// load balancer's mu, taken after it) is held shared only while a batch is
// decided: lookups, keypair use, encryption, counters. Every syscall that
// moves packets (sendmmsg with its EAGAIN/ENOBUFS poll-and-retry, TUN writes
// of hairpinned packets and rejects) runs after the locks are released, so a
// full socket buffer never holds a control call's exclusive table edit (nor,
// with a writer waiting, the RX thread) for the length of the retries. What
// the I/O needs survives the unlock: messages live in the TX arena and
// endpoints are copied per peer; the UDP sockets only change with the threads
// stopped (rebind). The RX thread's TUN writes already follow the rule (after
// its batch); its one cookie-reply sendto is MSG_DONTWAIT, never retried.
#include "device.h"

#include "../net/reject.h"

#include <errno.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "../net/ip.h"
#include "../net/offload.h"
#include "messages.h"


namespace wm {

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
};

namespace {
constexpr size_t kTxArenaSize = 8 << 20;
// Free arena space needed before another TUN read: a 64 KiB super-packet cut
// at the smallest MSS, each segment in its own padded slot, fits in it.
constexpr size_t kTxReadHeadroom = 256 << 10;
constexpr int kTxMaxReads = 64;
constexpr int kRxBatch = 64;
constexpr size_t kRxBufSize = 65536;
constexpr int kMaxGsoSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
constexpr int kSendBatch = 64;

inline size_t align16(size_t n) { return (n + 15) & ~size_t(15); }

uint64_t wall_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}
}  // namespace

uint64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

Device::Device() {
  for (auto& c : counters_) c.store(0);
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
  std::lock_guard<std::mutex> pl(p->mu);
  p->endpoint = ep;
}

void Device::set_allowed_ips(uint32_t id, const std::vector<AllowedIPs::Entry>& prefixes) {
  std::unique_lock<std::shared_mutex> lock(table_mu_);
  if (!find_peer(id)) return;
  allowed_.remove_peer(id);
  for (const auto& e : prefixes) allowed_.insert(e.addr, e.family_bytes, e.cidr, id);
}

void Device::allowed_ips(std::vector<AllowedIPs::Entry>* out) {
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  allowed_.entries(out);
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
    std::lock_guard<std::mutex> pl(p->mu);
    if (initiator) {
      // As wireguard-go: an unconfirmed next keypair becomes previous, else the
      // current one does; the new one is current at once.
      if (p->next) {
        dropped.push_back(p->previous);
        p->previous = p->next;
        p->next.reset();
        dropped.push_back(p->current);
      } else {
        dropped.push_back(p->previous);
        p->previous = p->current;
      }
      p->current = kp;
    } else {
      // The responder may not send with it until the initiator has used it.
      dropped.push_back(p->next);
      p->next = kp;
      dropped.push_back(p->previous);
      p->previous.reset();
    }
  }
  for (auto& d : dropped) erase_index(d.get());
  indices_[local_index] = IndexEntry{kp, p};
  p->handshake_requested_ms.store(0);
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
  std::lock_guard<std::mutex> pl(p->mu);
  for (auto* slot : {&p->previous, &p->current, &p->next}) {
    erase_index(slot->get());
    slot->reset();
  }
  p->staged.clear();
}

void Device::set_peer_identity(uint32_t id, bool tagged, uint32_t default_identity,
                               const std::vector<uint8_t>& clusters) {
  std::unique_lock<std::shared_mutex> lock(table_mu_);
  Peer* p = find_peer(id);
  if (!p) return;
  p->tagged = tagged;
  p->default_identity = default_identity;
  p->clusters = clusters;
}

uint32_t Device::accept_tag(const Peer* p, uint32_t id) const {
  if (id < 256) {
    // Reserved identities carry no cluster. A node speaks as "host" for
    // itself, which is "remote-node" here; anything more privileged is refused.
    if (id == kIdentityHost) return kIdentityRemoteNode;
    if (id == kIdentityWorld || id == kIdentityUnmanaged || id == kIdentityHealth || id == kIdentityInit ||
        id == kIdentityRemoteNode)
      return id;
    return 0;
  }
  if (id >= kIdentityLocalScope) return 0;
  uint8_t c = uint8_t(identity_cluster(id));
  for (uint8_t x : p->clusters)
    if (x == c) return id;
  return 0;
}

void Device::hairpin(const uint8_t* pkt, size_t len) {
  if (tun_.fd < 0) return;
  uint8_t vnet[kVnetHdrSize] = {0};  // complete checksums, no GSO
  iovec iov[2] = {{vnet, kVnetHdrSize}, {const_cast<uint8_t*>(pkt), len}};
  ssize_t r = tun_.vnet_hdr ? writev(tun_.fd, iov, 2) : writev(tun_.fd, iov + 1, 1);
  if (r < 0) count(kTunWriteErrors);
}

void Device::send_keepalive(uint32_t id) { push_ctl(Ctl{1, id}); }

void Device::probe(uint32_t id) {
  Ctl c{4, id};
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  c.probe[0] = kProbeRequest;
  store_be32(c.probe + 4, uint32_t(probe_seq_.fetch_add(1, std::memory_order_relaxed)));
  uint64_t ns = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  store_be32(c.probe + 8, uint32_t(ns >> 32));
  store_be32(c.probe + 12, uint32_t(ns));
  push_ctl(c);
}

void Device::rx_probe(Peer* p, const uint8_t* plain, uint64_t now) {
  if (plain[0] == kProbeRequest) {
    Ctl r{5, p->id};
    std::memcpy(r.probe, plain, kProbeSize);
    r.probe[0] = kProbeReply;
    rx_flushes_.push_back(r);
    return;
  }
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  uint64_t sent = uint64_t(load_be32(plain + 8)) << 32 | load_be32(plain + 12);
  if (sent > ns || ns - sent > 60000000000ull) return;  // not one of ours
  uint64_t rtt = (ns - sent) / 1000;
  uint64_t old = p->probe_rtt_us.load(std::memory_order_relaxed);
  p->probe_rtt_us.store(old == 0 ? rtt + 1 : (old * 3 + rtt + 1) / 4, std::memory_order_relaxed);
  p->last_probe_reply_ms.store(now, std::memory_order_relaxed);
  p->probe_replies.fetch_add(1, std::memory_order_relaxed);
}

void Device::flush_staged(uint32_t id, bool keepalive_if_empty) { push_ctl(Ctl{keepalive_if_empty ? 3 : 2, id}); }

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

void Device::peer_stats(std::vector<PeerStats>* out, bool active_only) {
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  uint64_t now = monotonic_ms();
  for (auto& kv : peers_) {
    Peer* p = kv.second.get();
    if (active_only && p->last_auth_sent_ms.load() == 0 && p->last_auth_recv_ms.load() == 0 &&
        p->handshake_requested_ms.load() == 0) {
      std::lock_guard<std::mutex> pl(p->mu);
      if (!p->current && !p->next && !p->previous && p->staged.empty()) continue;
    }
    PeerStats s;
    s.id = p->id;
    s.rx_bytes = p->rx_bytes.load();
    s.tx_bytes = p->tx_bytes.load();
    s.rx_packets = p->rx_packets.load();
    s.tx_packets = p->tx_packets.load();
    s.last_data_sent_ms = p->last_data_sent_ms.load();
    s.last_data_recv_ms = p->last_data_recv_ms.load();
    s.last_auth_sent_ms = p->last_auth_sent_ms.load();
    s.last_auth_recv_ms = p->last_auth_recv_ms.load();
    s.sent_unanswered_ms = p->sent_unanswered_ms.load();
    s.recv_unanswered_ms = p->recv_unanswered_ms.load();
    s.last_probe_reply_ms = p->last_probe_reply_ms.load();
    s.probe_rtt_us = p->probe_rtt_us.load();
    s.probes_sent = p->probes_sent.load();
    s.probe_replies = p->probe_replies.load();
    std::lock_guard<std::mutex> pl(p->mu);
    s.has_current = p->current != nullptr;
    s.current_initiator = p->current && p->current->initiator;
    s.current_age_ms = p->current ? now - p->current->created_ms : 0;
    s.has_next = p->next != nullptr;
    s.endpoint = p->endpoint;
    out->push_back(s);
  }
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
    std::lock_guard<std::mutex> lock(ctl_mu_);
    ctl_.push_back(c);
  }
  uint64_t one = 1;
  if (write(tx_wake_, &one, 8) < 0) {}
}

void Device::request_handshake(Peer* p, uint64_t now) {
  // At most one request a second per peer: JavaScript rate-limits initiations
  // itself (RekeyTimeout) and retries on its own timers.
  uint64_t last = p->handshake_requested_ms.load(std::memory_order_relaxed);
  if (last != 0 && now - last < 1000) return;
  if (!p->handshake_requested_ms.compare_exchange_strong(last, now)) return;
  count(kHandshakeRequests);
  Event e;
  e.kind = kEventHandshakeNeeded;
  e.peer = p->id;
  push_event(std::move(e));
}

void Device::stage(Peer* p, const uint8_t* pkt, size_t len) {
  std::lock_guard<std::mutex> pl(p->mu);
  if (p->staged.size() >= kStagedMax) {
    p->staged.pop_front();
    count(kDropStageOverflow);
  }
  p->staged.emplace_back(pkt, pkt + len);
}

// ---- TX thread ------------------------------------------------------------

void Device::tx_loop() {
  std::vector<uint8_t> arena(kTxArenaSize);
  std::vector<uint8_t> readbuf(kVnetHdrSize + 65536);
  std::vector<TxSeg> segs;
  std::vector<size_t> seg_lens(1024);
  std::vector<Ctl> ctl;
  segs.reserve(4096);
  while (running_.load(std::memory_order_relaxed)) {
    pollfd fds[2] = {{tx_wake_, POLLIN, 0}, {tun_.fd, POLLIN, 0}};
    int nfds = tun_.fd >= 0 ? 2 : 1;
    if (poll(fds, nfds, 1000) < 0 && errno != EINTR) break;
    if (!running_.load()) break;
    size_t used = 0;
    segs.clear();
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      if (read(tx_wake_, &v, 8) < 0) {}
      {
        std::lock_guard<std::mutex> lock(ctl_mu_);
        ctl.swap(ctl_);
        ctl_.clear();
      }
      std::shared_lock<std::shared_mutex> lock(table_mu_);
      for (const Ctl& c : ctl) {
        Peer* p = find_peer(c.peer);
        if (!p) continue;
        if (c.kind == 1 || c.kind == 4 || c.kind == 5) {
          if (used + 64 > arena.size()) break;
          size_t n = c.kind == 1 ? 0 : kProbeSize;
          if (n) std::memcpy(arena.data() + used + 16, c.probe, n);
          if (c.kind == 4) p->probes_sent.fetch_add(1, std::memory_order_relaxed);
          segs.push_back(TxSeg{arena.data() + used + 16, n, p});
          used += 64;
        } else {
          std::deque<std::vector<uint8_t>> staged;
          {
            std::lock_guard<std::mutex> pl(p->mu);
            staged.swap(p->staged);
          }
          if (staged.empty() && c.kind == 3) {
            segs.push_back(TxSeg{arena.data() + used + 16, 0, p});
            used += 64;
          }
          for (auto& pkt : staged) {
            size_t need = align16(16 + pkt.size() + 32);
            if (used + need > arena.size()) break;
            std::memcpy(arena.data() + used + 16, pkt.data(), pkt.size());
            segs.push_back(TxSeg{arena.data() + used + 16, pkt.size(), p});
            used += need;
          }
        }
      }
      ctl.clear();
    }
    if (nfds == 2 && (fds[1].revents & (POLLERR | POLLHUP | POLLNVAL))) {
      Event e;
      e.kind = kEventTunClosed;
      push_event(std::move(e));
      break;
    }
    bool tun_closed = false;
    if (nfds == 2 && (fds[1].revents & POLLIN)) {
      for (int r = 0; r < kTxMaxReads && arena.size() - used > kTxReadHeadroom; r++) {
        ssize_t n = read(tun_.fd, readbuf.data(), readbuf.size());
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          tun_closed = true;  // EBADFD/EIO: the interface was deleted
          break;
        }
        VnetHdr h;
        const uint8_t* pkt = readbuf.data();
        size_t len = size_t(n);
        if (tun_.vnet_hdr) {
          if (len < kVnetHdrSize) {
            count(kDropMalformedTun);
            continue;
          }
          vnet_decode(readbuf.data(), &h);
          pkt += kVnetHdrSize;
          len -= kVnetHdrSize;
        }
        size_t max_seg = max_segment_size(h, pkt, len);
        if (max_seg == 0) {
          count(kDropMalformedTun);
          continue;
        }
        constexpr size_t kHead = 16 + kTagSize;
        size_t stride = align16(kHead + max_seg + 32);
        int max_segs = int(std::min<size_t>((arena.size() - used) / stride, seg_lens.size()));
        int nseg = split_packet(h, pkt, len, arena.data() + used + kHead, stride, seg_lens.data(), max_segs);
        if (nseg < 0) {
          count(kDropMalformedTun);
          continue;
        }
        for (int i = 0; i < nseg; i++)
          segs.push_back(TxSeg{arena.data() + used + size_t(i) * stride + kHead, seg_lens[i], nullptr});
        used += size_t(nseg) * stride;
      }
    }
    if (!segs.empty()) tx_process(segs);
    if (tun_closed) {
      Event e;
      e.kind = kEventTunClosed;
      push_event(std::move(e));
      break;
    }
  }
}

void Device::tx_process(std::vector<TxSeg>& segs) {
  struct PeerCtx {
    Peer* peer;
    std::shared_ptr<Keypair> kp;
    Endpoint ep;
    bool usable;
    uint64_t bytes;
    uint64_t packets;
    uint64_t data_packets;
  };
  std::vector<TxOut> out;
  out.reserve(segs.size());
  // Written after the locks are released: packets back into the TUN (in the
  // arena, which lives until the next batch) and rejects built for them.
  std::vector<std::pair<const uint8_t*, size_t>> hairpins;
  std::vector<std::vector<uint8_t>> rejects;
  std::vector<PeerCtx> ctxs;
  ctxs.reserve(segs.size());  // never reallocates: TxOut keeps pointers to ctxs' endpoints
  uint64_t now = monotonic_ms();
  PolicyEngine* pe = policy();
  LoadBalancer* lb = pe ? lb_.get() : nullptr;
  uint64_t wall = pe ? wall_ms() : 0;
  uint32_t now_s = uint32_t(now / 1000);
  size_t mtu = size_t(mtu_.load());
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  std::shared_lock<std::shared_mutex> plock, llock;
  if (pe) plock = std::shared_lock<std::shared_mutex>(pe->mu);
  if (lb) llock = std::shared_lock<std::shared_mutex>(lb->mu);
  // A TSO super-packet's segments share one flow: reuse the last verdict.
  struct {
    bool valid = false;
    uint8_t key[40];
    PolicyEngine::TxAction action;
    uint32_t identity;
    bool src_local;
  } last_verdict;
  PeerCtx* last = nullptr;
  // hairpinned and to-kernel packets, written back after the batch (they live in the TX arena until then)
  static thread_local std::vector<std::pair<const uint8_t*, size_t>> back;
  back.clear();
  auto ctx_for = [&](Peer* p) -> PeerCtx& {
    // a TSO super-packet's segments all go to one peer: test the last hit first
    if (last && last->peer == p) return *last;
    for (auto& c : ctxs)
      if (c.peer == p) return *(last = &c);
    PeerCtx c{p, nullptr, Endpoint(), false, 0, 0, 0};
    {
      std::lock_guard<std::mutex> pl(p->mu);
      c.kp = p->current;
      c.ep = p->endpoint;
    }
    c.usable = c.kp && now - c.kp->created_ms < kRejectAfterTimeMs;
    if (c.kp && c.usable && c.kp->initiator && now - c.kp->created_ms >= kRekeyAfterTimeMs) request_handshake(p, now);
    ctxs.push_back(std::move(c));
    return *(last = &ctxs.back());
  };
  for (TxSeg& s : segs) {
    uint8_t* plain = s.plain;
    Peer* p = s.peer;
    uint32_t identity = kIdentityWorld;
    bool src_local = false;  // a local endpoint sent it (and its egress policy passed)
    if (!p) {
      IpInfo ip;
      if (!parse_ip(plain, s.len, &ip)) {
        count(kDropMalformedTun);
        continue;
      }
      if (pe) {
        PacketView pv;
        if (!parse_l4(plain, ip, &pv)) {
          count(kDropMalformedTun);
          continue;
        }
        // The L7 proxy's answers leave as the pod they stand for (policy then sees the pod).
        if (pv.has_ports && lb->from_proxy(ip, pv.sport))
          lb->reverse(plain, ip, &pv.sport, pv.dport, pv.tcp_flags, now_s);
        // A local flow already handed to the proxy goes there again.
        if (pv.has_ports && lb->redirected(plain, ip, pv.sport, &pv.dport, pv.tcp_flags, now_s)) {
          hairpins.emplace_back(plain, s.len);
          continue;
        }
        // Service translation comes first: policy sees the backend.
        bool nat_created = false;
        uint8_t vip[16];
        uint16_t vport = pv.dport;
        if (pv.has_ports && lb->active()) {
          std::memcpy(vip, ip.dst, size_t(ip.addr_len));
          LbResult r = lb->forward(plain, ip, pv.sport, &pv.dport, pv.tcp_flags, now_s, &nat_created);
          if (r == kLbReject) {
            uint8_t buf[kRejectMax];
            size_t n = build_reject(plain, ip, buf);
            if (n) rejects.emplace_back(buf, buf + n);
            continue;
          }
          if (r == kLbDrop) continue;  // counted by the load balancer
        }
        // Flow key: addresses, protocol, ports; TCP flags other than ACK/PSH
        // (SYN, FIN, RST) always take the full path so conntrack sees them.
        uint8_t key[40] = {0};
        std::memcpy(key, ip.src, size_t(ip.addr_len));
        std::memcpy(key + 16, ip.dst, size_t(ip.addr_len));
        key[32] = pv.proto;
        std::memcpy(key + 33, &pv.sport, 2);
        std::memcpy(key + 35, &pv.dport, 2);
        bool plain_flags = pv.proto != kProtoTCP || (pv.tcp_flags & 0x07) == 0;
        PolicyEngine::TxAction action;
        if (plain_flags && last_verdict.valid && std::memcmp(last_verdict.key, key, sizeof key) == 0) {
          action = last_verdict.action;
          identity = last_verdict.identity;
          src_local = last_verdict.src_local;
        } else {
          action = pe->tx(pv, wall, &identity, &src_local);
          last_verdict.valid = action != PolicyEngine::kTxDrop && action != PolicyEngine::kTxRedirect;
          std::memcpy(last_verdict.key, key, sizeof key);
          last_verdict.action = action;
          last_verdict.identity = identity;
          last_verdict.src_local = src_local;
        }
        if (action == PolicyEngine::kTxDrop) {
          if (nat_created) lb->forget(ip, pv.sport, pv.dport, vip, vport);  // a denied flow keeps no NAT entries
          continue;
        }
        if (action == PolicyEngine::kTxRedirect) {
          if (lb->redirect(plain, ip, pv.sport, &pv.dport, identity, pv.tcp_flags, now_s)) hairpins.emplace_back(plain, s.len);
          continue;
        }
        if (action == PolicyEngine::kTxHairpin) {
          // a local backend's reply to a local client leaves as the VIP
          if (pv.has_ports) lb->reverse(plain, ip, &pv.sport, pv.dport, pv.tcp_flags, now_s);
          // coalesced and written after the locks, with the packets handed back to the kernel
          back.emplace_back(plain, s.len);
          continue;
        }
      }
      uint32_t id = allowed_.lookup(ip.dst, ip.addr_len);
      p = id == AllowedIPs::kNoPeer ? nullptr : find_peer(id);
      if (!p) {
        // No tunnel takes it: a pod's packet to the world (or to a node address
        // without a tunnel) after its egress check goes back to the kernel, which
        // routes it out of the node (rule 2003: what the TUN writes is routed by
        // the main table). Anything else (the host's own packets) has no route.
        if (src_local) {
          pe->count_to_kernel();
          back.emplace_back(plain, s.len);
          continue;
        }
        count(kDropNoRoute);
        continue;
      }
      if (p->tagged) {
        plain -= kTagSize;
        plain[0] = kTagV0;
        plain[1] = plain[2] = plain[3] = 0;
        store_be32(plain + 4, identity);
        s.len += kTagSize;
      }
    }
    uint8_t* msg = plain - 16;
    PeerCtx& c = ctx_for(p);
    if (!c.ep.valid()) {
      count(kDropNoEndpoint);
      continue;
    }
    uint64_t nonce = 0;
    if (c.usable) {
      nonce = c.kp->send_counter.fetch_add(1, std::memory_order_relaxed);
      if (nonce >= kRejectAfterMessages) c.usable = false;
    }
    if (!c.usable) {
      stage(p, plain, s.len);
      request_handshake(p, now);
      continue;
    }
    if (nonce >= kRekeyAfterMessages) request_handshake(p, now);
    size_t padded = s.len == 0 ? 0 : padded_length(s.len, mtu + (p->tagged ? kTagSize : 0));
    if (padded > s.len) std::memset(plain + s.len, 0, padded - s.len);
    msg[0] = kMsgTransport;
    msg[1] = msg[2] = msg[3] = 0;
    put_le32(msg + kTransportReceiverOff, c.kp->remote_index);
    put_le64(msg + kTransportCounterOff, nonce);
    uint8_t n12[12];
    wg_nonce(n12, nonce);
    if (!c.kp->send->seal(n12, plain, padded, nullptr, 0, plain)) {
      count(kTxSendErrors);
      continue;
    }
    size_t mlen = 16 + padded + 16;
    c.bytes += mlen;
    c.packets++;
    if (s.len) c.data_packets++;
    out.push_back(TxOut{&c.ep, msg, mlen});
  }
  for (auto& c : ctxs) {
    if (c.bytes == 0) continue;
    Peer* p = c.peer;
    p->tx_bytes.fetch_add(c.bytes, std::memory_order_relaxed);
    p->tx_packets.fetch_add(c.packets, std::memory_order_relaxed);
    p->last_auth_sent_ms.store(now, std::memory_order_relaxed);
    p->recv_unanswered_ms.store(0, std::memory_order_relaxed);
    if (c.data_packets) {
      p->last_data_sent_ms.store(now, std::memory_order_relaxed);
      uint64_t zero = 0;
      p->sent_unanswered_ms.compare_exchange_strong(zero, now);
    }
  }
  count(kTxPackets, out.size());
  // The locking rule (top of this file): no I/O under the table locks.
  if (llock.owns_lock()) llock.unlock();
  if (plock.owns_lock()) plock.unlock();
  lock.unlock();
  for (const auto& [pkt, len] : hairpins) hairpin(pkt, len);
  for (const auto& r : rejects) hairpin(r.data(), r.size());
  tx_send(out);
  if (!back.empty()) write_back(back);
}

void Device::write_back(const std::vector<std::pair<const uint8_t*, size_t>>& pkts) {
  if (tun_.fd < 0) return;
  if (!tun_.vnet_hdr) {
    for (const auto& p : pkts)
      if (write(tun_.fd, p.first, p.second) < 0) count(kTunWriteErrors);
    return;
  }
  static thread_local Coalescer co(1024);
  co.reset();
  for (const auto& p : pkts) co.add(p.first, p.second);
  iovec iov[2];
  for (const auto& it : co.finish()) {
    iov[0] = iovec{const_cast<uint8_t*>(it.vnet), kVnetHdrSize};
    iov[1] = iovec{const_cast<uint8_t*>(it.data), it.len};
    if (writev(tun_.fd, iov, 2) < 0) count(kTunWriteErrors);
  }
}

void Device::tx_send(std::vector<TxOut>& out) {
  // One mmsghdr per run of messages to the same endpoint; with UDP GSO a run
  // of equal-sized messages (the last may be shorter) is one sendmsg.
  static thread_local std::vector<iovec> iovs;
  static thread_local std::vector<mmsghdr> msgs;
  static thread_local std::vector<std::array<char, CMSG_SPACE(sizeof(uint16_t))>> cmsgs;
  iovs.resize(out.size());
  msgs.resize(out.size());
  cmsgs.resize(out.size());
  size_t i = 0;
  const int max_segs = udp_.gso ? kMaxGsoSegments : 1;
  while (i < out.size()) {
    int fd = udp_.fd_for(*out[i].ep);
    int nm = 0;
    size_t iv = 0;
    while (i < out.size() && nm < kSendBatch && udp_.fd_for(*out[i].ep) == fd) {
      const Endpoint* ep = out[i].ep;
      size_t seg = out[i].len;
      size_t total = 0;
      int n = 0;
      while (i < out.size() && n < max_segs && (out[i].ep == ep || *out[i].ep == *ep) &&
             total + out[i].len <= kMaxGsoBytes && out[i].len <= seg) {
        iovs[iv + size_t(n)] = iovec{out[i].msg, out[i].len};
        total += out[i].len;
        bool shorter = out[i].len < seg;
        n++;
        i++;
        if (shorter) break;  // only the last segment of a GSO send may be shorter
      }
      mmsghdr& m = msgs[size_t(nm)];
      std::memset(&m, 0, sizeof m);
      m.msg_hdr.msg_name = const_cast<sockaddr*>(&ep->addr.sa);
      m.msg_hdr.msg_namelen = ep->len;
      m.msg_hdr.msg_iov = &iovs[iv];
      m.msg_hdr.msg_iovlen = size_t(n);
      if (n > 1) {
        char* cbuf = cmsgs[size_t(nm)].data();
        std::memset(cbuf, 0, CMSG_SPACE(sizeof(uint16_t)));
        m.msg_hdr.msg_control = cbuf;
        m.msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        cmsghdr* cm = CMSG_FIRSTHDR(&m.msg_hdr);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t gs = uint16_t(seg);
        std::memcpy(CMSG_DATA(cm), &gs, sizeof gs);
      }
      iv += size_t(n);
      nm++;
    }
    int sent = 0;
    int spins = 0;
    while (sent < nm) {
      int r = sendmmsg(fd, msgs.data() + sent, unsigned(nm - sent), 0);
      if (r > 0) {
        sent += r;
        continue;
      }
      if (errno == EAGAIN || errno == ENOBUFS) {
        pollfd pf{fd, POLLOUT, 0};
        poll(&pf, 1, 100);
        if (++spins < 50) continue;
        count(kTxSendErrors, size_t(nm - sent));
        break;
      }
      if (errno == EIO && udp_.gso) {
        // A route whose device cannot checksum-offload rejects GSO: fall back.
        udp_.gso = false;
      }
      // The message at `sent` failed (a firewall drop: EPERM, an unreachable
      // peer: EHOSTUNREACH / ECONNREFUSED, ...). Skip only it: the rest of
      // the batch goes to other peers, which must not suffer for one
      // unreachable node (found by npm run chaos, partition).
      count(kTxSendErrors);
      sent++;
    }
  }
}

// ---- RX thread ------------------------------------------------------------

void Device::rx_loop() {
  std::vector<uint8_t> bufs(size_t(kRxBatch) * kRxBufSize);
  std::vector<iovec> iovs(kRxBatch);
  std::vector<mmsghdr> msgs(kRxBatch);
  std::vector<Endpoint> froms(kRxBatch);
  std::vector<std::array<char, CMSG_SPACE(sizeof(int)) * 2>> cbufs(kRxBatch);
  Coalescer coalescer(1024);
  std::vector<iovec> wiov(2);
  while (running_.load(std::memory_order_relaxed)) {
    pollfd fds[3] = {{rx_wake_, POLLIN, 0}, {udp_.fd4, POLLIN, 0}, {udp_.fd6, POLLIN, 0}};
    if (poll(fds, 3, 1000) < 0 && errno != EINTR) break;
    if (!running_.load()) break;
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      if (read(rx_wake_, &v, 8) < 0) {}
    }
    for (int f = 1; f < 3; f++) {
      if (!(fds[f].revents & POLLIN)) continue;
      for (int i = 0; i < kRxBatch; i++) {
        iovs[i] = iovec{bufs.data() + size_t(i) * kRxBufSize, kRxBufSize};
        std::memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &froms[i].addr;
        msgs[i].msg_hdr.msg_namelen = sizeof froms[i].addr;
        msgs[i].msg_hdr.msg_control = cbufs[i].data();
        msgs[i].msg_hdr.msg_controllen = cbufs[i].size();
      }
      int n = recvmmsg(fds[f].fd, msgs.data(), kRxBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) continue;
      uint64_t now = monotonic_ms();
      rx_policy_ = policy();
      rx_wall_ms_ = rx_policy_ ? wall_ms() : 0;
      rx_pending_.clear();
      rx_flushes_.clear();
      {
        std::shared_lock<std::shared_mutex> lock(table_mu_);
        std::shared_lock<std::shared_mutex> plock;
        std::shared_lock<std::shared_mutex> llock;
        if (rx_policy_) {
          plock = std::shared_lock<std::shared_mutex>(rx_policy_->mu);
          llock = std::shared_lock<std::shared_mutex>(lb_->mu);
        }
        for (int i = 0; i < n; i++) {
          froms[i].len = msgs[i].msg_hdr.msg_namelen;
          size_t len = msgs[i].msg_len;
          size_t seg = len;
          for (cmsghdr* cm = CMSG_FIRSTHDR(&msgs[i].msg_hdr); cm; cm = CMSG_NXTHDR(&msgs[i].msg_hdr, cm)) {
            if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
              int gs;
              std::memcpy(&gs, CMSG_DATA(cm), sizeof gs);
              if (gs > 0) seg = size_t(gs);
            }
          }
          uint8_t* base = bufs.data() + size_t(i) * kRxBufSize;
          for (size_t off = 0; off < len; off += seg) {
            size_t l = std::min(seg, len - off);
            rx_message(base + off, l, froms[i], now);
          }
        }
      }
      for (const Ctl& c : rx_flushes_) push_ctl(c);
      if (rx_pending_.empty() || tun_.fd < 0) continue;
      coalescer.reset();
      if (tun_.vnet_hdr) {
        for (const RxPacket& p : rx_pending_) coalescer.add(p.data, p.len);
        for (const auto& it : coalescer.finish()) {
          wiov[0] = iovec{const_cast<uint8_t*>(it.vnet), kVnetHdrSize};
          wiov[1] = iovec{const_cast<uint8_t*>(it.data), it.len};
          if (writev(tun_.fd, wiov.data(), 2) < 0) count(kTunWriteErrors);
        }
      } else {
        for (const RxPacket& p : rx_pending_)
          if (write(tun_.fd, p.data, p.len) < 0) count(kTunWriteErrors);
      }
    }
  }
}

void Device::rx_message(uint8_t* msg, size_t len, const Endpoint& from, uint64_t now) {
  int type = classify_message(msg, len);
  if (type == 0) {
    count(kDropNotWireGuard);
    return;
  }
  if (type != kMsgTransport) {
    if (type != kMsgCookieReply && !cookies_.check_mac1(msg, len)) {
      count(kDropBadMac1);
      return;
    }
    size_t pending;
    {
      std::lock_guard<std::mutex> lock(events_mu_);
      pending = pending_handshakes_;
    }
    if (pending >= kHandshakeQueueSize) {
      count(kDropHandshakeQueueFull);
      return;
    }
    if (pending >= kHandshakeQueueSize / 8) under_load_until_ms_.store(now + 1000);
    if (type != kMsgCookieReply && now < under_load_until_ms_.load()) {
      uint8_t src[18];
      size_t srclen = from.cookie_bytes(src);
      if (!cookies_.check_mac2(msg, len, src, srclen, now)) {
        uint8_t reply[kCookieReplySize];
        uint32_t sender = le32(msg + kInitiationSenderOff);  // same offset in responses
        if (cookies_.make_reply(msg, len, sender, src, srclen, now, reply) && udp_.send_one(from, reply, sizeof reply))
          count(kCookieRepliesSent);
        return;
      }
      int iplen;
      const uint8_t* ip = from.ip_bytes(&iplen);
      timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      if (!ratelimiter_.allow(ip, iplen, uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec))) {
        count(kDropRateLimited);
        return;
      }
    }
    count(kRxHandshakeMessages);
    Event e;
    e.kind = kEventHandshakeMessage;
    e.data.assign(msg, msg + len);
    e.from = from;
    push_event(std::move(e));
    return;
  }

  uint32_t receiver = le32(msg + kTransportReceiverOff);
  auto it = indices_.find(receiver);
  if (it == indices_.end()) {
    count(kDropUnknownReceiver);
    return;
  }
  Keypair* kp = it->second.keypair.get();
  Peer* p = it->second.peer;
  uint64_t counter = le64(msg + kTransportCounterOff);
  if (now - kp->created_ms >= kRejectAfterTimeMs || counter >= kRejectAfterMessages) {
    count(kDropKeypairExpired);
    return;
  }
  size_t clen = len - kTransportHeaderSize - kAeadTagSize;
  uint8_t n12[12];
  wg_nonce(n12, counter);
  uint8_t* plain = msg + kTransportHeaderSize;
  if (!kp->recv->open(n12, plain, clen, nullptr, 0, plain)) {
    count(kDropDecryptFailed);
    return;
  }
  if (!kp->replay.validate(counter)) {
    count(kDropReplayed);
    return;
  }
  // Authenticated: promote a confirmed next keypair, follow a roaming peer.
  {
    std::lock_guard<std::mutex> pl(p->mu);
    if (p->next.get() == kp) {
      // The index map is read-only here (shared lock); the control thread
      // erases the retired keypair's index on its next table edit.
      if (p->previous) {
        std::lock_guard<std::mutex> rl(retired_mu_);
        retired_.push_back(RetiredIndex{p->previous->local_index, p->previous.get()});
      }
      p->previous = p->current;
      p->current = p->next;
      p->next.reset();
      rx_flushes_.push_back(Ctl{2, p->id});
      Event e;
      e.kind = kEventKeypairConfirmed;
      e.peer = p->id;
      push_event(std::move(e));
    }
    if (p->endpoint != from) p->endpoint = from;
  }
  p->rx_bytes.fetch_add(len, std::memory_order_relaxed);
  p->rx_packets.fetch_add(1, std::memory_order_relaxed);
  p->last_auth_recv_ms.store(now, std::memory_order_relaxed);
  p->sent_unanswered_ms.store(0, std::memory_order_relaxed);
  if (kp->initiator && now - kp->created_ms >= kRejectAfterTimeMs - kKeepaliveTimeoutMs - kRekeyTimeoutMs)
    request_handshake(p, now);
  if (clen == 0) {
    count(kRxKeepalives);
    return;
  }
  if ((plain[0] >> 4) == (kProbeRequest >> 4)) {
    if (!rx_policy_ || clen < kProbeSize) {
      count(kDropMalformedInner);
      return;
    }
    rx_probe(p, plain, now);
    return;
  }
  uint8_t* pkt = plain;
  size_t rem = clen;
  bool tagged = (plain[0] >> 4) == (kTagV0 >> 4);
  uint32_t tag_identity = 0;
  if (tagged) {
    // Only the mesh agent speaks tags; an unknown version is not guessed at.
    if (!rx_policy_ || clen < kTagSize || plain[0] != kTagV0) {
      count(kDropMalformedInner);
      if (rx_policy_) rx_policy_->record_drop(nullptr, kReasonMalformedTag, 0, p->id, rx_wall_ms_);
      return;
    }
    tag_identity = load_be32(plain + 4);
    pkt += kTagSize;
    rem -= kTagSize;
  }
  IpInfo ip;
  if (!parse_ip(pkt, rem, &ip)) {
    count(kDropMalformedInner);
    return;
  }
  PacketView pv;
  if (rx_policy_ && !parse_l4(pkt, ip, &pv)) {
    count(kDropMalformedInner);
    return;
  }
  if (allowed_.lookup(ip.src, ip.addr_len) != p->id) {
    count(kDropCryptokeyRouting);
    if (rx_policy_) rx_policy_->record_drop(&pv, kReasonSourceNotAllowed, tag_identity, p->id, rx_wall_ms_);
    return;
  }
  if (rx_policy_) {
    uint32_t src_identity;
    if (tagged) {
      src_identity = accept_tag(p, tag_identity);
      if (src_identity == 0) {
        rx_policy_->record_drop(&pv, kReasonIdentityCluster, tag_identity, p->id, rx_wall_ms_);
        return;
      }
    } else {
      src_identity = rx_policy_->untagged_identity(pv, p->default_identity);
    }
    uint32_t now_s = uint32_t(now / 1000);
    // a flow already handed to the L7 proxy: its policy was decided at its first packet
    if (!(pv.has_ports && lb_->redirected(pkt, ip, pv.sport, &pv.dport, pv.tcp_flags, now_s))) {
      PolicyEngine::RxAction a = rx_policy_->rx(pv, src_identity, p->id, rx_wall_ms_);
      if (a == PolicyEngine::kRxDrop) return;
      if (a == PolicyEngine::kRxRedirect) {
        if (!lb_->redirect(pkt, ip, pv.sport, &pv.dport, src_identity, pv.tcp_flags, now_s)) return;
      } else if (pv.has_ports) {
        lb_->reverse(pkt, ip, &pv.sport, pv.dport, pv.tcp_flags, now_s);
      }
    }
  }
  p->last_data_recv_ms.store(now, std::memory_order_relaxed);
  uint64_t zero = 0;
  p->recv_unanswered_ms.compare_exchange_strong(zero, now);
  count(kRxPackets);
  rx_pending_.push_back(RxPacket{pkt, ip.total_len});
}

}  // namespace wm
