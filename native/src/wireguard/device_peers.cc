// The device's list of active peers and its peer stats (locking rules: device.h): peer_stats(active_only)
// walks the list, not every peer, so the timers' and health's reads cost what is active.
#include "device.h"

namespace wm {

bool Device::is_active(Peer* p) {
  if (!p->has_live()) return false;  // (table_mu_ exclusive, or a listed peer: no block appears meanwhile)
  const PeerLive& l = p->view();
  if (l.last_auth_sent_ms.load() != 0 || l.last_auth_recv_ms.load() != 0 || l.handshake_requested_ms.load() != 0)
    return true;
  std::lock_guard<PeerMutex> pl(p->mu);
  return l.current || l.next || l.previous || !l.staged.empty();
}

void Device::mark_active(Peer* p) {
  if (p->listed.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> al(active_mu_);
  if (p->listed.load(std::memory_order_relaxed)) return;
  p->active_pos = uint32_t(active_.size());  // < peers, which are numbered by uint32_t ids
  active_.push_back(p);
  p->listed.store(true, std::memory_order_relaxed);
}

void Device::unlist(Peer* p) {
  std::lock_guard<std::mutex> al(active_mu_);
  if (!p->listed.load(std::memory_order_relaxed)) return;
  Peer* last = active_.back();
  active_[p->active_pos] = last;
  last->active_pos = p->active_pos;
  active_.pop_back();
  p->listed.store(false, std::memory_order_relaxed);
}

size_t Device::peers_with_state() {
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  size_t n = 0;
  for (auto& kv : peers_) n += kv.second->has_live() ? 1 : 0;
  return n;
}

void Device::peer_stats(std::vector<PeerStats>* out, bool active_only) {
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  uint64_t now = monotonic_ms();
  auto emit = [&](Peer* p) {
    PeerStats s;
    s.id = p->id;
    const PeerLive& l = p->view();  // a block made after this read: the figures a moment earlier
    s.rx_bytes = l.rx_bytes.load();
    s.tx_bytes = l.tx_bytes.load();
    s.rx_packets = l.rx_packets.load();
    s.tx_packets = l.tx_packets.load();
    s.last_data_sent_ms = l.last_data_sent_ms.load();
    s.last_data_recv_ms = l.last_data_recv_ms.load();
    s.last_auth_sent_ms = l.last_auth_sent_ms.load();
    s.last_auth_recv_ms = l.last_auth_recv_ms.load();
    s.sent_unanswered_ms = l.sent_unanswered_ms.load();
    s.recv_unanswered_ms = l.recv_unanswered_ms.load();
    s.last_probe_reply_ms = l.last_probe_reply_ms.load();
    s.probe_rtt_us = l.probe_rtt_us.load();
    s.probes_sent = l.probes_sent.load();
    s.probe_replies = l.probe_replies.load();
    s.probe_replies_queued = l.probe_replies_queued.load();
    s.probe_replies_refused = l.probe_replies_refused.load();
    std::lock_guard<PeerMutex> pl(p->mu);
    s.has_current = l.current != nullptr;
    s.current_initiator = l.current && l.current->initiator;
    s.current_age_ms = l.current ? now - l.current->created_ms : 0;
    s.has_next = l.next != nullptr;
    s.endpoint = p->endpoint;
    out->push_back(s);
  };
  if (!active_only) {
    for (auto& kv : peers_) emit(kv.second.get());
    return;
  }
  // A copy: active_mu_ is a leaf, and emit takes each peer's mu. The peers
  // stay valid while table_mu_ is held; one a packet thread lists meanwhile
  // shows from the next read on.
  std::vector<Peer*> listed;
  {
    std::lock_guard<std::mutex> al(active_mu_);
    listed = active_;
  }
  for (Peer* p : listed)
    if (is_active(p)) emit(p);
}

}  // namespace wm
