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
// Bounds (nothing a pod sends, and nothing sent to it, can grow the table
// without limit or push out other pods' flows). Every entry is charged to an
// account (usage_):
//  - a flow a local endpoint starts (egress scope) to that endpoint: at most
//    per_endpoint entries each;
//  - a flow someone else starts (ingress scope: a remote pod, node or world
//    host, or another local pod, reaching a local endpoint) to its SOURCE
//    ADDRESS (an IPv6 source: its /64), never to the endpoint that answers
//    it: at most per_endpoint entries per source, and all sources together at
//    most max_entries / 2 (the "inbound half"). So a pod's own outbound flows
//    always find room (the table's other half) however many parties open
//    flows to it, and a pod's answers cannot use up its own quota.
//  - the same ingress entry ALSO to its DESTINATION, the local endpoint that
//    received it (dests_): at most max_entries / 4 per destination (half the
//    inbound half). So however many sources flood one pod, the node's other
//    pods keep at least half the inbound half. (No finer share: a share that
//    shrinks with the number of pods holding entries lets probes to many
//    pods shrink an honest pod's share; a fixed cap cannot be moved by
//    anyone else's traffic.)
// The table holds max_entries in all. An entry that has seen no reply yet
// ("unreplied": a TCP SYN nobody answered, a UDP probe) lives 60 s; a TCP
// entry whose SYN was answered but whose originator has sent no non-SYN
// packet since ("embryonic": a half-open handshake, Cilium's seen_non_syn)
// 60 s too (Cilium's SYN timeout; Linux's SYN_RECV); a closing one (FIN/RST
// seen) 10 s. All three are "evictable": when a bound is full, evictable
// entries are swept out (the account's own for its quota, the destination's
// own for its bound; for the full half: every source's, before the
// destination's bound is asked; for the table: the local endpoint holding
// most of them, or all sources') before anything is refused. A sweep (one
// pass over the table) happens only when at least 1/16 of the bound (a
// destination's: of max_entries / 4; the half's: of the smaller of the half
// and per_endpoint) would go, so it is amortised; after a sweep admission is
// asked again (one sweep can leave another bound met), at most kMaxSweeps
// times for one new flow.
// Answered open flows (a TCP flow its originator ACKed, a UDP flow that was
// answered) are never evicted: when answered flows fill the inbound half, new
// inbound flows are refused until some expire or close (as Linux's early_drop
// takes unassured entries only). A destination's bound keeps one pod's flood
// to a quarter of the table, but floods of answered flows at several pods can
// still hold the half (docs/security.md, known gaps).
// If no sweep may make room the new flow gets no entry and the
// refusal is counted by its reason: a local endpoint's own flow still passes
// (policy allowed it); a flow someone else started is dropped (kCtSourceFull:
// passed without an entry, the pod's answer would become a flow charged to
// the pod, and the sender's next packet its reply, pinning the pod's quota).
// Deciding is O(1) for every bound but the full table, which looks at every
// local endpoint once.
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
// first reply, not embryonic) is answered from a lock-free read of the entry; only a packet
// that changes the entry (at most once a second per flow, plus its state
// changes) takes the shard's mutex to write it, as do create, gc and the
// eviction sweeps (one shard at a time). The TX and RX threads and the
// control thread's gc may all run at once. quota_mu_ guards the accounts'
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
// kCtSourceFull: a flow someone else started, refused by its source's quota or the sources' half (conntrack.h).
enum CtCreate : uint8_t { kCtCreated, kCtExists, kCtTableFull, kCtQuotaFull, kCtSourceFull };

struct FlowTuple {
  const uint8_t* src;
  const uint8_t* dst;
  int addr_len;
  uint16_t sport, dport;
  uint8_t proto;
  uint8_t tcp_flags;  // FIN/RST move an entry to the short closing timeout
  // An ICMP query or its answer (icmp.h): the request's type (0: not one) and
  // whether this packet is the answer. The key carries the request type and
  // which end asked, so a request never matches as a reply (whatever the
  // identifier, 0 included) and one query kind never answers another.
  uint8_t icmp_request = 0;
  bool icmp_reply = false;
};

class Conntrack {
 public:
  // Idle timeouts (seconds), as Cilium's defaults: TCP established 6 h (we use
  // 1 h), SYN (unreplied) 60 s, closing 10 s, anything else 60 s.
  // A half-open TCP flow (embryonic) gets the unreplied timeout.
  static constexpr uint32_t kTcpTimeout = 3600, kUnrepliedTimeout = 60, kClosingTimeout = 10, kOtherTimeout = 60;
  // Defaults: 500 000 IPv4 entries stay within 65536 slots per shard (16 x
  // 65536 x 32 bytes = 32 MiB when full); an endpoint may hold an eighth of that.
  static constexpr size_t kDefaultMaxEntries = 500000, kDefaultPerEndpoint = 65536;
  // Sweeps one create may run (one per bound it meets: quota, destination, half or table).
  static constexpr int kMaxSweeps = 3;

  enum Counter : int {
    kEvicted,
    kEvictionSweeps,
    kQuotaFull,
    kTableFull,
    kSourceFull,
    kInboundFull,
    kDestinationFull,
    kCounterCount
  };
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
        if (!e || bool(e->orig_is_a) != src_is_a || e->last_s != now_s || e->embryonic) return -1;
        return int(e->proxied ? kCtProxied : kCtEstablished);
      });
      if (r >= 0) return CtResult(r);
    }
    return lookup_slow(scope, t, now_s);
  }
  // An entry for a flow policy allowed, created by `endpoint`'s check in
  // `scope` and charged as above (egress: to `endpoint`; ingress: to the
  // flow's source and to `endpoint`, its destination); evicts evictable
  // entries under pressure (see above).
  // `proxied`: policy allowed it only through the L7 proxy.
  CtCreate create(CtScope scope, const FlowTuple& t, uint32_t now_s, uint32_t rule, uint32_t endpoint,
                  bool proxied = false);
  // Whether the flow has an entry in either scope and orientation (nothing is refreshed).
  bool tracked(const FlowTuple& t);
  size_t gc(uint32_t now_s);
  size_t size() const { return map4_.size() + map6_.size(); }
  // Entries of flows the local endpoint started (what its quota counts).
  size_t endpoint_entries(uint32_t endpoint);
  // What the accounts count (tests: every count returns to zero with the entries).
  struct Accounting {
    int64_t inbound = 0, inbound_evictable = 0;  // every source's ingress entries
    size_t destination = 0;                      // ingress entries charged to the destination asked for
    size_t accounts = 0;                         // accounts of any kind with a count (zero after gc: no leak)
  };
  Accounting accounting(uint32_t destination);
  uint64_t counter(int c) const { return counters_[c].load(std::memory_order_relaxed); }
  void clear();

 private:
  // Keys are normalized: a is the lower (address, port) end of the flow.
  struct Key4 {
    uint32_t a, b;  // as loaded from the packet (any fixed order normalizes)
    uint16_t pa, pb;
    uint8_t proto, scope;
    uint16_t query;  // query_tag(); zero otherwise (keys compare bytewise)
  };
  struct Key6 {
    uint8_t a[16], b[16];
    uint16_t pa, pb;
    uint8_t proto, scope, query[2];  // query_tag(), little end first
  };
  // Seeded pair multiply-shift over the IPv4 key's four 32-bit words
  // (Thorup, "High Speed Hashing for Integers and Strings"): two multiplies;
  // the high bits index a shard's table, bits 32..37 pick the shard. Seeds
  // are drawn once per process (every shard must hash alike).
  struct Hash4 {
    const uint64_t* s = seeds();
    static const uint64_t* seeds();
    uint64_t hash(const Key4& k) const {
      uint64_t w2 = uint64_t(k.pa) | uint64_t(k.pb) << 16,
               w3 = uint64_t(k.proto) | uint64_t(k.scope) << 8 | uint64_t(k.query) << 16;
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
    uint8_t replied : 1;  // the other side answered: no longer evictable (TCP: once no longer embryonic)
    // TCP, replied, and the originator has sent no non-SYN packet since: a
    // half-open handshake, evictable with the unreplied timeout. Lookups of
    // such an entry take the slow path (the originator's ACK changes it).
    uint8_t embryonic : 1;
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
  // Accounts: a local endpoint's id (< 2^32; usage_) for flows it started; a
  // source's tag | address (sources_) for flows others started at it.
  // kAllSources names every source at once (a sweep of the sources' half).
  static constexpr uint64_t kSource4 = 1ull << 32, kSource6 = 2ull << 32, kAllSources = ~0ull;
  static bool is_source(uint64_t account) { return account >= kSource4; }
  static uint64_t account(const Key4& k, const Entry& e) {
    return k.scope == kCtEgress ? e.endpoint : kSource4 | (e.orig_is_a ? k.a : k.b);
  }
  static uint64_t account(const Key6& k, const Entry& e);
  static bool evictable(const Entry& e) { return !e.replied || e.closing || e.embryonic; }
  static constexpr uint8_t kClosingFlags = 0x05, kSyn = 0x02;  // TCP FIN, RST; SYN
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
    return Key4{a, s ^ d ^ a, pa, uint16_t(t.sport ^ t.dport ^ pa), t.proto, scope, query_tag(t, a_is_src)};
  }
  // An ICMP query's request type and whether the asking end is the key's a
  // end (bit 8); 0 for anything else.
  static uint16_t query_tag(const FlowTuple& t, bool src_is_a) {
    if (!t.icmp_request) return 0;
    bool asker_is_a = t.icmp_reply ? !src_is_a : src_is_a;
    return uint16_t(t.icmp_request | (asker_is_a ? 0x100 : 0));
  }
  __attribute__((noinline)) CtResult lookup_slow(CtScope scope, const FlowTuple& t, uint32_t now_s);
  static Key6 make_key6(CtScope scope, const FlowTuple& t, bool* src_is_a);
  static uint32_t timeout(const Entry& e);
  // What a hit says in the given pass (0: established, 1: reply).
  static CtResult verdict(int pass, bool proxied) { return pass == 1 ? kCtReply : proxied ? kCtProxied : kCtEstablished; }
  template <typename M, typename K>
  CtResult lookup_in(M& map, K k, CtScope scope, bool src_is_a, uint8_t tcp_flags, uint32_t now_s);
  template <typename M, typename K>
  bool tracked_in(M& map, K k);
  // Removes the entries `pred(key, entry)` picks from both tables, then
  // takes them off their accounts; returns how many.
  template <typename F>
  size_t remove_where(F pred);
  // Removes the evictable entries charged to `account` (or to any source); returns how many.
  size_t sweep_evictable(uint64_t account);
  // Removes the evictable ingress entries charged to `destination`; returns how many.
  size_t sweep_destination(uint32_t destination);
  // What a refused create may sweep to make room: an account's (or every
  // source's) evictable entries, or a destination's.
  struct Sweep {
    enum Kind : uint8_t { kNone, kAccount, kDestination } kind = kNone;
    uint64_t victim = 0;
  };
  // Under quota_mu_: -1 if `account` (and, inbound, `destination`) may take
  // one more entry, else the counter of the bound it meets and in *sweep
  // what to sweep to make room, if enough would go.
  int admit_locked(uint64_t account, uint32_t destination, size_t quota, size_t max, Sweep* sweep);
  // admit_locked's inbound bounds: the full half (every source's evictable
  // entries go first), then the destination's cap (max / 4); -1 if none is met. O(1).
  int admit_inbound_locked(uint32_t destination, size_t quota, size_t max, Sweep* sweep);
  // A destination's counts (dests_).
  void add_dest_locked(uint32_t destination, int64_t total, int64_t evictable);
  Usage& usage_locked(uint64_t account) { return is_source(account) ? sources_[account] : usage_[uint32_t(account)]; }
  void adjust_locked(uint64_t account, int64_t total, int64_t evictable);
  // An entry's counts: its account's and, an ingress entry's, its destination's.
  void charge_locked(uint64_t account, uint32_t destination, int64_t total, int64_t evictable) {
    adjust_locked(account, total, evictable);
    if (is_source(account)) add_dest_locked(destination, total, evictable);
  }
  // The sweep is worth it only when enough would go (a full table of replied
  // flows refuses new entries instead of scanning per packet).
  bool worth_sweeping(int64_t evictable, size_t limit) const { return evictable > 0 && size_t(evictable) * 16 >= limit; }
  void count(int c, uint64_t n = 1) { counters_[c].fetch_add(n, std::memory_order_relaxed); }

  SeqShardedMap<Key4, Entry, 16, Hash4, 32> map4_;
  SeqShardedMap<Key6, Entry, 16, BytesHash, 32> map6_;
  std::atomic<size_t> per_endpoint_;
  std::mutex quota_mu_;
  std::unordered_map<uint32_t, Usage> usage_;     // local endpoints' own flows
  std::unordered_map<uint64_t, Usage> sources_;   // flows others started, per source (at most max_entries / 2 keys)
  Usage inbound_;                                 // sources_ summed
  std::unordered_map<uint32_t, Usage> dests_;     // flows others started, per local destination (endpoint)
  std::atomic<uint64_t> counters_[kCounterCount];
};

}  // namespace wm
