// SeqShardedMap (policy/seqmap.h) under ThreadSanitizer: lock-free readers
// against a writer that inserts, rewrites values in place (with()), erases
// (backward shift), grows and clears. TSan reports any plain store that races
// with the readers' atomic loads (the writer's plain slot stores were such a
// data race); the readers also check that every copy they keep is whole: a
// value's three words are equal and its key is the one asked for.
// Built and run by run.sh (clang-14 -fsanitize=thread); exit status 1 on a
// torn copy, 66 (TSan's) on a race.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "policy/seqmap.h"

namespace {

struct Val {
  uint64_t a, b, c;
};
struct Hash {
  uint64_t hash(const uint64_t& k) const { return (k + 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull; }
};
using Map = wm::SeqShardedMap<uint64_t, Val, 4, Hash, 32>;

constexpr uint64_t kKeys = 4096;

}  // namespace

int main() {
  Map map(1 << 20);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> torn{0}, hits{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; r++)
    readers.emplace_back([&, r] {
      uint64_t k = uint64_t(r) * 7919;
      while (!stop.load(std::memory_order_relaxed)) {
        k = (k * 6364136223846793005ull + 1442695040888963407ull);
        uint64_t key = (k >> 33) % kKeys;
        map.read(key, [&](const Val* v) {
          if (!v) return;
          hits.fetch_add(1, std::memory_order_relaxed);
          if (v->a != v->b || v->b != v->c || v->a % kKeys != key) torn.fetch_add(1, std::memory_order_relaxed);
        });
      }
    });
  for (uint64_t round = 0; round < 200; round++) {
    for (uint64_t k = 0; k < kKeys; k++) map.insert(k, Val{k, k, k});  // grows on the first rounds
    for (uint64_t k = 0; k < kKeys; k += 3)
      map.with(k, [&](Val* v) {
        if (v) *v = Val{v->a + kKeys, v->a + kKeys, v->a + kKeys};
      });
    map.erase_if([&](const uint64_t& k, const Val&) { return (k + round) % 5 == 0; });
    if (round % 10 == 9) map.clear();
  }
  stop.store(true);
  for (std::thread& t : readers) t.join();
  std::printf("tsan_seqmap: %llu hits, %llu torn copies kept\n", (unsigned long long)hits.load(), (unsigned long long)torn.load());
  return torn.load() ? 1 : 0;
}
