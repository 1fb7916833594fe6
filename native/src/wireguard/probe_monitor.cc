// ProbeMonitor's control-thread side (probe_monitor.h).
#include "probe_monitor.h"

namespace wm {

void ProbeMonitor::watch(const std::vector<uint32_t>& add, const std::vector<uint32_t>& remove, uint64_t now) {
  std::lock_guard<std::mutex> l(mu_);
  for (uint32_t p : remove) watched_.erase(p);
  for (uint32_t p : add) {
    Watched w;
    w.since = now;
    watched_[p] = w;
  }
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
