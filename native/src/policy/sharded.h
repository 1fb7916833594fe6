// A FlatMap split into shards, each under its own mutex: the connection
// tables (policy conntrack, service NAT) are written by the TX and RX threads
// and swept by the control thread, and sharding keeps them from meeting.
//
// One hash per key (H, FlatMap's hasher; every shard's must hash alike): H
// indexes a shard's table with some of its bits, the shard is picked by the
// bits from kShardShift up, which must be other ones (BytesHash indexes by
// the low bits: bits 40..45; a multiply-shift hasher by the high bits).
// The size is kept in an atomic so a full table can refuse new
// entries without taking every lock.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>

#include "flatmap.h"

namespace wm {

template <typename K, typename V, int kShards = 64, typename H = BytesHash, int kShardShift = 40>
class ShardedMap {
 public:
  explicit ShardedMap(size_t max_entries) : max_entries_(max_entries) {}

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
    if (size_.load(std::memory_order_relaxed) >= max_entries_.load(std::memory_order_relaxed)) return false;
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
    if (size_.load(std::memory_order_relaxed) >= max_entries_.load(std::memory_order_relaxed)) return -1;
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

  size_t size() const { return size_.load(std::memory_order_relaxed); }
  size_t max_entries() const { return max_entries_.load(std::memory_order_relaxed); }
  void set_max_entries(size_t n) { max_entries_.store(n, std::memory_order_relaxed); }

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
  std::atomic<size_t> size_{0};
  std::atomic<size_t> max_entries_;
  H hasher_;
};

}  // namespace wm
