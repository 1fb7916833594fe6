// ipcache: IP address or CIDR -> (security identity, local endpoint), the
// native counterpart of Cilium's ipcache map.
//
// Lookup is longest-prefix match over two tables, one per address family,
// each keyed by the family's native width (uint32 for IPv4, two uint64 for
// IPv6). A table is an LpmIndex (lpm.h, shared with the allowed IPs): one open-addressing hash table per prefix length in use
// (nearly every entry is an endpoint's /32 or /128; policies' CIDRs and pod
// CIDRs add a handful of other lengths), probed longest length first: the
// first hit is the longest match. A slot is the key and a 32-bit code (below):
// at 100k IPv4 entries the /32 table is 8-byte slots in 2 MiB (one cache line
// per probe; 16-byte slots in 4 MiB before s30, and before issue 16 16-byte
// addresses in 32-byte slots, 8 MiB, plus a trie for the prefixes). IPv6 slots
// are 24 bytes (8-aligned: some straddle two cache lines).
// A lookup probes its match's length and each longer length whose range holds
// the address (lpm.h): for a pod's address (a /32 entry) exactly one.
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

#include "lpm.h"

namespace wm {

struct IpcacheValue {
  uint32_t identity = 0;
  uint32_t endpoint = 0;  // local endpoint id, 0 = not on this node
};

// The ipcache's table for one family: an LpmIndex (lpm.h) whose values are codes (below).
template <typename Key, int kBits>
class LpmTables {
 public:
  // key: already masked to len
  void upsert(Key key, int len, IpcacheValue v);
  bool remove(Key key, int len);
  // key: the full address
  bool lookup(Key addr, IpcacheValue* out) const {
    const uint32_t* c = index_.lookup(addr);
    if (!c) return false;
    *out = *c & kLocal ? locals_[*c & ~kLocal] : IpcacheValue{*c, 0};
    return true;
  }
  size_t size() const { return index_.size(); }
  void reserve(int len, size_t n) { index_.reserve(len, n); }
  // A table's value, 32 bits: a remote endpoint's (no local endpoint, identity below 2^31: nearly every entry) is
  // its identity; any other is kLocal | its index in locals_ (this node's endpoints: few). kFree marks a free slot
  // (FlatMap's FreeValue) and is never a code: an IPv4 host entry is an 8-byte slot, not 16 (at 160k remote
  // endpoints the /32 table is 2 MiB, not 4: 13 B per remote endpoint, docs/benchmarks.md "### s30"), for one
  // bit test per hit.
  static constexpr uint32_t kLocal = 0x80000000u, kFree = LpmIndex<Key, kBits>::kFree;
  // One prefix length's table (public for the test hooks' probe-cost check).
  using Table = typename LpmIndex<Key, kBits>::Table;
  // Values held in locals_ (tests: freed with their entries).
  size_t locals_held() const { return locals_.size() - free_locals_.size(); }

 private:
  uint32_t encode(IpcacheValue v);  // takes a locals_ index when the value needs one
  void release(uint32_t code);      // gives back a code's locals_ index, if it has one

  LpmIndex<Key, kBits> index_;
  // The values codes point to, and their free indices (reused latest first; both emptied when nothing is held).
  std::vector<IpcacheValue> locals_;
  std::vector<uint32_t> free_locals_;
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

 private:
  LpmTables<uint32_t, 32> v4_;
  LpmTables<Ip6Key, 128> v6_;
};

}  // namespace wm
