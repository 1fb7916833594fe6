// The TX thread's control round: keepalives, liveness probes and the flushes of staged packets, packed into
// the TX arena before its TUN reads (pipeline and locking rules: device.h). What does not fit waits for the
// next round, in order: nothing is dropped for want of arena space (before, the rest of a flush was lost
// uncounted, and every later message of the round with it). And the queue's one input a peer drives: replies to
// its probe requests, at most Device::kProbeRepliesQueuedMax per peer and none past the queue's bound.
#include <cstring>

#include "device.h"
#include "device_internal.h"

namespace wm {

using namespace device_detail;

namespace {
// A keepalive or probe: 16 bytes of header room, ≤ kProbeSize of plaintext, room for padding and the tag.
constexpr size_t kCtlSlot = 64;

// A probe reply has left the queue for the arena: its peer's quota slot is free. Saturating: a reply queued to a
// removed peer whose id came back (never in the device: ids are not reused) must not wrap the new peer's count.
void reply_packed(Peer* p) {
  std::atomic<uint32_t>& queued = p->live().probe_replies_queued;
  uint32_t n = queued.load(std::memory_order_relaxed);
  while (n > 0 && !queued.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {}
}
}  // namespace

Counter Device::queue_probe_reply(std::vector<Ctl>* q, Peer* p, const Ctl& c) {
  // Only the RX thread counts in (under ctl_mu_) and the TX thread only counts out: check-then-add cannot overshoot.
  PeerLive& l = p->live();  // (made already: the request it answers was authenticated)
  Counter refused = l.probe_replies_queued.load(std::memory_order_relaxed) >= kProbeRepliesQueuedMax ? kDropProbeReplyQuota
                    : q->size() >= kTxCtlQueueMax                                                   ? kDropControlOverflow
                                                                                                    : kCounterCount;
  if (refused != kCounterCount) {
    l.probe_replies_refused.fetch_add(1, std::memory_order_relaxed);  // per peer: who is refused, not only how often
    return refused;
  }
  l.probe_replies_queued.fetch_add(1, std::memory_order_relaxed);
  q->push_back(c);
  return kCounterCount;
}

bool Device::queue_rx_ctl() {
  if (rx_flushes_.empty()) return false;
  bool queued = false;
  std::lock_guard<std::mutex> lock(ctl_mu_);
  for (const Ctl& c : rx_flushes_) {
    if (c.kind != CtlKind::kProbeReply) {  // a flush: a keypair confirmed, at most one per peer and batch
      ctl_.push_back(c);
      queued = true;
      continue;
    }
    Peer* p = find_peer(c.peer);  // (found: rx_probe saw it under this hold of table_mu_)
    if (!p) continue;
    Counter drop = queue_probe_reply(&ctl_, p, c);
    if (drop == kCounterCount)
      queued = true;
    else
      count(drop);
  }
  return queued;
}

size_t Device::pack_control(const Ctl* ctl, size_t n, const std::function<Peer*(uint32_t)>& find, uint8_t* arena,
                            size_t cap, size_t* used, std::vector<TxSeg>* segs, uint64_t* dropped) {
  for (size_t i = 0; i < n; i++) {
    const Ctl& c = ctl[i];
    Peer* p = find(c.peer);
    if (!p) continue;
    bool flush = c.kind == CtlKind::kFlush || c.kind == CtlKind::kFlushOrKeepalive;
    if (!flush) {
      if (*used + kCtlSlot > cap) return i;
      size_t len = c.kind == CtlKind::kKeepalive ? 0 : kProbeSize;
      if (len) std::memcpy(arena + *used + 16, c.probe, len);
      if (c.kind == CtlKind::kProbeRequest) p->live().probes_sent.fetch_add(1, std::memory_order_relaxed);
      if (c.kind == CtlKind::kProbeReply) reply_packed(p);
      segs->push_back(TxSeg{arena + *used + 16, len, true, p->id});
      *used += kCtlSlot;
      continue;
    }
    std::vector<std::vector<uint8_t>> staged;
    {
      std::lock_guard<PeerMutex> pl(p->mu);
      if (p->has_live()) staged.swap(p->live().staged);  // an idle peer's flush: nothing staged, no block made
    }
    if (staged.empty()) {
      if (c.kind != CtlKind::kFlushOrKeepalive) continue;
      if (*used + kCtlSlot > cap) return i;  // nothing was taken: the message alone waits
      segs->push_back(TxSeg{arena + *used + 16, 0, true, p->id});
      *used += kCtlSlot;
      continue;
    }
    size_t k = 0;
    for (; k < staged.size(); k++) {
      const std::vector<uint8_t>& pkt = staged[k];
      size_t need = align16(16 + pkt.size() + 32);
      if (need > cap) {  // would never fit: dropped, counted, not carried forever
        ++*dropped;
        continue;
      }
      if (*used + need > cap) break;
      std::memcpy(arena + *used + 16, pkt.data(), pkt.size());
      segs->push_back(TxSeg{arena + *used + 16, pkt.size(), true, p->id});
      *used += need;
    }
    if (k < staged.size()) {
      // The unsent rest goes back in front of the queue and this flush stays queued: the next round (after
      // this arena is sent) sends it on, in order, before anything staged later.
      staged.erase(staged.begin(), staged.begin() + std::ptrdiff_t(k));
      *dropped += unstage(p, &staged);
      return i;
    }
  }
  return n;
}

uint64_t Device::unstage(Peer* p, std::vector<std::vector<uint8_t>>* rest) {
  std::lock_guard<PeerMutex> pl(p->mu);
  // (In the device nothing is staged meanwhile: only the TX thread stages, and it is here. Kept general.)
  std::vector<std::vector<uint8_t>>& staged = p->live().staged;
  rest->reserve(rest->size() + staged.size());
  for (auto& pkt : staged) rest->push_back(std::move(pkt));
  size_t over = rest->size() > kStagedMax ? rest->size() - kStagedMax : 0;
  rest->erase(rest->begin(), rest->begin() + std::ptrdiff_t(over));  // the oldest first, as stage() drops
  staged.swap(*rest);
  return over;
}

}  // namespace wm
