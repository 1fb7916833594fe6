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

const uint64_t* Conntrack::Hash4::seeds() {
  static const uint64_t* s = [] {
    static uint64_t seeds[5];
    for (int i = 0; i < 5; i++) {
      uint64_t x = flatmap_seed() + uint64_t(i) * 0x9E3779B97F4A7C15ull;
      seeds[i] = hash_bytes(&x, sizeof x, 0xC7C7C7C7u);
    }
    return seeds;
  }();
  return s;
}

Conntrack::Key6 Conntrack::make_key6(CtScope scope, const FlowTuple& t, bool* src_is_a) {
  Key6 k;
  std::memset(&k, 0, sizeof k);
  int c = std::memcmp(t.src, t.dst, 16);
  bool a_is_src = c < 0 || (c == 0 && t.sport <= t.dport);
  std::memcpy(k.a, a_is_src ? t.src : t.dst, 16);
  std::memcpy(k.b, a_is_src ? t.dst : t.src, 16);
  k.pa = a_is_src ? t.sport : t.dport;
  k.pb = a_is_src ? t.dport : t.sport;
  k.proto = t.proto;
  k.scope = scope;
  *src_is_a = a_is_src;
  return k;
}

uint32_t Conntrack::timeout(const Entry& e) {
  if (e.closing) return kClosingTimeout;
  if (!e.replied) return kUnrepliedTimeout;
  return e.tcp ? kTcpTimeout : kOtherTimeout;
}

template <typename M, typename K>
CtResult Conntrack::lookup_in(M& map, K k, CtScope scope, bool src_is_a, bool closing, uint32_t now_s) {
  for (int pass = 0; pass < 2; pass++) {
    // pass 0: our scope, same orientation; pass 1: the other scope, reversed (a reply)
    bool want_orig_a = pass == 0 ? src_is_a : !src_is_a;
    // Lock-free first: most packets of a flow leave its entry as it is.
    uint32_t last_s = 0;
    bool same_state = false, proxied = false;
    bool found = map.read(k, [&](const Entry* e) {
      if (!e || bool(e->orig_is_a) != want_orig_a) return false;
      last_s = e->last_s;
      same_state = (!closing || e->closing) && (pass == 0 || e->replied);
      proxied = e->proxied;
      return true;
    });
    if (found && last_s == now_s && same_state) return verdict(pass, proxied);
    int delta = 0;  // change in the entry's "evictable" state (unreplied or closing)
    uint32_t endpoint = 0;
    bool hit = found && map.with(k, [&](Entry* e) {
      if (!e || bool(e->orig_is_a) != want_orig_a) return false;  // gone (or replaced) since the read
      bool was = evictable(*e);
      e->last_s = now_s;
      if (closing) e->closing = 1;
      if (pass == 1) e->replied = 1;
      delta = int(evictable(*e)) - int(was);
      endpoint = e->endpoint;
      proxied = e->proxied;
      return true;
    });
    if (delta) {
      std::lock_guard<std::mutex> lock(quota_mu_);
      usage_[endpoint].evictable += delta;
    }
    if (hit) return verdict(pass, proxied);
    k.scope = scope == kCtEgress ? kCtIngress : kCtEgress;
  }
  return kCtMiss;
}

CtResult Conntrack::lookup_slow(CtScope scope, const FlowTuple& t, uint32_t now_s) {
  bool src_is_a;
  bool closing = (t.tcp_flags & kClosingFlags) != 0;
  if (t.addr_len == 4) {
    Key4 k = make_key4(scope, t, &src_is_a);  // (sets src_is_a: not in the call's arguments)
    return lookup_in(map4_, k, scope, src_is_a, closing, now_s);
  }
  Key6 k = make_key6(scope, t, &src_is_a);
  return lookup_in(map6_, k, scope, src_is_a, closing, now_s);
}

template <typename M, typename K>
bool Conntrack::tracked_in(M& map, K k) {
  for (uint8_t scope : {kCtEgress, kCtIngress}) {
    k.scope = scope;
    if (map.read(k, [](const Entry* e) { return e != nullptr; })) return true;
  }
  return false;
}

bool Conntrack::tracked(const FlowTuple& t) {
  bool src_is_a;
  if (t.addr_len == 4) return tracked_in(map4_, make_key4(kCtEgress, t, &src_is_a));
  return tracked_in(map6_, make_key6(kCtEgress, t, &src_is_a));
}

CtCreate Conntrack::create(CtScope scope, const FlowTuple& t, uint32_t now_s, uint32_t rule, uint32_t endpoint,
                           bool proxied) {
  bool src_is_a = false;
  Key4 k4{};
  Key6 k6{};
  if (t.addr_len == 4)
    k4 = make_key4(scope, t, &src_is_a);
  else
    k6 = make_key6(scope, t, &src_is_a);
  Entry e{now_s, rule, endpoint, uint8_t(src_is_a), uint8_t((t.tcp_flags & (kTcpFin | kTcpRst)) != 0),
          uint8_t(t.proto == 6), 0, uint8_t(proxied)};
  size_t quota = per_endpoint_.load(std::memory_order_relaxed);
  size_t max = map4_.max_entries();
  bool sweep = false, quota_full = false;
  uint32_t victim = endpoint;
  {
    std::lock_guard<std::mutex> lock(quota_mu_);
    Usage& u = usage_[endpoint];
    if (size_t(u.total) >= quota) {
      // the endpoint's own quota: only its own evictable entries may make room
      quota_full = true;
      sweep = worth_sweeping(u.evictable, quota);
    } else if (size() >= max) {
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
  // max_entries bounds both tables together (each alone refuses past it too,
  // so threads racing past this check overshoot by at most one entry each)
  int r = size() >= max ? -1 : t.addr_len == 4 ? map4_.insert(k4, e) : map6_.insert(k6, e);
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
  size_t n = erase_if([endpoint](const auto&, const Entry& e) { return e.endpoint == endpoint && evictable(e); });
  std::lock_guard<std::mutex> lock(quota_mu_);
  Usage& u = usage_[endpoint];
  u.total -= int64_t(n);
  u.evictable -= int64_t(n);
  return n;
}

size_t Conntrack::gc(uint32_t now_s) {
  std::unordered_map<uint32_t, Usage> gone;
  size_t n = erase_if([&](const auto&, const Entry& e) {
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
  // Counts are adjusted after the shard work, so a count may briefly run
  // below zero (a sweep removed an entry whose create has not added it yet):
  // only an exact zero is dropped, else the late +1 would recreate a count
  // with no entry behind it and use up a unit of the endpoint's quota for good.
  for (auto it = usage_.begin(); it != usage_.end();)
    it = it->second.total == 0 && it->second.evictable == 0 ? usage_.erase(it) : std::next(it);
  return n;
}

size_t Conntrack::endpoint_entries(uint32_t endpoint) {
  std::lock_guard<std::mutex> lock(quota_mu_);
  auto it = usage_.find(endpoint);
  return it == usage_.end() ? 0 : size_t(it->second.total);
}

void Conntrack::clear() {
  map4_.clear();
  map6_.clear();
  std::lock_guard<std::mutex> lock(quota_mu_);
  usage_.clear();
}

}  // namespace wm
