// Allowed-IPs table: longest-prefix match from an IPv4/IPv6 address to a peer id.
// It serves cryptokey routing both ways: TX picks the peer for a destination, RX
// checks that a decrypted packet's source belongs to the peer that sent it.
//
// The control thread changes the table in place under Device::table_mu_
// (exclusive); packet threads look up under it shared (see device.h).
//
// The prefixes are an LpmIndex per family (policy/lpm.h, as the ipcache's):
// one hash table per prefix length in use, 8-byte IPv4 slots of (key, peer id);
// a lookup probes the lengths whose range of prefixes holds its address,
// longest first (a pod's address in a mesh: one or two; lpm.h says what other
// lengths cost). Before s31 it was a path-compressed trie: ~2 nodes of 64
// bytes of malloc per prefix and a cache miss per node on the path
// (bench/native-malloc.ts, bench:allowedips-lookup, docs/benchmarks.md "### s31").
//
// Each peer keeps the list of its prefixes (as wireguard-go keeps a per-peer
// node list): removing a peer costs O(its prefixes), not a walk of the table.
// A prefix taken over by another peer (insert's replace) stays in its former
// owner's list until that owner is removed or its list is compacted: both
// check the owner in the index before erasing, so a stale copy erases nothing.
// A list is compacted (stale copies and duplicates dropped, the rest kept in
// order) when it is full (its vector's size is its capacity) and at least
// kCompactFrom long; one still over half full after that gets room for as many
// again. So a list holds under 4x the distinct prefixes its peer holds, plus
// what others took from it since (stale until its next compaction or removal).
// In the device a list is the prefixes of the peer's last set, in its order
// (Device::update_allowed_ips, replacing, removes a peer's prefixes before
// inserting its new ones), then those added since (the same, not replacing: a
// UAPI set without replace_allowed_ips), and copies others took since, under the bound above.
//
// The lists are the one record of which prefixes a peer holds (s35): the
// WireGuard device's JS side keeps none and reads a peer's back with
// peer_prefixes (UAPI get), where it kept a copy of every peer's keys and an
// owner per prefix (13.5 B per remote endpoint of the agent's heap at 10 per
// node, issue 16: docs/benchmarks.md, s35). A list of at most two IPv4 prefixes
// (a node's pod CIDR and address: nearly every peer of an agent) is held in
// the map's node itself (prefix_list.h, s38); a longer one, or one with an IPv6
// prefix, in a vector that grows and is compacted as above.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "../policy/lpm.h"
#include "prefix_list.h"

namespace wm {

class AllowedIPs {
 public:
  // Not a peer id: the index's free-slot mark (LpmIndex::kFree), which no value may be.
  static constexpr uint32_t kNoPeer = LpmIndex<uint32_t, 32>::kFree;
  static constexpr size_t kCompactFrom = 8;

  // addr is 4 or 16 bytes; cidr is clamped to 0..8 * family_bytes and the address masked to it. A later insert
  // of the same prefix replaces the peer (as `wg set ... allowed-ips` does). peer must not be kNoPeer (ignored).
  void insert(const uint8_t* addr, int family_bytes, int cidr, uint32_t peer);
  // Removes every prefix of a peer: O(the prefixes in its list).
  void remove_peer(uint32_t peer);
  uint32_t lookup(const uint8_t* addr, int family_bytes) const {
    const uint32_t* p = family_bytes == 4 ? v4_.lookup(v4_key(addr)) : v6_.lookup(v6_key(addr));
    return p ? *p : kNoPeer;
  }
  size_t size() const { return v4_.size() + v6_.size(); }
  // Prefixes in the peers' lists, stale copies included (tests: the lists' bound).
  size_t listed() const;
  struct Entry {
    uint8_t addr[16];
    int family_bytes;
    int cidr;
    uint32_t peer;
  };
  // Every prefix, IPv4 first, each family by address then length (a trie's pre-order, as before s31): for the
  // fuzz target and the test hook (the device reads a peer's with peer_prefixes).
  void entries(std::vector<Entry>* out) const;
  // Appends the prefixes `peer` holds (masked to their length), each once, in the order it was given them (one
  // given again while held keeps its place; one taken back from another peer goes last), as Entries of `peer`.
  // O(n log n) in the length of its list.
  void peer_prefixes(uint32_t peer, std::vector<Entry>* out) const;

 private:
  using Prefix = ListedPrefix;
  // The owner held in the index for a prefix, or null.
  uint32_t* owner(const Prefix& p);
  const uint32_t* owner(const Prefix& p) const { return const_cast<AllowedIPs*>(this)->owner(p); }
  bool erase(const Prefix& p);
  // (a list on the heap: an inline one holds at most PrefixList::kInline, below kCompactFrom)
  void compact(uint32_t peer, std::vector<Prefix>* list);
  // keep[i]: list[i] is held by `peer` and no later entry is the same prefix.
  void live(uint32_t peer, const std::vector<Prefix>& list, std::vector<bool>* keep) const;

  LpmIndex<uint32_t, 32> v4_;
  LpmIndex<Ip6Key, 128> v6_;
  // peer -> its prefixes (and stale copies: above); two IPv4 ones (a node's pod CIDR and address) held inline, in
  // the map's 24-byte node (prefix_list.h, s38)
  std::unordered_map<uint32_t, PrefixList> owned_;
};

}  // namespace wm
