#include "conntrack.h"

#include <cstring>

namespace wm {

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

CtResult Conntrack::lookup(CtScope scope, const FlowTuple& t, uint32_t now_s) {
  bool src_is_a;
  Key k = make_key(scope, t, &src_is_a);
  bool closing = (t.tcp_flags & (kTcpFin | kTcpRst)) != 0;
  for (int pass = 0; pass < 2; pass++) {
    uint64_t h = hash(k);
    Shard& sh = shard_for(h);
    std::lock_guard<std::mutex> lock(sh.mu);
    Entry* e = sh.map.find(k, h);
    // pass 0: our scope, same orientation; pass 1: the other scope, reversed
    if (e && bool(e->orig_is_a) == (pass == 0 ? src_is_a : !src_is_a)) {
      e->last_s = now_s;
      if (closing) e->closing = 1;
      return pass == 0 ? kCtEstablished : kCtReply;
    }
    k.scope = scope == kCtEgress ? kCtIngress : kCtEgress;
  }
  return kCtMiss;
}

bool Conntrack::create(CtScope scope, const FlowTuple& t, uint32_t now_s, uint32_t rule) {
  if (size_.load(std::memory_order_relaxed) >= max_entries_) return false;
  bool src_is_a;
  Key k = make_key(scope, t, &src_is_a);
  uint64_t h = hash(k);
  Shard& sh = shard_for(h);
  std::lock_guard<std::mutex> lock(sh.mu);
  size_t before = sh.map.size();
  Entry e{now_s, rule, uint8_t(src_is_a), uint8_t((t.tcp_flags & (kTcpFin | kTcpRst)) != 0), uint8_t(t.proto == 6), 0};
  sh.map.put(k, e, h);
  if (sh.map.size() > before) size_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

size_t Conntrack::gc(uint32_t now_s) {
  size_t removed = 0;
  for (Shard& sh : shards_) {
    std::lock_guard<std::mutex> lock(sh.mu);
    removed += sh.map.erase_if([now_s](const Key&, const Entry& e) {
      uint32_t timeout = e.closing ? kClosingTimeout : e.tcp ? kTcpTimeout : kOtherTimeout;
      return now_s - e.last_s > timeout;
    });
  }
  size_.fetch_sub(removed, std::memory_order_relaxed);
  return removed;
}

void Conntrack::clear() {
  for (Shard& sh : shards_) {
    std::lock_guard<std::mutex> lock(sh.mu);
    size_.fetch_sub(sh.map.size(), std::memory_order_relaxed);
    sh.map.clear();
  }
}

}  // namespace wm
