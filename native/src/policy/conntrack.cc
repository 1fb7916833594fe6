#include "conntrack.h"

#include <cstring>

namespace wm {

const char* const Conntrack::kCounterNames[kCounterCount] = {
    "conntrack_evicted",          // unreplied or closing entries removed to make room
    "conntrack_eviction_sweeps",  // times the table or an endpoint's quota was full and a sweep made room
    "conntrack_quota_full",       // new flows without an entry: their endpoint's quota was full of replied flows
    "conntrack_table_full",       // new flows without an entry: the table was full
    "conntrack_source_full",      // new inbound flows without an entry: their source's quota was full of answered flows
    "conntrack_inbound_full",     // new inbound flows without an entry: flows others started held half the table
    "conntrack_destination_full", // new inbound flows without an entry: their destination held its bound (a quarter of the table)
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
  uint16_t q = query_tag(t, a_is_src);
  k.query[0] = uint8_t(q);
  k.query[1] = uint8_t(q >> 8);
  *src_is_a = a_is_src;
  return k;
}

uint64_t Conntrack::account(const Key6& k, const Entry& e) {
  if (k.scope == kCtEgress) return e.endpoint;
  // an IPv6 source is its /64 (one host commonly holds a whole /64)
  return kSource6 | uint32_t(hash_bytes(e.orig_is_a ? k.a : k.b, 8, flatmap_seed()));
}

uint32_t Conntrack::timeout(const Entry& e) {
  if (e.closing) return kClosingTimeout;
  if (!e.replied || e.embryonic) return kUnrepliedTimeout;
  return e.tcp ? kTcpTimeout : kOtherTimeout;
}

template <typename M, typename K>
CtResult Conntrack::lookup_in(M& map, K k, CtScope scope, bool src_is_a, uint8_t tcp_flags, uint32_t now_s) {
  bool closing = (tcp_flags & kClosingFlags) != 0, syn = (tcp_flags & kSyn) != 0;
  for (int pass = 0; pass < 2; pass++) {
    // pass 0: our scope, same orientation; pass 1: the other scope, reversed (a reply)
    bool want_orig_a = pass == 0 ? src_is_a : !src_is_a;
    // Lock-free first: most packets of a flow leave its entry as it is.
    uint32_t last_s = 0;
    bool same_state = false, proxied = false;
    bool found = map.read(k, [&](const Entry* e) {
      if (!e || bool(e->orig_is_a) != want_orig_a) return false;
      last_s = e->last_s;
      // an originator's non-SYN packet ends an embryonic entry; a first reply starts one (TCP)
      same_state = (!closing || e->closing) && (pass == 0 ? !(e->embryonic && !syn) : e->replied);
      proxied = e->proxied;
      return true;
    });
    if (found && last_s == now_s && same_state) return verdict(pass, proxied);
    int delta = 0;  // change in the entry's "evictable" state (unreplied, embryonic or closing)
    uint64_t acct = 0;
    uint32_t dest = 0;
    bool hit = found && map.with(k, [&](Entry* e) {
      if (!e || bool(e->orig_is_a) != want_orig_a) return false;  // gone (or replaced) since the read
      bool was = evictable(*e);
      e->last_s = now_s;
      if (closing) e->closing = 1;
      if (pass == 1 && !e->replied) {
        e->replied = 1;
        e->embryonic = e->tcp;
      }
      if (pass == 0 && !syn) e->embryonic = 0;
      delta = int(evictable(*e)) - int(was);
      acct = account(k, *e);
      dest = e->endpoint;
      proxied = e->proxied;
      return true;
    });
    if (delta) {
      std::lock_guard<std::mutex> lock(quota_mu_);
      charge_locked(acct, dest, 0, delta);
    }
    if (hit) return verdict(pass, proxied);
    k.scope = scope == kCtEgress ? kCtIngress : kCtEgress;
  }
  return kCtMiss;
}

CtResult Conntrack::lookup_slow(CtScope scope, const FlowTuple& t, uint32_t now_s) {
  bool src_is_a;
  if (t.addr_len == 4) {
    Key4 k = make_key4(scope, t, &src_is_a);  // (sets src_is_a: not in the call's arguments)
    return lookup_in(map4_, k, scope, src_is_a, t.tcp_flags, now_s);
  }
  Key6 k = make_key6(scope, t, &src_is_a);
  return lookup_in(map6_, k, scope, src_is_a, t.tcp_flags, now_s);
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
          uint8_t(t.proto == 6), 0, 0, uint8_t(proxied)};  // replied, embryonic, proxied
  uint64_t acct = t.addr_len == 4 ? account(k4, e) : account(k6, e);
  size_t quota = per_endpoint_.load(std::memory_order_relaxed);
  size_t max = map4_.max_entries();
  // A sweep for one bound may leave another met (a source's own entries swept
  // elsewhere leave its destination at its bound): admission is asked again
  // after each sweep, and a flow gets at most kMaxSweeps of them.
  for (int sweeps = 0;; sweeps++) {
    Sweep sweep;
    int bound;
    {
      std::lock_guard<std::mutex> lock(quota_mu_);
      bound = admit_locked(acct, endpoint, quota, max, &sweep);
    }
    if (bound < 0 || (bound == kTableFull && sweep.kind == Sweep::kNone)) break;  // (a full table: counted below)
    if (sweep.kind == Sweep::kNone || sweeps == kMaxSweeps) {
      count(bound);
      return bound == kQuotaFull ? kCtQuotaFull : bound == kTableFull ? kCtTableFull : kCtSourceFull;
    }
    count(kEvictionSweeps);
    count(kEvicted, sweep.kind == Sweep::kAccount ? sweep_evictable(sweep.victim) : sweep_destination(uint32_t(sweep.victim)));
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
  charge_locked(acct, endpoint, 1, 1);  // new entries are unreplied
  return kCtCreated;
}

int Conntrack::admit_locked(uint64_t acct, uint32_t dest, size_t quota, size_t max, Sweep* sweep) {
  Usage& u = usage_locked(acct);
  bool source = is_source(acct);
  if (size_t(u.total) >= quota) {
    // the account's own quota: only its own evictable entries may make room
    if (worth_sweeping(u.evictable, quota)) *sweep = Sweep{Sweep::kAccount, acct};
    return source ? kSourceFull : kQuotaFull;
  }
  if (source) {
    int b = admit_inbound_locked(dest, quota, max, sweep);
    if (b >= 0) return b;
  }
  if (size() < max) return -1;
  // the table: the local endpoint with most evictable entries pays (the
  // flooder), or the sources together if they hold more
  int64_t most = inbound_.evictable;
  uint64_t victim = kAllSources;
  for (auto& [id, v] : usage_)
    if (v.evictable > most) {
      most = v.evictable;
      victim = id;
    }
  if (worth_sweeping(most, quota < max ? quota : max)) *sweep = Sweep{Sweep::kAccount, victim};
  return kTableFull;
}

int Conntrack::admit_inbound_locked(uint32_t dest, size_t quota, size_t max, Sweep* sweep) {
  size_t half = max / 2, cap = max / 4 > 0 ? max / 4 : 1;
  // The full half: every source's evictable entries go first, as on main
  // (O(1) to decide), before the destination's cap is asked: probes spread
  // over many pods (each holding little) must not refuse a flow into a pod
  // holding nothing.
  if (size_t(inbound_.total) >= half && worth_sweeping(inbound_.evictable, quota < half ? quota : half)) {
    *sweep = Sweep{Sweep::kAccount, kAllSources};
    return kInboundFull;
  }
  Usage& d = dests_[dest];
  if (d.total >= 0 && size_t(d.total) >= cap) {
    // only the destination's own evictable entries may make room (a sweep
    // frees at least 1/16 of the cap: amortised, never one per packet)
    if (worth_sweeping(d.evictable, cap)) *sweep = Sweep{Sweep::kDestination, dest};
    return kDestinationFull;
  }
  // the half full of answered flows: refused (answered flows are never
  // displaced; docs/security.md, known gaps)
  return size_t(inbound_.total) >= half ? kInboundFull : -1;
}

void Conntrack::add_dest_locked(uint32_t dest, int64_t total, int64_t evictable) {
  Usage& d = dests_[dest];
  d.total += total;
  d.evictable += evictable;
}

void Conntrack::adjust_locked(uint64_t acct, int64_t total, int64_t evictable) {
  Usage& u = usage_locked(acct);
  u.total += total;
  u.evictable += evictable;
  if (!is_source(acct)) return;
  inbound_.total += total;
  inbound_.evictable += evictable;
}

template <typename F>
size_t Conntrack::remove_where(F pred) {
  std::unordered_map<uint64_t, Usage> gone, gone_dest;
  auto each = [&](const auto& k, const Entry& e) {
    if (!pred(k, e)) return false;
    uint64_t a = account(k, e);
    for (Usage* g : {&gone[a], is_source(a) ? &gone_dest[e.endpoint] : nullptr}) {
      if (!g) continue;
      g->total++;
      if (evictable(e)) g->evictable++;
    }
    return true;
  };
  size_t n = map4_.erase_if(each) + map6_.erase_if(each);
  std::lock_guard<std::mutex> lock(quota_mu_);
  for (auto& [acct, g] : gone) adjust_locked(acct, -g.total, -g.evictable);
  for (auto& [dest, g] : gone_dest) add_dest_locked(uint32_t(dest), -g.total, -g.evictable);
  return n;
}

size_t Conntrack::sweep_evictable(uint64_t victim) {
  return remove_where([victim](const auto& k, const Entry& e) {
    if (!evictable(e)) return false;
    uint64_t a = account(k, e);
    return victim == kAllSources ? is_source(a) : a == victim;
  });
}

size_t Conntrack::sweep_destination(uint32_t dest) {
  return remove_where([dest](const auto& k, const Entry& e) { return k.scope == kCtIngress && e.endpoint == dest && evictable(e); });
}

size_t Conntrack::gc(uint32_t now_s) {
  size_t n = remove_where([now_s](const auto&, const Entry& e) { return now_s - e.last_s > timeout(e); });
  // Counts are adjusted after the shard work, so a count may briefly run
  // below zero (a sweep removed an entry whose create has not added it yet):
  // only an exact zero is dropped, else the late +1 would recreate a count
  // with no entry behind it and use up a unit of the account's quota for good.
  std::lock_guard<std::mutex> lock(quota_mu_);
  auto prune = [](auto& m) {
    for (auto it = m.begin(); it != m.end();)
      it = it->second.total == 0 && it->second.evictable == 0 ? m.erase(it) : std::next(it);
  };
  prune(usage_);
  prune(sources_);
  prune(dests_);
  return n;
}

size_t Conntrack::endpoint_entries(uint32_t endpoint) {
  std::lock_guard<std::mutex> lock(quota_mu_);
  auto it = usage_.find(endpoint);
  return it == usage_.end() ? 0 : size_t(it->second.total);
}

Conntrack::Accounting Conntrack::accounting(uint32_t destination) {
  std::lock_guard<std::mutex> lock(quota_mu_);
  Accounting a{inbound_.total, inbound_.evictable, 0, 0};
  auto it = dests_.find(destination);
  if (it != dests_.end()) a.destination = size_t(it->second.total);
  for (auto* m : {&usage_, &dests_})
    for (auto& [id, v] : *m) a.accounts += v.total != 0 || v.evictable != 0;
  for (auto& [id, v] : sources_) a.accounts += v.total != 0 || v.evictable != 0;
  return a;
}

void Conntrack::clear() {
  map4_.clear();
  map6_.clear();
  std::lock_guard<std::mutex> lock(quota_mu_);
  usage_.clear();
  sources_.clear();
  dests_.clear();
  inbound_ = Usage{};
}

}  // namespace wm
