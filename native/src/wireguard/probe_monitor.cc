// ProbeMonitor's control-thread side (probe_monitor.h).
#include "probe_monitor.h"

#include <unordered_set>

namespace wm {

void ProbeMonitor::watch(const std::vector<uint32_t>& add, const std::vector<uint32_t>& remove, uint64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  for (uint32_t p : remove) watched_.erase(p);
  for (uint32_t p : add) {
    Watched w;
    w.since = now;
    watched_[p] = w;
  }
  // Queued rows of these peers belong to their previous watch: a peer watched
  // again must not look alive from an answer before this watch began.
  if (queue_.empty() || (add.empty() && remove.empty())) return;
  std::unordered_set<uint32_t> gone(add.begin(), add.end());
  gone.insert(remove.begin(), remove.end());
  size_t out = 0;
  for (size_t i = 0; i + 2 < queue_.size(); i += 3) {
    if (gone.count(queue_[i])) continue;
    for (size_t k = 0; k < 3; k++) queue_[out + k] = queue_[i + k];
    out += 3;
  }
  queue_.resize(out);
}

bool ProbeMonitor::drain(std::vector<uint32_t>* rows) {
  std::lock_guard<std::mutex> l(mu_);
  if (!lost_) {
    rows->swap(queue_);
    queue_.clear();
    return false;
  }
  lost_ = false;
  queue_.clear();
  rows->reserve(watched_.size() * 3);
  for (const auto& [peer, w] : watched_) rows->insert(rows->end(), {peer, w.alive ? 1u : 0u, w.rtt_us});
  return true;
}

}  // namespace wm
