#include "flatmap.h"

#include <sys/random.h>

#include <atomic>

namespace wm {

uint64_t flatmap_seed() {
  static const uint64_t seed = [] {
    uint64_t s = 0x5EED5EED5EED5EEDull;
    if (getrandom(&s, sizeof s, 0) != sizeof s) s ^= uint64_t(reinterpret_cast<uintptr_t>(&s));
    return s;
  }();
  return seed;
}

MulShiftHash::MulShiftHash() {
  // every table its own seeds, straight from the kernel (a table is made per policy map or prefix length, never
  // per packet): a collision aimed at one says nothing about another. Derived from the process seed by hash_bytes,
  // which can be inverted, one table's seeds would give the process seed and so every table's, conntrack's too
  // (review s23hash); that derivation is only the fallback where getrandom fails.
  uint64_t r[2];
  if (getrandom(r, sizeof r, 0) == sizeof r) {
    a = r[0] | 1;
    b = r[1];
    return;
  }
  static std::atomic<uint64_t> tables{0};
  uint64_t s = flatmap_seed() + tables.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ull;
  a = hash_bytes(&s, sizeof s, 1) | 1;
  b = hash_bytes(&s, sizeof s, 2);
}

}  // namespace wm
