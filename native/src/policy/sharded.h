// A FlatMap split into shards, each under its own mutex: the service NAT
// table is written by the TX and RX threads and swept by the control thread,
// and sharding keeps them from meeting. (Policy conntrack, read on every
// packet, uses seqmap.h: lock-free reads.)
//
// One hash per key (H, FlatMap's hasher; every shard's must hash alike): H
// indexes a shard's table with some of its bits, the shard is picked by the
// bits from kShardShift up, which must be other ones (BytesHash indexes by
// the low bits: bits 40..45; a multiply-shift hasher by the high bits).
// The count and limit: bound.h.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>

#include "bound.h"
#include "flatmap.h"

namespace wm {

template <typename K, typename V, int kShards = 64, typename H = BytesHash, int kShardShift = 40>
class ShardedMap : public TableBound {
 public:
  explicit ShardedMap(size_t max_entries) : TableBound(max_entries) {}

  // Runs f(V* or null) under the key's shard lock and returns its result.
  template <typename F>
  auto with(const K& k, F f) {
    uint64_t h = hash(k);
    Shard& sh = shard_for(h);
    std::lock_guard<std::mutex> lock(sh.mu);
    return f(sh.map.find(k, h));
  }

  // Inserts or replaces; false when the table is full (and k is new).
  bool put(const K& k, const V& v) {
    if (full()) return false;
    uint64_t h = hash(k);
    Shard& sh = shard_for(h);
    std::lock_guard<std::mutex> lock(sh.mu);
    size_t before = sh.map.size();
    sh.map.put(k, v, h);
    if (sh.map.size() > before) size_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // Inserts k only if it is absent: 1 inserted, 0 present (left alone), -1 full.
  int insert(const K& k, const V& v) {
    if (full()) return -1;
    uint64_t h = hash(k);
    Shard& sh = shard_for(h);
    std::lock_guard<std::mutex> lock(sh.mu);
    if (sh.map.find(k, h)) return 0;
    sh.map.put(k, v, h);
    size_.fetch_add(1, std::memory_order_relaxed);
    return 1;
  }

  bool erase(const K& k) {
    uint64_t h = hash(k);
    Shard& sh = shard_for(h);
    std::lock_guard<std::mutex> lock(sh.mu);
    if (!sh.map.erase(k)) return false;
    size_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }

  // pred(key, value&) under each shard's lock in turn; true removes the entry.
  template <typename F>
  size_t erase_if(F pred) {
    size_t removed = 0;
    for (Shard& sh : shards_) {
      std::lock_guard<std::mutex> lock(sh.mu);
      removed += sh.map.erase_if(pred);
    }
    size_.fetch_sub(removed, std::memory_order_relaxed);
    return removed;
  }

  void clear() {
    for (Shard& sh : shards_) {
      std::lock_guard<std::mutex> lock(sh.mu);
      size_.fetch_sub(sh.map.size(), std::memory_order_relaxed);
      sh.map.clear();
    }
  }

 private:
  struct Shard {
    std::mutex mu;
    FlatMap<K, V, H> map{64};
  };
  Shard& shard_for(uint64_t h) { return shards_[(h >> kShardShift) % kShards]; }
  uint64_t hash(const K& k) const { return hasher_.hash(k); }

  Shard shards_[kShards];
  H hasher_;
};

}  // namespace wm
