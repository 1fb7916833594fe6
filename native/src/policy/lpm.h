// Longest-prefix match by one hash table per prefix length: the index under
// both of the data path's prefix tables, the ipcache (ipcache.h: identities)
// and the allowed IPs (wireguard/allowedips.h: peer ids).
//
// A key is the family's native width (uint32_t for IPv4, Ip6Key for IPv6) and
// a value is 32 bits; kFree (0xFFFFFFFF) marks a free slot and is never a
// value, so an IPv4 slot is 8 bytes (FlatMap's FreeValue). A lookup goes
// through the lengths in use longest first: the first hit is the longest
// match. Each length keeps the least and greatest prefix put into its table
// since the table was last empty (a range that only widens until the table
// empties: never narrower than what it holds), and a lookup probes only the
// lengths whose range holds its address's prefix; the others cost two
// compares. A cheap filter, not a bound: it helps while a length's prefixes
// lie in one stretch of the address space (a pod's address in the mesh costs
// one or two probes; an address outside every range, none; other clusters'
// lookups pay two compares for lengths one cluster adds inside its one pinned
// CIDR), but prefixes of a length at both ends of the space (a cluster pinned
// to several CIDRs, two clusters, a hub's relayed CIDRs, or one put there once
// and erased) stretch its range over everything between, and every lookup
// there probes it again. The bound is one probe per length in use: 33 for
// IPv4, 129 for IPv6 (at 81 IPv6 lengths ~250 ns a lookup without the ranges,
// ~100 ns while they hold them apart; bench:allowedips-lookup,
// docs/benchmarks.md "### s31"). Tables fill to 3/4 before doubling (the cost
// of that in probes: ipcache.h); an emptied length's table is freed and no
// longer looked at.
//
// Not thread-safe: the owner locks (PolicyEngine's shared mutex for the
// ipcache, Device::table_mu_ for the allowed IPs; readers shared, writers
// exclusive: find and lookup only read).
#pragma once
#include <cstdint>
#include <memory>

#include "flatmap.h"

namespace wm {

struct Ip6Key {
  uint64_t hi = 0, lo = 0;  // the address big-endian: hi = bytes 0..7
  bool operator==(const Ip6Key& o) const { return hi == o.hi && lo == o.lo; }
  bool operator<(const Ip6Key& o) const { return hi < o.hi || (hi == o.hi && lo < o.lo); }
};

// The prefix of length len of a key (host bits cleared).
inline uint32_t lpm_mask(uint32_t k, int len) { return len == 0 ? 0 : k & (~0u << (32 - len)); }
inline Ip6Key lpm_mask(Ip6Key k, int len) {
  if (len <= 64) return Ip6Key{len == 0 ? 0 : k.hi & (~0ull << (64 - len)), 0};
  return Ip6Key{k.hi, len == 128 ? k.lo : k.lo & (~0ull << (128 - len))};
}
// IPv6 keys (FlatMap's MulShiftHash): multiply-shift over a seeded mix of both halves.
inline uint64_t probe_hash(Ip6Key k, uint64_t a, uint64_t b) {
  uint64_t x = (k.hi ^ b) * 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 29) ^ k.lo) * 0xBF58476D1CE4E5B9ull;
  return a * (x ^ (x >> 32)) + b;
}

inline uint32_t v4_key(const uint8_t* a) {
  return uint32_t(a[0]) << 24 | uint32_t(a[1]) << 16 | uint32_t(a[2]) << 8 | a[3];
}
inline Ip6Key v6_key(const uint8_t* a) {
  Ip6Key k;
  for (int i = 0; i < 8; i++) k.hi = k.hi << 8 | a[i];
  for (int i = 8; i < 16; i++) k.lo = k.lo << 8 | a[i];
  return k;
}

// Key is uint32_t or Ip6Key; kBits 32 or 128.
template <typename Key, int kBits>
class LpmIndex {
 public:
  static constexpr uint32_t kFree = 0xFFFFFFFFu;
  // One prefix length's table, 3/4 full at most (public for the test hooks' probe-cost check).
  using Table = FlatMap<Key, uint32_t, MulShiftHash, 6, FreeValue<uint32_t, kFree>>;

  LpmIndex() = default;
  LpmIndex(const LpmIndex&) = delete;
  LpmIndex& operator=(const LpmIndex&) = delete;

  // The value held for exactly this prefix, or null. key: any address (masked here); len 0..kBits.
  uint32_t* find(Key key, int len) {
    Table* t = tables_[len].get();
    return t ? t->find(lpm_mask(key, len)) : nullptr;
  }
  const uint32_t* find(Key key, int len) const { return const_cast<LpmIndex*>(this)->find(key, len); }
  // Holds v (never kFree) for the prefix; the caller checked that find() is null.
  void put(Key key, int len, uint32_t v) {
    auto& t = tables_[len];
    if (!t) t.reset(new Table());
    Key k = lpm_mask(key, len);
    t->put(k, v);
    size_++;
    Range& r = ranges_[len];
    if (t->size() == 1) {
      r = Range{k, k};
      relist();
    } else if (k < r.lo) {
      r.lo = k;
    } else if (r.hi < k) {
      r.hi = k;
    }
  }
  // True when the prefix was held.
  bool erase(Key key, int len) {
    auto& t = tables_[len];
    if (!t || !t->erase(lpm_mask(key, len))) return false;
    size_--;
    if (t->size() == 0) {
      t.reset();  // an emptied length costs neither memory nor a probe
      relist();
    }
    return true;
  }
  // The value of the longest prefix holding addr, or null.
  const uint32_t* lookup(Key addr) const {
    for (int i = 0; i < nlens_; i++) {
      const int len = lens_[i];
      const Key k = lpm_mask(addr, len);
      if (k < ranges_[len].lo || ranges_[len].hi < k) continue;
      if (const uint32_t* v = tables_[len]->find(k)) return v;
    }
    return nullptr;
  }
  size_t size() const { return size_; }
  // Room for n prefixes of length len without rehashing (an empty table is not probed: relist skips it).
  void reserve(int len, size_t n) {
    auto& t = tables_[len];
    if (!t) t.reset(new Table());
    t->reserve(n);
  }
  // f(masked key, len, value) for every prefix held, in no order.
  template <typename F>
  void for_each(F f) const {
    for (int len = 0; len <= kBits; len++)
      if (tables_[len]) tables_[len]->for_each([&](const Key& k, uint32_t v) { f(k, len, v); });
  }

 private:
  void relist() {
    nlens_ = 0;
    for (int len = kBits; len >= 0; len--)
      if (tables_[len] && tables_[len]->size()) lens_[nlens_++] = len;
  }

  // The least and greatest masked key put into a length's table since it was last empty (set by put; read only
  // for lengths in lens_).
  struct Range {
    Key lo{}, hi{};
  };

  std::unique_ptr<Table> tables_[kBits + 1];
  Range ranges_[kBits + 1];
  int lens_[kBits + 1] = {};  // non-empty lengths, longest first
  int nlens_ = 0;
  size_t size_ = 0;
};

}  // namespace wm
