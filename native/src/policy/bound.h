// The entry count and limit of a sharded table (ShardedMap, SeqShardedMap),
// kept in atomics so a full table refuses new entries without taking every
// shard's lock.
#pragma once
#include <atomic>
#include <cstddef>

namespace wm {

class TableBound {
 public:
  explicit TableBound(size_t max_entries) : max_entries_(max_entries) {}
  size_t size() const { return size_.load(std::memory_order_relaxed); }
  size_t max_entries() const { return max_entries_.load(std::memory_order_relaxed); }
  void set_max_entries(size_t n) { max_entries_.store(n, std::memory_order_relaxed); }

 protected:
  bool full() const { return size() >= max_entries(); }
  std::atomic<size_t> size_{0};
  std::atomic<size_t> max_entries_;
};

}  // namespace wm
