// Open-addressing hash table (linear probing, backward-shift deletion) for the
// data path's exact-match tables: ipcache host entries, policy maps keyed by
// identity and connection tracking. Keys are plain structs compared bytewise;
// the hash is keyed with a per-process random seed so remote senders cannot
// aim collisions at one bucket.
//
// Not thread-safe: owners lock (conntrack shards) or build once and publish
// immutably (policy maps).
#pragma once
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

namespace wm {

uint64_t flatmap_seed();

// Large tables (an ipcache or conntrack of a million entries) are probed at
// random: backing them with transparent huge pages saves a TLB miss on most
// lookups. Small tables come from the heap.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kHuge = 2u << 20;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) {
    size_t bytes = n * sizeof(T);
    if (bytes < kHuge) return static_cast<T*>(::operator new(bytes, std::align_val_t(alignof(T))));
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, bytes, MADV_HUGEPAGE);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    size_t bytes = n * sizeof(T);
    if (bytes < kHuge)
      ::operator delete(p, std::align_val_t(alignof(T)));
    else
      munmap(p, bytes);
  }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const { return false; }
};

inline uint64_t hash_bytes(const void* data, size_t n, uint64_t seed) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ull);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h ^= w * 0xC2B2AE3D27D4EB4Full;
    h = ((h << 31) | (h >> 33)) * 0x9E3779B97F4A7C15ull;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h ^= w * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h;
}

// The default hasher: the seeded byte hash, whose low bits index the table
// (ShardedMap shards by the same hash and passes it in: find(k, h)).
struct BytesHash {
  uint64_t seed = flatmap_seed();
  template <typename K>
  uint64_t hash(const K& k) const { return hash_bytes(&k, sizeof k, seed); }
  size_t index(uint64_t h, size_t mask, int) const { return size_t(h) & mask; }
};

// For native-width keys on the hot lookups (ipcache, policy map identities):
// seeded multiply-shift (Dietzfelbinger) whose high bits index the table. Each
// table draws its own seeds. Keys: uint32_t, or a type with a
// probe_hash(key, a, b) overload found by ADL.
//
// uint32_t keys are mixed first (xor the seed, multiply by an odd constant,
// fold the high half into the low): a*k + b alone maps structured key sets
// (pods' consecutive addresses, /24 grids, addresses or identities strided by
// 2^8 or 2^16, a cluster id in the high bits) onto arithmetic progressions,
// and for some seeds linear probing then piles them into long runs: 5-10% of
// tables read over 2x the expected slots per hit, the worst 13-3400 (random
// keys: 1.5 at 1/2 full). The fold makes the map from key to product
// nonlinear, so such sets probe as random ones do (native/src/testhooks/
// flatmap_probe_wrap.cc, test/unit/native-flatmap-probe.test.ts). Cost: one
// more multiply, a shift and two xors per lookup, beside a cache miss.
inline uint64_t probe_hash(uint32_t k, uint64_t a, uint64_t b) {
  uint64_t x = (k ^ b) * 0x9E3779B97F4A7C15ull;
  return a * (x ^ (x >> 32)) + b;
}
struct MulShiftHash {
  uint64_t a, b;
  MulShiftHash();
  template <typename K>
  uint64_t hash(const K& k) const { return probe_hash(k, a, b); }
  size_t index(uint64_t h, size_t, int shift) const { return size_t(h >> shift); }
};

// How a slot says it is free. UsedFlag (the default): a bool beside the value. FreeValue<V, x>: the value x,
// which no entry may hold (the caller never puts it): a 4-byte key and value make an 8-byte slot, where the flag
// would pad it to 12 (the ipcache's, ipcache.h: 16 bytes before, an 8-byte value and the flag).
struct UsedFlag {};
template <typename V, V kFree>
struct FreeValue {};

template <typename K, typename V, typename Free>
struct FlatSlot {
  K key{};
  V value{};
  bool used = false;
  bool is_used() const { return used; }
  void set(const K& k, const V& v) { key = k, value = v, used = true; }
  void free() { used = false; }
};
template <typename K, typename V, V kFree>
struct FlatSlot<K, V, FreeValue<V, kFree>> {
  K key{};
  V value = kFree;
  bool is_used() const { return value != kFree; }
  void set(const K& k, const V& v) { key = k, value = v; }
  void free() { value = kFree; }
};

// kMaxLoad8: the most entries a table holds, in eighths of its slots, before it
// doubles; after doubling it is half that full. 4 (a half) by default: short
// probe runs for tables that miss often (conntrack) or are small. The ipcache's
// tables hold 6 (see ipcache.h).
template <typename K, typename V, typename H = BytesHash, unsigned kMaxLoad8 = 4, typename Free = UsedFlag>
class FlatMap {
  static_assert(std::is_trivially_copyable<K>::value, "keys are compared bytewise");
  static_assert(kMaxLoad8 >= 1 && kMaxLoad8 <= 7, "a table keeps an empty slot: probes end");

 public:
  explicit FlatMap(size_t initial = 16) { rehash(initial < 16 ? 16 : initial); }

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }

  uint64_t hash(const K& k) const { return hasher_.hash(k); }

  V* find(const K& k) { return find(k, hash(k)); }
  // h: hash(k), for callers that already computed it (conntrack shards by it)
  V* find(const K& k, uint64_t h) {
    size_t i = hasher_.index(h, mask_, shift_);
    for (;;) {
      Slot& s = slots_[i];
      if (!s.is_used()) return nullptr;
      if (std::memcmp(&s.key, &k, sizeof(K)) == 0) return &s.value;
      i = (i + 1) & mask_;
    }
  }
  const V* find(const K& k) const { return const_cast<FlatMap*>(this)->find(k); }

  // Inserts or replaces; returns the stored value. With FreeValue<V, x>, v must not be x (the caller's contract).
  V* put(const K& k, const V& v) { return put(k, v, hash(k)); }
  V* put(const K& k, const V& v, uint64_t h) {
    if ((size_ + 1) * 8 > slots_.size() * kMaxLoad8) rehash(slots_.size() * 2);
    size_t i = hasher_.index(h, mask_, shift_);
    for (;;) {
      Slot& s = slots_[i];
      if (!s.is_used()) {
        s.set(k, v);
        size_++;
        return &s.value;
      }
      if (std::memcmp(&s.key, &k, sizeof(K)) == 0) {
        s.value = v;
        return &s.value;
      }
      i = (i + 1) & mask_;
    }
  }

  bool erase(const K& k) {
    size_t i = index(k);
    for (;;) {
      Slot& s = slots_[i];
      if (!s.is_used()) return false;
      if (std::memcmp(&s.key, &k, sizeof(K)) == 0) break;
      i = (i + 1) & mask_;
    }
    erase_slot(i);
    return true;
  }

  // Removes every entry for which pred(key, value) is true; returns how many.
  template <typename F>
  size_t erase_if(F pred) {
    size_t removed = 0;
    for (size_t i = 0; i < slots_.size();) {
      Slot& s = slots_[i];
      if (s.is_used() && pred(s.key, s.value)) {
        erase_slot(i);  // an entry may shift into slot i: look at it again
        removed++;
        continue;
      }
      i++;
    }
    return removed;
  }

  template <typename F>
  void for_each(F f) const {
    for (const Slot& s : slots_)
      if (s.is_used()) f(s.key, s.value);
  }

  void clear() {
    slots_.assign(16, Slot());
    mask_ = 15;
    shift_ = 60;
    size_ = 0;
  }

  void reserve(size_t n) {
    size_t want = 16;
    while (want * kMaxLoad8 < n * 8) want *= 2;
    if (want > slots_.size()) rehash(want);
  }

 private:
  using Packed = FlatSlot<K, V, Free>;
  // A slot of 33..63 bytes is padded to a cache line
  // so a probe never straddles two: one miss per probe at a million flows.
  // (8-, 16- and 32-byte slots are aligned to their size for the same reason;
  // others, e.g. the ipcache's 24-byte IPv6 slots, to their members' alignment)
  static constexpr size_t kSlotAlign = sizeof(Packed) > 32 && sizeof(Packed) < 64 ? 64
                                       : sizeof(Packed) == 8 || sizeof(Packed) == 16 || sizeof(Packed) == 32 ? sizeof(Packed)
                                                                                                            : alignof(Packed);
  struct alignas(kSlotAlign) Slot : Packed {};

  size_t index(const K& k) const { return hasher_.index(hash(k), mask_, shift_); }

  void erase_slot(size_t i) {
    // Backward shift: pull later entries of the probe run into the hole so
    // lookups never need tombstones.
    size_t hole = i;
    size_t j = i;
    for (;;) {
      j = (j + 1) & mask_;
      Slot& s = slots_[j];
      if (!s.is_used()) break;
      size_t home = index(s.key);
      // s may move to the hole if its home is not cyclically in (hole, j]
      bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
      if (movable) {
        slots_[hole] = s;
        hole = j;
      }
    }
    slots_[hole].free();
    size_--;
  }

  void rehash(size_t n) {
    // the new slots first: if they cannot be had (bad_alloc), the table is as it was
    std::vector<Slot, HugePageAllocator<Slot>> old(n, Slot());
    old.swap(slots_);
    mask_ = n - 1;
    shift_ = 64;
    for (size_t m = n; m > 1; m >>= 1) shift_--;
    size_ = 0;
    for (const Slot& s : old)
      if (s.is_used()) put(s.key, s.value);
  }

  std::vector<Slot, HugePageAllocator<Slot>> slots_;
  size_t mask_ = 0;
  int shift_ = 64;  // 64 - log2(slots): MulShiftHash's index is the hash's high bits
  size_t size_ = 0;
  H hasher_;
};

}  // namespace wm
