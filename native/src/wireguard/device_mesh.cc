// Mesh mode on the packet path: identities and tags, hairpinning back into the TUN,
// liveness probes (locking rules: device.h).
#include "device.h"

#include "../crypto/blake2s.h"
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
#include "peer_clusters.h"
#include "device_internal.h"

namespace wm {

using namespace device_detail;

void Device::set_peer_identity(uint32_t id, bool tagged, uint32_t default_identity,
                               const std::vector<uint16_t>& clusters) {
  std::unique_lock<std::shared_mutex> lock(table_mu_);
  Peer* p = find_peer(id);
  if (!p) return;
  p->tagged = tagged;
  p->default_identity = default_identity;
  p->clusters.assign(clusters);
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
  return peer_speaks_for(p->clusters, max_clusters(), id) ? id : 0;
}

void Device::hairpin(const uint8_t* pkt, size_t len) {
  if (tun_.fd < 0) return;
  uint8_t vnet[kVnetHdrSize] = {0};  // complete checksums, no GSO
  iovec iov[2] = {{vnet, kVnetHdrSize}, {const_cast<uint8_t*>(pkt), len}};
  ssize_t r = tun_.vnet_hdr ? writev(tun_.fd, iov, 2) : writev(tun_.fd, iov + 1, 1);
  if (r < 0) count(kTunWriteErrors);
}


void Device::probe(uint32_t id) { push_ctl(probe_ctl(id)); }

Device::Ctl Device::probe_ctl(uint32_t id) {
  Ctl c{CtlKind::kProbeRequest, id};
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  c.probe[0] = kProbeRequest;
  uint64_t ns = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  probe_tag(id, ns, c.probe + 1);
  store_be32(c.probe + 8, uint32_t(ns >> 32));
  store_be32(c.probe + 12, uint32_t(ns));
  return c;
}

// Why a tag: the RTT is computed from the timestamp the answer carries, so a
// peer that could write one (a compromised node) would echo a time later than
// the probe's and claim a shorter path than it has; the windowed minimum
// (rtt_window.h) would keep that one answer for 10 s, and affinity "nearest"
// would send every client's new flows to that peer's cluster. With the tag it
// can only echo what it received (which makes it look farther, never nearer).
// 56 bits (bytes 1..7, the 3 bytes once reserved and the 4 of the sequence
// number, all of which every version echoes): a forgery is one guess per
// answer, each one a transport message the peer must send and we count
// (drop_probe_forged); at a million a second one lands in ~1,100 years.
void Device::probe_tag(uint32_t id, uint64_t ns, uint8_t out[kProbeTagSize]) const {
  uint8_t in[12];
  store_be32(in, id);
  store_be32(in + 4, uint32_t(ns >> 32));
  store_be32(in + 8, uint32_t(ns));
  blake2s(out, kProbeTagSize, in, sizeof in, probe_key_, sizeof probe_key_);
}

void Device::probe_watch(const std::vector<uint32_t>& add, const std::vector<uint32_t>& remove) {
  probes_.watch(add, remove, monotonic_ms());
  uint64_t one = 1;  // the TX thread starts the first round now, not after its idle poll
  if (write(tx_wake_, &one, 8) < 0) {}
}

int Device::probe_round_due(int timeout_ms) {
  if (probes_.empty()) return timeout_ms;
  uint64_t now = monotonic_ms();
  if (now >= next_probe_ms_) {
    std::vector<uint32_t> ids;
    {
      std::shared_lock<std::shared_mutex> lock(table_mu_);
      probes_.round(
          now,
          [&](uint32_t id, ProbeMonitor::Reply* r) {
            Peer* p = find_peer(id);
            if (!p) return false;
            const PeerLive& l = p->view();  // never answered: the idle block's zeros, no block made
            r->replies = l.probe_replies.load(std::memory_order_acquire);  // before the RTT (rx_probe)
            r->last_ms = l.last_probe_reply_ms.load(std::memory_order_relaxed);
            r->rtt_us = l.probe_rtt_us.load(std::memory_order_relaxed);
            return true;
          },
          &ids);
    }
    std::vector<Ctl> cs;
    cs.reserve(ids.size());
    for (uint32_t id : ids) cs.push_back(probe_ctl(id));
    {
      std::lock_guard<std::mutex> lock(ctl_mu_);
      ctl_.insert(ctl_.end(), cs.begin(), cs.end());
    }
    uint64_t one = 1;  // one wake-up for the whole round
    if (write(tx_wake_, &one, 8) < 0) {}
    next_probe_ms_ = now + ProbeMonitor::kRoundMs;
  }
  uint64_t wait = next_probe_ms_ - now;
  return int(wait < uint64_t(timeout_ms) ? wait : uint64_t(timeout_ms));
}

void Device::rx_probe(Peer* p, const uint8_t* plain, uint64_t now) {
  if (plain[0] == kProbeRequest) {
    Ctl r{CtlKind::kProbeReply, p->id};
    std::memcpy(r.probe, plain, kProbeSize);
    r.probe[0] = kProbeReply;
    rx_flushes_.push_back(r);
    return;
  }
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  uint64_t sent = uint64_t(load_be32(plain + 8)) << 32 | load_be32(plain + 12);
  uint8_t tag[kProbeTagSize];
  probe_tag(p->id, sent, tag);
  if (std::memcmp(plain + 1, tag, kProbeTagSize) != 0) {  // not one of ours to this peer
    count(kDropProbeForged);
    return;
  }
  if (sent > ns || ns - sent > 60000000000ull) return;  // ours, but older than 60 s
  uint64_t rtt = (ns - sent) / 1000;
  // This answer's RTT as it is: the probe monitor keeps the windowed minimum
  // (rtt_window.h). The count goes last: a round that sees the new count sees
  // this RTT (or a newer one).
  PeerLive& l = p->live();
  l.probe_rtt_us.store(rtt == 0 ? 1 : rtt, std::memory_order_relaxed);
  l.last_probe_reply_ms.store(now, std::memory_order_relaxed);
  l.probe_replies.fetch_add(1, std::memory_order_release);
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

}  // namespace wm
