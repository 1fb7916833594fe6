// Service table and backend selection (Maglev). NAT and proxy redirects: lb_nat.cc.
#include "lb.h"

#include <algorithm>
#include <cstring>

namespace wm {

const char* const kLbCounterNames[kLbCounterCount] = {
    "service_new_flows", "service_reject_no_backend", "service_reject_dead_backend", "service_nat_full",
    "service_reverse_translated", "service_drop_midflow_no_backend", "service_nat_evicted",
    "service_nat_quota_full",    // new flows without NAT entries: their client's quota was full of answered flows
    "service_nat_quota_sweeps",  // times a client's quota was full and its own evictable pairs were swept
};

bool LbService::alive(const BackendKey& k) const { return std::binary_search(backends.begin(), backends.end(), k); }

LoadBalancer::LoadBalancer(size_t max_nat_entries) : nat_(max_nat_entries) {
  for (auto& c : counters_) c.store(0);
}

void LoadBalancer::upsert(std::shared_ptr<LbService> svc) {
  // Sorted by key, so every node builds the same table.
  sort_backends(&svc->backends, &svc->weights);
  svc->table.assign(maglev_build(svc->backends, svc->weights, svc->m), svc->backends.size());
  std::shared_ptr<const LbService> old;
  {
    std::unique_lock<std::shared_mutex> lock(mu);
    auto& slot = services_[svc->id];
    old = std::move(slot);
    slot = std::move(svc);
    rebuild_frontends();
  }
}

void LoadBalancer::remove(uint32_t id) {
  std::shared_ptr<const LbService> old;
  std::unique_lock<std::shared_mutex> lock(mu);
  auto it = services_.find(id);
  if (it == services_.end()) return;
  old = std::move(it->second);
  services_.erase(it);
  rebuild_frontends();
}

void LoadBalancer::rebuild_frontends() {
  frontends_.clear();
  for (const auto& [id, s] : services_)
    for (const Frontend& f : s->frontends) frontends_.put(f, s.get());
  frontends_n_.store(frontends_.size(), std::memory_order_relaxed);
}

size_t LoadBalancer::services() const {
  std::shared_lock<std::shared_mutex> lock(mu);
  return services_.size();
}

const LbService* LoadBalancer::select(const Frontend& fe, const uint8_t* src, uint16_t sport,
                                      const BackendKey** backend) const {
  const uint64_t fh = flowhash::frontend(fe);
  const LbService* svc = frontends_.find(fe, fh);
  if (!svc) return nullptr;
  *backend = nullptr;
  if (!svc->table.empty())
    *backend = &svc->backends[svc->table[flowhash::slot(flowhash::flow(fh, src, fe.family, sport), svc->m)]];
  return svc;
}

bool LoadBalancer::pick(const Frontend& fe, const uint8_t* src, uint16_t sport, BackendKey* out) {
  std::shared_lock<std::shared_mutex> lock(mu);
  const BackendKey* b = nullptr;
  if (!select(fe, src, sport, &b) || !b) return false;
  *out = *b;
  return true;
}

}  // namespace wm
