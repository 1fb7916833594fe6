// A compiled per-endpoint, per-direction policy map, the native counterpart of
// Cilium's policy map: (remote identity, protocol, port range) -> allow, deny
// or redirect (to the agent's L7 proxy), with the policy rule that produced
// the entry.
//
// Lookup (at most two hash probes, as Cilium's): the entries of the remote
// identity and the wildcard entries (identity 0 = any). Any matching deny
// wins; then a matching redirect (an L7 rule covers the port: the proxy
// decides per request); then the first matching allow; otherwise the packet is
// denied (a map exists only for an endpoint some policy selects in that
// direction).
//
// A rule change swaps whole maps in; an identity that appears or goes is
// applied by delta (update: only that identity's group is rewritten), under
// PolicyEngine's exclusive lock, so the packet threads wait for a few entries'
// worth of work, not a map's.
//
// Locking rules (PolicyEngine::mu guards every PolicyMap an endpoint holds):
//   - lookup(), entries(), compacted(), generation(), wants_compaction(),
//     size() and slots() only read: mu held shared (or exclusive) is enough,
//     any number of threads at once.
//   - update() writes in place: mu held exclusively (no reader in the map).
//   - Compaction never writes a map: compacted() builds a new map (a map's
//     garbage-free copy) under mu shared, which keeps every writer out while
//     the packet threads go on looking up; the caller then takes mu
//     exclusively and swaps the endpoint's shared_ptr to the copy (O(1)) if
//     and only if the endpoint still holds the same map at the same
//     generation(). Between the shared and the exclusive hold a writer may
//     have come in (mu cannot be upgraded): then the generation differs, the
//     copy is stale and is dropped, the map keeps its garbage and the writer's
//     change, and a later update compacts it. So no update is ever lost to a
//     compaction, and a packet thread, which holds mu shared for its whole
//     batch, sees either the old map or the new one, never a mix. The map a
//     swap displaces is freed after mu is released.
//
// Memory bound: until the swap an endpoint's direction holds two maps, the old
// one (S slots x 16 B, S > 2 x live, plus its identity index) and the copy
// (live x 16 B plus an index of the next power of two >= 2 x identities slots
// of 32 B each, under 128 B per identity). The copy's entries are less than
// half the old's and its index no bigger than the old's (which holds >= 2
// slots per identity), so a compaction's peak is under twice the old map's
// footprint (s7pmap review, measured before the copy's index was sized to its
// identities: +5.3 -> +8.4 MiB at 100k entries, +34.6 -> +66.0 MiB at 1M). One
// control thread compacts, one map at a time: at most one copy engine-wide.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "flatmap.h"

namespace wm {

struct PolicyEntry {
  uint32_t identity;  // 0 = any
  uint8_t proto;      // 0 = any
  uint8_t action;     // kActionAllow, kActionDeny, kActionRedirect
  uint16_t port_lo;   // [port_lo, port_hi]; 0..65535 = any port (and protocols without ports)
  uint16_t port_hi;
  uint32_t rule;      // id the agent maps back to the policy and rule
};

enum PolicyAction : uint8_t { kActionAllow = 0, kActionDeny = 1, kActionRedirect = 2 };
enum PolicyVerdict : uint8_t { kPolicyAllow = 1, kPolicyDeny = 2, kPolicyDefaultDeny = 3, kPolicyRedirect = 4 };

struct PolicyResult {
  PolicyVerdict verdict;
  uint32_t rule;
};

class PolicyMap {
 public:
  explicit PolicyMap(std::vector<PolicyEntry> entries);
  // has_ports: TCP/UDP/SCTP (a port-restricted entry matches only those).
  PolicyResult lookup(uint32_t identity, uint8_t proto, uint16_t port, bool has_ports) const {
    // Inline: the common case, no wildcard entries and the identity's group one
    // entry (in its index slot), is one probe and a compare. Short on purpose:
    // the probe depends on the ipcache's answer, and the fewer instructions per
    // packet, the more packets' cache misses the CPU overlaps.
    if (wild_.count == 0 && identity != 0) {
      const Span* s = by_identity_.find(identity);
      if (!s) return PolicyResult{kPolicyDefaultDeny, 0};
      if (s->count == 1) {
        const PolicyEntry& e = s->head;
        if (!matches(e, proto, port, has_ports)) return PolicyResult{kPolicyDefaultDeny, 0};
        PolicyVerdict v = e.action == kActionDeny ? kPolicyDeny : e.action == kActionRedirect ? kPolicyRedirect : kPolicyAllow;
        return PolicyResult{v, e.rule};
      }
    }
    return lookup_groups(identity, proto, port, has_ports);
  }
  // Entries in force.
  size_t size() const { return live_; }
  // Delta: every entry equal (all fields) to one of `removes` goes, then each
  // of `upserts` joins its identity's group after the entries it kept (the
  // group ordered by action as a full build orders it). The agent rewrites an
  // identity's whole group this way (its old entries removed, its new ones in
  // compile order), so the result equals a map built from scratch.
  // Cost: the groups of the identities named. A group that grows moves to the
  // end and leaves garbage: when wants_compaction(), the caller swaps in
  // compacted() (see the locking rules above). Bumps generation().
  void update(const std::vector<PolicyEntry>& upserts, const std::vector<PolicyEntry>& removes);
  // Garbage outweighs the entries in force (and the map is past 64 slots):
  // compacting now keeps the work amortized O(1) per entry written.
  // A compaction dropped as stale leaves this true: every later update then
  // copies the map again until one copy lands. Only two writer threads can
  // drop one (production has one control thread writing), and a drop means a
  // writer got in, whose own update retries: no livelock, at worst a copy per
  // update while writers race.
  bool wants_compaction() const { return entries_.size() > 64 && entries_.size() > 2 * live_; }
  // A new map with this one's entries and no garbage (same lookups, same
  // entries(), same generation()). O(entries); reads only.
  std::shared_ptr<PolicyMap> compacted() const;
  // Counts the updates applied: a compacted() copy is current while it matches.
  uint64_t generation() const { return generation_; }
  // Slots held, entries in force plus garbage (>= size()).
  size_t slots() const { return entries_.size(); }
  // The map's entries, grouped by identity (ascending), in lookup order.
  std::vector<PolicyEntry> entries() const;

 private:
  // An identity's entries: entries_[first, first + count), the first also
  // inline (most groups have one entry: a lookup touches one cache line).
  struct Span {
    uint32_t first = 0, count = 0;
    PolicyEntry head{};
  };
  static bool matches(const PolicyEntry& e, uint8_t proto, uint16_t port, bool has_ports) {
    if (e.proto != 0 && e.proto != proto) return false;
    if (e.port_lo == 0 && e.port_hi == 65535) return true;  // any port
    return has_ports && port >= e.port_lo && port <= e.port_hi;
  }
  // Any case: the identity's group and the wildcard group.
  PolicyResult lookup_groups(uint32_t identity, uint8_t proto, uint16_t port, bool has_ports) const;
  struct Ordered {};  // entries already grouped by identity in lookup order (entries()): no sort
  PolicyMap(Ordered, std::vector<PolicyEntry> entries, uint64_t generation, size_t identities);
  static void order_group(std::vector<PolicyEntry>* group);
  void index(size_t identities);  // from entries_, grouped: builds by_identity_, reserved for `identities`
  void set_group(uint32_t identity, std::vector<PolicyEntry> group);
  const Span* span(uint32_t identity) const { return identity == 0 ? (wild_.count ? &wild_ : nullptr) : by_identity_.find(identity); }
  Span make_span(uint32_t first, uint32_t count) const { return Span{first, count, count ? entries_[first] : PolicyEntry{}}; }

  FlatMap<uint32_t, Span, MulShiftHash> by_identity_;  // identity != 0
  Span wild_;                               // identity 0 (any), looked up with every packet: no probe
  // groups by identity; in a group denies, then redirects, then allows. A
  // group rewritten by update() moves to the end when it grows; the slots it
  // left are garbage until a compaction.
  std::vector<PolicyEntry> entries_;
  size_t live_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace wm
