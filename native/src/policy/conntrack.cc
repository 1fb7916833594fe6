#include "conntrack.h"

#include <cstring>

namespace wm {

const char* const Conntrack::kCounterNames[kCounterCount] = {
    "conntrack_evicted",          // unreplied or closing entries removed to make room
    "conntrack_eviction_sweeps",  // times the table or an endpoint's quota was full and a sweep made room
    "conntrack_quota_full",       // new flows without an entry: their endpoint's quota was full of replied flows
    "conntrack_table_full",       // new flows without an entry: the table was full
};

namespace {
constexpr uint8_t kTcpFin = 0x01, kTcpRst = 0x04;
}

Conntrack::Key Conntrack::make_key(CtScope scope, const FlowTuple& t, bool* src_is_a) {
  Key k;
  std::memset(&k, 0, sizeof k);
  int c = std::memcmp(t.src, t.dst, size_t(t.addr_len));
  bool a_is_src = c < 0 || (c == 0 && t.sport <= t.dport);
  const uint8_t* a = a_is_src ? t.src : t.dst;
  const uint8_t* b = a_is_src ? t.dst : t.src;
  std::memcpy(k.a, a, size_t(t.addr_len));
  std::memcpy(k.b, b, size_t(t.addr_len));
  k.pa = a_is_src ? t.sport : t.dport;
  k.pb = a_is_src ? t.dport : t.sport;
  k.proto = t.proto;
  k.scope = scope;
  k.family = uint8_t(t.addr_len);
  *src_is_a = a_is_src;
  return k;
}

uint32_t Conntrack::timeout(const Entry& e) {
  if (e.closing) return kClosingTimeout;
  if (!e.replied) return kUnrepliedTimeout;
  return e.tcp ? kTcpTimeout : kOtherTimeout;
}

CtResult Conntrack::lookup(CtScope scope, const FlowTuple& t, uint32_t now_s) {
  bool src_is_a;
  Key k = make_key(scope, t, &src_is_a);
  bool closing = (t.tcp_flags & (kTcpFin | kTcpRst)) != 0;
  for (int pass = 0; pass < 2; pass++) {
    // pass 0: our scope, same orientation; pass 1: the other scope, reversed (a reply)
    bool want_orig_a = pass == 0 ? src_is_a : !src_is_a;
    int delta = 0;  // change in the entry's "evictable" state (unreplied or closing)
    uint32_t endpoint = 0;
    bool hit = map_.with(k, [&](Entry* e) {
      if (!e || bool(e->orig_is_a) != want_orig_a) return false;
      bool was = evictable(*e);
      e->last_s = now_s;
      if (closing) e->closing = 1;
      if (pass == 1) e->replied = 1;
      delta = int(evictable(*e)) - int(was);
      endpoint = e->endpoint;
      return true;
    });
    if (delta) {
      std::lock_guard<std::mutex> lock(quota_mu_);
      usage_[endpoint].evictable += delta;
    }
    if (hit) return pass == 0 ? kCtEstablished : kCtReply;
    k.scope = scope == kCtEgress ? kCtIngress : kCtEgress;
  }
  return kCtMiss;
}

bool Conntrack::tracked(const FlowTuple& t) {
  bool src_is_a;
  Key k = make_key(kCtEgress, t, &src_is_a);
  for (uint8_t scope : {kCtEgress, kCtIngress}) {
    k.scope = scope;
    if (map_.with(k, [](Entry* e) { return e != nullptr; })) return true;
  }
  return false;
}

CtCreate Conntrack::create(CtScope scope, const FlowTuple& t, uint32_t now_s, uint32_t rule, uint32_t endpoint) {
  bool src_is_a;
  Key k = make_key(scope, t, &src_is_a);
  Entry e{now_s, rule, endpoint, uint8_t(src_is_a), uint8_t((t.tcp_flags & (kTcpFin | kTcpRst)) != 0),
          uint8_t(t.proto == 6), 0};
  size_t quota = per_endpoint_.load(std::memory_order_relaxed);
  size_t max = map_.max_entries();
  bool sweep = false, quota_full = false;
  uint32_t victim = endpoint;
  {
    std::lock_guard<std::mutex> lock(quota_mu_);
    Usage& u = usage_[endpoint];
    if (size_t(u.total) >= quota) {
      // the endpoint's own quota: only its own evictable entries may make room
      quota_full = true;
      sweep = worth_sweeping(u.evictable, quota);
    } else if (map_.size() >= max) {
      // the table: the endpoint with most evictable entries pays (the flooder)
      int64_t most = 0;
      for (auto& [id, v] : usage_)
        if (v.evictable > most) {
          most = v.evictable;
          victim = id;
        }
      sweep = worth_sweeping(most, quota < max ? quota : max);
    }
  }
  if (quota_full && !sweep) {
    count(kQuotaFull);
    return kCtQuotaFull;
  }
  if (sweep) {
    count(kEvictionSweeps);
    count(kEvicted, sweep_evictable(victim));
  }
  int r = map_.insert(k, e);
  if (r < 0) {
    count(kTableFull);
    return kCtTableFull;
  }
  if (r == 0) return kCtExists;
  std::lock_guard<std::mutex> lock(quota_mu_);
  Usage& u = usage_[endpoint];
  u.total++;
  u.evictable++;  // new entries are unreplied
  return kCtCreated;
}

size_t Conntrack::sweep_evictable(uint32_t endpoint) {
  size_t n = map_.erase_if([endpoint](const Key&, const Entry& e) { return e.endpoint == endpoint && evictable(e); });
  std::lock_guard<std::mutex> lock(quota_mu_);
  Usage& u = usage_[endpoint];
  u.total -= int64_t(n);
  u.evictable -= int64_t(n);
  return n;
}

size_t Conntrack::gc(uint32_t now_s) {
  std::unordered_map<uint32_t, Usage> gone;
  size_t n = map_.erase_if([&](const Key&, const Entry& e) {
    if (now_s - e.last_s <= timeout(e)) return false;
    Usage& g = gone[e.endpoint];
    g.total++;
    if (evictable(e)) g.evictable++;
    return true;
  });
  std::lock_guard<std::mutex> lock(quota_mu_);
  for (auto& [id, g] : gone) {
    Usage& u = usage_[id];
    u.total -= g.total;
    u.evictable -= g.evictable;
  }
  for (auto it = usage_.begin(); it != usage_.end();) it = it->second.total <= 0 ? usage_.erase(it) : std::next(it);
  return n;
}

size_t Conntrack::endpoint_entries(uint32_t endpoint) {
  std::lock_guard<std::mutex> lock(quota_mu_);
  auto it = usage_.find(endpoint);
  return it == usage_.end() ? 0 : size_t(it->second.total);
}

void Conntrack::clear() {
  map_.clear();
  std::lock_guard<std::mutex> lock(quota_mu_);
  usage_.clear();
}

}  // namespace wm
