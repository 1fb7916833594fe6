// Connection tracking for policy: a flow that policy allowed once keeps
// passing (established), and so do its replies, even when a later policy
// update would no longer allow a new flow of that kind.
//
// Entries are scoped by the direction whose check created them (egress: a
// local endpoint sent the first packet; ingress: a local endpoint received
// it), because one node can enforce both sides of a flow (two endpoints on
// the node) and each side must pass its own check once. Keys are normalized
// (lower address/port first) so a reply finds the entry of its flow with one
// probe; the entry remembers which side originated.
//
// Bounds (nothing a pod sends can grow the table without limit or push out
// other pods' flows): every entry is charged to the local endpoint whose
// check created it; an endpoint may hold at most per_endpoint entries and the
// table max_entries. An entry that has seen no reply yet ("unreplied": a TCP
// SYN nobody answered, a UDP probe) lives 60 s, a closing one (FIN/RST seen)
// 10 s. Both are "evictable": when the endpoint's quota or the table is full,
// the evictable entries of the endpoint holding most of them (for a quota:
// the endpoint itself) are swept out, never an answered open flow; if there
// are too few to be worth a sweep, the new flow gets no entry (it still
// passes: policy allowed it).
//
// Layout: two tables. IPv4 flows (nearly all of them) have a native-width key
// (addresses as uint32, ports, protocol, scope: 16 bytes) beside a 13-byte
// entry in a 32-byte slot, two to a cache line, hashed by seeded pair
// multiply-shift (Thorup); at a million flows one lookup is one cache miss.
// IPv6 flows keep the 40-byte key (64-byte slots, the seeded byte hash).
// max_entries bounds both tables together; the per-endpoint counts span both.
//
// Locking (seqmap.h): each table is 16 shards, each with a mutex and a
// sequence number. Lookups take no lock: a packet of a known flow that
// changes nothing (same second as the entry's last_s, no new FIN/RST, no
// first reply) is answered from a lock-free read of the entry; only a packet
// that changes the entry (at most once a second per flow, plus its state
// changes) takes the shard's mutex to write it, as do create, gc and the
// eviction sweeps (one shard at a time). The TX and RX threads and the
// control thread's gc may all run at once. quota_mu_ guards the per-endpoint
// counts; it is never held while a shard lock is taken (counts are adjusted
// after the shard work). At a million flows a shard's table is 4 MiB, backed
// by huge pages (64 shards of 1 MiB missed the TLB on most lookups).
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "flatmap.h"
#include "seqmap.h"

namespace wm {

enum CtScope : uint8_t { kCtEgress = 0, kCtIngress = 1 };
// kCtProxied: the flow's own direction, admitted only to go through the L7
// proxy: it may never pass straight to the pod (see Entry::proxied).
enum CtResult : uint8_t { kCtMiss = 0, kCtEstablished = 1, kCtReply = 2, kCtProxied = 3 };
enum CtCreate : uint8_t { kCtCreated, kCtExists, kCtTableFull, kCtQuotaFull };

struct FlowTuple {
  const uint8_t* src;
  const uint8_t* dst;
  int addr_len;
  uint16_t sport, dport;
  uint8_t proto;
  uint8_t tcp_flags;  // FIN/RST move an entry to the short closing timeout
};

class Conntrack {
 public:
  // Idle timeouts (seconds), as Cilium's defaults: TCP established 6 h (we use
  // 1 h), SYN (unreplied) 60 s, closing 10 s, anything else 60 s.
  static constexpr uint32_t kTcpTimeout = 3600, kUnrepliedTimeout = 60, kClosingTimeout = 10, kOtherTimeout = 60;
  // Defaults: 500 000 IPv4 entries stay within 65536 slots per shard (16 x
  // 65536 x 32 bytes = 32 MiB when full); an endpoint may hold an eighth of that.
  static constexpr size_t kDefaultMaxEntries = 500000, kDefaultPerEndpoint = 65536;

  enum Counter : int { kEvicted, kEvictionSweeps, kQuotaFull, kTableFull, kCounterCount };
  static const char* const kCounterNames[kCounterCount];

  explicit Conntrack(size_t max_entries = kDefaultMaxEntries, size_t per_endpoint = kDefaultPerEndpoint)
      : map4_(max_entries), map6_(max_entries), per_endpoint_(per_endpoint) {
    for (auto& c : counters_) c.store(0);
  }
  void set_limits(size_t max_entries, size_t per_endpoint) {
    map4_.set_max_entries(max_entries);
    map6_.set_max_entries(max_entries);
    per_endpoint_.store(per_endpoint, std::memory_order_relaxed);
  }
  // Looks the flow up in `scope` as an established flow (same orientation)
  // and, in the other scope, as a reply (reverse orientation; marks it replied).
  CtResult lookup(CtScope scope, const FlowTuple& t, uint32_t now_s) {
    // Inline, lock-free and writing nothing: the common case, an IPv4 packet in
    // its flow's own direction, in the same second as the flow's last packet,
    // with no FIN/RST. Everything else (replies, a new second, state changes,
    // IPv6) takes lookup_slow. Kept short: at a million flows the lookup is a
    // DRAM miss, and the fewer instructions between two lookups' misses, the
    // more of them the CPU overlaps.
    if (t.addr_len == 4 && !(t.tcp_flags & kClosingFlags)) {
      bool src_is_a;
      Key4 k = make_key4(scope, t, &src_is_a);
      int r = map4_.read(k, [&](const Entry* e) {
        if (!e || bool(e->orig_is_a) != src_is_a || e->last_s != now_s) return -1;
        return int(e->proxied ? kCtProxied : kCtEstablished);
      });
      if (r >= 0) return CtResult(r);
    }
    return lookup_slow(scope, t, now_s);
  }
  // An entry for a flow policy allowed, charged to `endpoint`; evicts
  // unreplied entries under pressure (see above). `proxied`: policy allowed
  // it only through the L7 proxy.
  CtCreate create(CtScope scope, const FlowTuple& t, uint32_t now_s, uint32_t rule, uint32_t endpoint,
                  bool proxied = false);
  // Whether the flow has an entry in either scope and orientation (nothing is refreshed).
  bool tracked(const FlowTuple& t);
  size_t gc(uint32_t now_s);
  size_t size() const { return map4_.size() + map6_.size(); }
  size_t endpoint_entries(uint32_t endpoint);
  uint64_t counter(int c) const { return counters_[c].load(std::memory_order_relaxed); }
  void clear();

 private:
  // Keys are normalized: a is the lower (address, port) end of the flow.
  struct Key4 {
    uint32_t a, b;  // as loaded from the packet (any fixed order normalizes)
    uint16_t pa, pb;
    uint8_t proto, scope;
    uint16_t pad;  // zero: keys compare bytewise
  };
  struct Key6 {
    uint8_t a[16], b[16];
    uint16_t pa, pb;
    uint8_t proto, scope, pad[2];
  };
  // Seeded pair multiply-shift over the IPv4 key's four 32-bit words
  // (Thorup, "High Speed Hashing for Integers and Strings"): two multiplies;
  // the high bits index a shard's table, bits 32..37 pick the shard. Seeds
  // are drawn once per process (every shard must hash alike).
  struct Hash4 {
    const uint64_t* s = seeds();
    static const uint64_t* seeds();
    uint64_t hash(const Key4& k) const {
      uint64_t w2 = uint64_t(k.pa) | uint64_t(k.pb) << 16, w3 = uint64_t(k.proto) | uint64_t(k.scope) << 8;
      return (s[0] + k.b) * (s[1] + k.a) + (s[2] + w3) * (s[3] + w2) + s[4];
    }
    size_t index(uint64_t h, size_t, int shift) const { return size_t(h >> shift); }
  };
  // Packed to 13 bytes so an IPv4 slot (key, entry, used flag) is 32 bytes.
  struct __attribute__((packed)) Entry {
    uint32_t last_s;
    uint32_t rule;
    uint32_t endpoint;  // charged to this local endpoint
    uint8_t orig_is_a : 1;
    uint8_t closing : 1;
    uint8_t tcp : 1;
    uint8_t replied : 1;  // the other side answered: no longer evictable, TCP gets the long timeout
    // Admitted for the L7 proxy: the flow's packets reach the pod only through
    // the device's redirect pair. When that pair is missing (the redirect
    // failed while the proxy was down, or an RST closed the pair and the
    // client reuses the tuple), a hit says kCtProxied, never "established":
    // a conntrack entry must not turn an L7 decision into an L4 pass.
    uint8_t proxied : 1;
  };
  static_assert(sizeof(Key4) == 16 && sizeof(Entry) == 13, "an IPv4 slot is 32 bytes");
  struct Usage {
    int64_t total = 0, evictable = 0;
  };
  static bool evictable(const Entry& e) { return !e.replied || e.closing; }
  static constexpr uint8_t kClosingFlags = 0x05;  // TCP FIN, RST
  static Key4 make_key4(CtScope scope, const FlowTuple& t, bool* src_is_a) {
    uint32_t s, d;
    std::memcpy(&s, t.src, 4);
    std::memcpy(&d, t.dst, 4);
    // branch-free (on random flows a branch here mispredicts half the time):
    // the (address, port) ends compared as one number, the lower one first
    bool a_is_src = (uint64_t(s) << 16 | t.sport) <= (uint64_t(d) << 16 | t.dport);
    *src_is_a = a_is_src;
    uint32_t m = 0u - uint32_t(a_is_src), a = (s & m) | (d & ~m);
    uint16_t pm = uint16_t(m), pa = uint16_t((t.sport & pm) | (t.dport & ~pm));
    return Key4{a, s ^ d ^ a, pa, uint16_t(t.sport ^ t.dport ^ pa), t.proto, scope, 0};
  }
  __attribute__((noinline)) CtResult lookup_slow(CtScope scope, const FlowTuple& t, uint32_t now_s);
  static Key6 make_key6(CtScope scope, const FlowTuple& t, bool* src_is_a);
  static uint32_t timeout(const Entry& e);
  // What a hit says in the given pass (0: established, 1: reply).
  static CtResult verdict(int pass, bool proxied) { return pass == 1 ? kCtReply : proxied ? kCtProxied : kCtEstablished; }
  template <typename M, typename K>
  CtResult lookup_in(M& map, K k, CtScope scope, bool src_is_a, bool closing, uint32_t now_s);
  template <typename M, typename K>
  bool tracked_in(M& map, K k);
  // The evictable entries and the expired ones, summed per endpoint over both tables.
  template <typename F>
  size_t erase_if(F pred) { return map4_.erase_if(pred) + map6_.erase_if(pred); }
  // Removes the evictable entries of `endpoint`; returns how many.
  size_t sweep_evictable(uint32_t endpoint);
  // The sweep is worth it only when enough would go (a full table of replied
  // flows refuses new entries instead of scanning per packet).
  bool worth_sweeping(int64_t evictable, size_t limit) const { return evictable > 0 && size_t(evictable) * 16 >= limit; }
  void count(int c, uint64_t n = 1) { counters_[c].fetch_add(n, std::memory_order_relaxed); }

  SeqShardedMap<Key4, Entry, 16, Hash4, 32> map4_;
  SeqShardedMap<Key6, Entry, 16, BytesHash, 32> map6_;
  std::atomic<size_t> per_endpoint_;
  std::mutex quota_mu_;
  std::unordered_map<uint32_t, Usage> usage_;
  std::atomic<uint64_t> counters_[kCounterCount];
};

}  // namespace wm
