// A sharded open-addressing hash table (linear probing, backward-shift
// deletion) whose reads take no lock: conntrack's tables, read by the TX and
// RX threads on every packet, written when a flow starts, changes state or
// once a second of its life, swept by the control thread.
//
// Why: a mutex per lookup is two locked instructions, and on x86 a locked
// instruction waits for every earlier load. At a million flows each lookup
// misses the cache (one DRAM access, ~300 ns on the reference machine), so
// the shard mutex serialized the misses of consecutive lookups; without it
// the CPU overlaps them.
//
// Locking rule: every write (insert, in-place update through with(), erase,
// growth, clear) holds the shard's mutex and makes the shard's sequence
// number odd for its duration (a seqlock). read() takes no lock: it notes the
// sequence number, copies the slots it probes with relaxed atomic loads, and
// keeps the copy only if the number is even and unchanged afterwards; after a
// few failed tries it reads under the mutex. A reader never dereferences
// freed memory: a table that growth replaces stays mapped until the map is
// destroyed (its slot pages are returned to the kernel with MADV_DONTNEED and
// read as zeros, i.e. empty), and a table's size and slot pointer live in its
// header, which is never released, so a probe stays inside the table it
// started in, and stops after at most one pass over it. Writers store every
// slot word a reader may be probing with a relaxed atomic store (store_slot),
// readers load them with relaxed atomic loads: no data race under the C++
// memory model (plain stores against atomic loads were one), and on x86-64 and
// AArch64 a relaxed store is the plain store it replaces; a torn copy is
// discarded by the sequence check. with() hands f a copy of the value and
// stores it back the same way.
//
// One hash per key (H::hash, every shard's alike): bits kShardShift.. pick the
// shard, the high bits index the shard's table (as FlatMap's multiply-shift
// tables), so for up to 2^(64 - kShardShift - log2 kShards) slots per shard
// they are disjoint bits.
#pragma once
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>

#include "bound.h"

namespace wm {

template <typename K, typename V, int kShards, typename H, int kShardShift>
class SeqShardedMap : public TableBound {
  static_assert(std::is_trivially_copyable<K>::value && std::is_trivially_copyable<V>::value, "slots are copied bytewise");

  struct Raw {
    K key;
    V value;
    uint8_t used;
  };
  // 32 or 64 bytes, aligned to its size: a probe reads one cache line
  static constexpr size_t kSlot = sizeof(Raw) <= 32 ? 32 : 64;
  static_assert(sizeof(Raw) <= 64, "a slot is at most a cache line");
  struct alignas(kSlot) Slot {
    K key;
    V value;
    uint8_t used;
  };
  static_assert(sizeof(Slot) == kSlot, "slot size");
  // Immutable after publication; lives past the end of its slots and is never released before the map.
  struct Table {
    Slot* slots;
    size_t mask;  // slots - 1 (a power of two)
    int shift;    // 64 - log2(slots)
    size_t bytes;
  };

 public:
  explicit SeqShardedMap(size_t max_entries) : TableBound(max_entries) {
    for (Shard& sh : shards_) sh.cur.store(new_table(64), std::memory_order_relaxed);
  }
  ~SeqShardedMap() {
    for (Shard& sh : shards_) {
      for (Table* t : sh.retired) free_table(t);
      free_table(sh.cur.load(std::memory_order_relaxed));
    }
  }
  SeqShardedMap(const SeqShardedMap&) = delete;
  SeqShardedMap& operator=(const SeqShardedMap&) = delete;

  // f(const V* copy or null), without a lock (see above); returns f's result.
  // f runs once, on a consistent copy; it must not write to the map.
  template <typename F>
  __attribute__((always_inline)) auto read(const K& k, F f) {
    uint64_t h;
    Shard& sh = locate(k, &h);
    Slot copy;
    uint64_t s1 = sh.seq.load(std::memory_order_acquire);
    bool found = probe(sh.cur.load(std::memory_order_acquire), k, h, &copy);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (__builtin_expect(!(s1 & 1) && sh.seq.load(std::memory_order_relaxed) == s1, 1))
      return f(found ? &copy.value : static_cast<const V*>(nullptr));
    found = read_contended(sh, k, h, &copy);
    return f(found ? &copy.value : static_cast<const V*>(nullptr));
  }

  // f(V* or null) under the key's shard lock, as a write (f may change the
  // value: it gets a copy, stored back into the slot with atomic stores; the
  // pointer is valid only during f).
  template <typename F>
  auto with(const K& k, F f) {
    uint64_t h;
    Shard& sh = locate(k, &h);
    std::lock_guard<std::mutex> lock(sh.mu);
    Writing w(sh);
    Table* t = sh.cur.load(std::memory_order_relaxed);
    size_t i = find(t, k, h);
    if (i == kNone) return f(static_cast<V*>(nullptr));
    Slot copy = t->slots[i];  // under the mutex: no other writer
    struct StoreBack {
      Slot* dst;
      const Slot& src;
      ~StoreBack() { store_slot(dst, src); }
    } back{&t->slots[i], copy};
    return f(&copy.value);
  }

  // Inserts k only if it is absent: 1 inserted, 0 present (left alone), -1 full.
  int insert(const K& k, const V& v) {
    if (full()) return -1;
    uint64_t h;
    Shard& sh = locate(k, &h);
    std::lock_guard<std::mutex> lock(sh.mu);
    Table* t = sh.cur.load(std::memory_order_relaxed);
    if (find(t, k, h) != kNone) return 0;
    Writing w(sh);
    if ((sh.size + 1) * 2 > t->mask + 1) {
      // out of memory: the table is full for this flow, the packet thread goes on
      try {
        t = grow(sh);
      } catch (const std::bad_alloc&) {
        return -1;
      }
    }
    place(t, k, v, h);
    sh.size++;
    size_.fetch_add(1, std::memory_order_relaxed);
    return 1;
  }

  // pred(key, value) under each shard's lock in turn; true removes the entry.
  // Readers of a shard retry only while an entry is actually being removed.
  template <typename F>
  size_t erase_if(F pred) {
    size_t removed = 0;
    for (Shard& sh : shards_) {
      std::lock_guard<std::mutex> lock(sh.mu);
      Table* t = sh.cur.load(std::memory_order_relaxed);
      for (size_t i = 0; i <= t->mask;) {
        const Slot& s = t->slots[i];  // pred reads only: a slot is written through store_slot
        if (s.used && pred(s.key, s.value)) {
          Writing w(sh);
          erase_slot(t, i);  // an entry may shift into slot i: look at it again
          sh.size--;
          removed++;
          continue;
        }
        i++;
      }
    }
    size_.fetch_sub(removed, std::memory_order_relaxed);
    return removed;
  }


  // Empties every shard; tables keep their size (their pages go back to the kernel).
  void clear() {
    for (Shard& sh : shards_) {
      std::lock_guard<std::mutex> lock(sh.mu);
      Writing w(sh);
      zero_slots(sh.cur.load(std::memory_order_relaxed));
      size_.fetch_sub(sh.size, std::memory_order_relaxed);
      sh.size = 0;
    }
  }

 private:
  static constexpr size_t kNone = ~size_t(0);
  struct alignas(64) Shard {
    std::mutex mu;
    std::atomic<uint64_t> seq{0};  // odd while a write is under way
    std::atomic<Table*> cur{nullptr};
    size_t size = 0;               // under mu
    std::vector<Table*> retired;   // under mu: replaced by growth, mapped until the map goes
  };
  // The seqlock's write side (the caller holds the shard's mutex).
  struct Writing {
    Shard& sh;
    explicit Writing(Shard& s) : sh(s) {
      sh.seq.store(sh.seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_release);
    }
    ~Writing() { sh.seq.store(sh.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release); }
  };

  // The key's hash (*h) and shard.
  Shard& locate(const K& k, uint64_t* h) {
    *h = hasher_.hash(k);
    return shards_[(*h >> kShardShift) % kShards];
  }
  static size_t home(const Table* t, uint64_t h) { return size_t(h >> t->shift) & t->mask; }
  static bool same(const K& a, const K& b) { return std::memcmp(&a, &b, sizeof(K)) == 0; }

  // The lock-free probe: every word read with a relaxed atomic load (a writer
  // may be changing them; the sequence check discards what it sees then).
  __attribute__((always_inline)) static bool probe(const Table* t, const K& k, uint64_t h, Slot* out) {
    Slot* slots = __atomic_load_n(&t->slots, __ATOMIC_RELAXED);
    size_t mask = __atomic_load_n(&t->mask, __ATOMIC_RELAXED);
    int shift = __atomic_load_n(&t->shift, __ATOMIC_RELAXED);
    size_t i = size_t(h >> shift) & mask;
    for (size_t n = 0; n <= mask; n++) {
      const uint64_t* src = reinterpret_cast<const uint64_t*>(&slots[i]);
      uint64_t w[sizeof(Slot) / 8];
#pragma GCC unroll 8
      for (size_t j = 0; j < sizeof(Slot) / 8; j++) w[j] = __atomic_load_n(src + j, __ATOMIC_RELAXED);
      std::memcpy(out, w, sizeof(Slot));
      if (!out->used) return false;
      if (same(out->key, k)) return true;
      i = (i + 1) & mask;
    }
    return false;
  }
  // read() after a writer was seen: a few more tries, then the mutex.
  __attribute__((noinline)) bool read_contended(Shard& sh, const K& k, uint64_t h, Slot* out) {
    for (int attempt = 0; attempt < 4; attempt++) {
      uint64_t s1 = sh.seq.load(std::memory_order_acquire);
      if (s1 & 1) continue;
      bool found = probe(sh.cur.load(std::memory_order_acquire), k, h, out);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (sh.seq.load(std::memory_order_relaxed) == s1) return found;
    }
    std::lock_guard<std::mutex> lock(sh.mu);  // the shard stayed busy: wait for the writer
    return probe(sh.cur.load(std::memory_order_relaxed), k, h, out);
  }

  // Writes a slot word by word with relaxed atomic stores (readers may be
  // probing it, see probe()). Under the shard's mutex, inside Writing.
  static void store_slot(Slot* dst, const Slot& src) {
    uint64_t w[sizeof(Slot) / 8];
    std::memcpy(w, &src, sizeof(Slot));
    uint64_t* d = reinterpret_cast<uint64_t*>(dst);
#pragma GCC unroll 8
    for (size_t j = 0; j < sizeof(Slot) / 8; j++) __atomic_store_n(d + j, w[j], __ATOMIC_RELAXED);
  }
  static void store_empty(Slot* dst) {
    uint64_t* d = reinterpret_cast<uint64_t*>(dst);
#pragma GCC unroll 8
    for (size_t j = 0; j < sizeof(Slot) / 8; j++) __atomic_store_n(d + j, uint64_t(0), __ATOMIC_RELAXED);
  }

  // Under the shard's mutex.
  size_t find(const Table* t, const K& k, uint64_t h) const {
    for (size_t i = home(t, h);; i = (i + 1) & t->mask) {
      const Slot& s = t->slots[i];
      if (!s.used) return kNone;
      if (same(s.key, k)) return i;
    }
  }
  void place(Table* t, const K& k, const V& v, uint64_t h) {
    size_t i = home(t, h);
    while (t->slots[i].used) i = (i + 1) & t->mask;
    Slot s;
    std::memset(&s, 0, sizeof(s));  // padding too: the copy is stored word by word
    s.key = k;
    s.value = v;
    s.used = 1;
    store_slot(&t->slots[i], s);
  }
  void erase_slot(Table* t, size_t i) {
    // Backward shift: later entries of the probe run move into the hole (no tombstones).
    size_t hole = i;
    for (size_t j = (i + 1) & t->mask; t->slots[j].used; j = (j + 1) & t->mask) {
      size_t h = home(t, hasher_.hash(t->slots[j].key));
      bool movable = hole <= j ? (h <= hole || h > j) : (h <= hole && h > j);
      if (movable) {
        store_slot(&t->slots[hole], t->slots[j]);
        hole = j;
      }
    }
    store_empty(&t->slots[hole]);
  }
  // Twice the slots; the old table is retired, not freed (a reader may be in it).
  Table* grow(Shard& sh) {
    Table* old = sh.cur.load(std::memory_order_relaxed);
    sh.retired.reserve(sh.retired.size() + 1);  // may throw: before anything changes
    Table* t = new_table((old->mask + 1) * 2);
    for (size_t i = 0; i <= old->mask; i++)
      if (old->slots[i].used) place(t, old->slots[i].key, old->slots[i].value, hasher_.hash(old->slots[i].key));
    sh.cur.store(t, std::memory_order_release);
    zero_slots(old);
    sh.retired.push_back(old);
    return t;
  }

  // One mapping: the slots (zero = empty), then the header. Large tables
  // start on a 2 MiB boundary so every part of them can be a huge page (the
  // kernel aligns only mappings of whole huge pages, which the header breaks).
  static Table* new_table(size_t n) {
    constexpr size_t kHuge = 2u << 20, kPage = 4096;
    size_t slot_bytes = n * sizeof(Slot);
    size_t bytes = (slot_bytes + sizeof(Table) + kPage - 1) / kPage * kPage;
    bool huge = slot_bytes >= kHuge;
    size_t reserve = huge ? bytes + kHuge : bytes;
    void* p = mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    char* base = static_cast<char*>(p);
    if (huge) {
      char* aligned = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~uintptr_t(kHuge - 1));
      if (aligned > base) munmap(base, size_t(aligned - base));
      if (base + reserve > aligned + bytes) munmap(aligned + bytes, size_t(base + reserve - (aligned + bytes)));
      base = aligned;
      madvise(base, slot_bytes, MADV_HUGEPAGE);
    }
    int shift = 64;
    for (size_t m = n; m > 1; m >>= 1) shift--;
    return new (base + slot_bytes) Table{reinterpret_cast<Slot*>(base), n - 1, shift, bytes};
  }
  static void free_table(Table* t) { munmap(t->slots, t->bytes); }
  // Empties a table: whole pages back to the kernel (they read as zeros), the rest cleared.
  static void zero_slots(Table* t) {
    size_t slot_bytes = (t->mask + 1) * sizeof(Slot), page = 4096, whole = slot_bytes / page * page;
    // madvise fails on locked memory (mlockall): then every byte is cleared by hand
    if (whole && madvise(t->slots, whole, MADV_DONTNEED) != 0) whole = 0;
    for (size_t i = whole / sizeof(Slot); i <= t->mask; i++) store_empty(&t->slots[i]);
  }

  Shard shards_[kShards];
  H hasher_;
};

}  // namespace wm
