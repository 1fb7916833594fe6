// ipcache: IP address or CIDR -> (security identity, local endpoint), the
// native counterpart of Cilium's ipcache map.
//
// Lookup is longest-prefix match over two tables, one per address family,
// each keyed by the family's native width (uint32 for IPv4, two uint64 for
// IPv6). A table is one open-addressing hash table per prefix length in use
// (nearly every entry is an endpoint's /32 or /128; policies' CIDRs and pod
// CIDRs add a handful of other lengths), probed longest length first: the
// first hit is the longest match. A slot is the key and a 32-bit code (below):
// at 100k IPv4 entries the /32 table is 8-byte slots in 2 MiB (one cache line
// per probe; 16-byte slots in 4 MiB before s30, and before issue 16 16-byte
// addresses in 32-byte slots, 8 MiB, plus a trie for the prefixes). IPv6 slots
// are 24 bytes (8-aligned: some straddle two cache lines).
// A lookup costs one probe per distinct prefix length longer than its match:
// in the data path's common case (a pod address) exactly one.
//
// Tables fill to 3/4 before doubling (FlatMap's default is 1/2), so they run
// 3/8..3/4 full: at the issue-16 point (160k remote endpoints) the /32 table
// is 256k slots, 2 MiB (13 B per remote endpoint; 4 MiB, 26 B, at 16-byte
// slots before s30), where a half-full limit made it 512k slots.
// The cost: linear probing at 3/4 expects 2.5 slots per hit and 8.5 per miss
// (1.5 and 2.5 at 1/2), and eight 8-byte slots share a cache line, so a hit
// reads one line nearly always; a miss (an address outside the mesh) usually
// reads two. The seeds stay secret, so remote clusters choosing
// addresses cannot aim them at one run, and IPv4 keys are mixed before the
// multiply-shift (flatmap.h), so structured address sets (consecutive pods, a
// /24 per node) probe as random ones do: test/unit/native-flatmap-probe.test.ts
// holds them to the bound at 3/4 too.
//
// Not thread-safe: PolicyEngine guards it with its shared mutex.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "flatmap.h"

namespace wm {

struct IpcacheValue {
  uint32_t identity = 0;
  uint32_t endpoint = 0;  // local endpoint id, 0 = not on this node
};

struct Ip6Key {
  uint64_t hi = 0, lo = 0;  // the address big-endian: hi = bytes 0..7
  bool operator==(const Ip6Key& o) const { return hi == o.hi && lo == o.lo; }
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

// One hash table per prefix length; Key is uint32_t or Ip6Key.
template <typename Key, int kBits>
class LpmTables {
 public:
  LpmTables();
  // key: already masked to len
  void upsert(Key key, int len, IpcacheValue v);
  bool remove(Key key, int len);
  // key: the full address
  bool lookup(Key addr, IpcacheValue* out) const {
    for (int i = 0; i < nlens_; i++) {
      const Table& t = *tables_[lens_[i]];
      if (const uint32_t* c = t.find(lpm_mask(addr, lens_[i]))) {
        *out = *c & kLocal ? locals_[*c & ~kLocal] : IpcacheValue{*c, 0};
        return true;
      }
    }
    return false;
  }
  size_t size() const { return size_; }
  void reserve(int len, size_t n);
  // A table's value, 32 bits: a remote endpoint's (no local endpoint, identity below 2^31: nearly every entry) is
  // its identity; any other is kLocal | its index in locals_ (this node's endpoints: few). kFree marks a free slot
  // (FlatMap's FreeValue) and is never a code: an IPv4 host entry is an 8-byte slot, not 16 (at 160k remote
  // endpoints the /32 table is 2 MiB, not 4: 13 B per remote endpoint, docs/benchmarks.md "### s30"), for one
  // bit test per hit.
  static constexpr uint32_t kLocal = 0x80000000u, kFree = 0xFFFFFFFFu;
  // One prefix length's table, 3/4 full at most (see above; public for the test hooks' probe-cost check).
  using Table = FlatMap<Key, uint32_t, MulShiftHash, 6, FreeValue<uint32_t, kFree>>;
  // Values held in locals_ (tests: freed with their entries).
  size_t locals_held() const { return locals_.size() - free_locals_.size(); }

 private:
  void relist();
  Table& table(int len);  // created on first use
  uint32_t encode(IpcacheValue v);  // takes a locals_ index when the value needs one
  void release(uint32_t code);      // gives back a code's locals_ index, if it has one

  std::unique_ptr<Table> tables_[kBits + 1];
  // The values codes point to, and their free indices (reused latest first; both emptied when nothing is held).
  std::vector<IpcacheValue> locals_;
  std::vector<uint32_t> free_locals_;
  int lens_[kBits + 1];  // non-empty lengths, longest first
  int nlens_ = 0;
  size_t size_ = 0;
};

class IPCache {
 public:
  // family_bytes 4 or 16; cidr is the prefix length (the caller checked it is <= 8 * family_bytes).
  void upsert(const uint8_t* addr, int family_bytes, int cidr, IpcacheValue v);
  bool remove(const uint8_t* addr, int family_bytes, int cidr);
  bool lookup(const uint8_t* addr, int family_bytes, IpcacheValue* out) const {
    return family_bytes == 4 ? v4_.lookup(v4_key(addr), out) : v6_.lookup(v6_key(addr), out);
  }
  size_t size() const { return v4_.size() + v6_.size(); }
  // Entries whose value is held beside the tables (a local endpoint's, an identity from 2^31; LpmTables' codes).
  size_t locals_held() const { return v4_.locals_held() + v6_.locals_held(); }
  // Room for n host entries (/32) without rehashing.
  void reserve(size_t hosts) { v4_.reserve(32, hosts); }

  static uint32_t v4_key(const uint8_t* a) {
    return uint32_t(a[0]) << 24 | uint32_t(a[1]) << 16 | uint32_t(a[2]) << 8 | a[3];
  }
  static Ip6Key v6_key(const uint8_t* a) {
    Ip6Key k;
    for (int i = 0; i < 8; i++) k.hi = k.hi << 8 | a[i];
    for (int i = 8; i < 16; i++) k.lo = k.lo << 8 | a[i];
    return k;
  }

 private:
  LpmTables<uint32_t, 32> v4_;
  LpmTables<Ip6Key, 128> v6_;
};

}  // namespace wm
