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
// Locking: a ShardedMap (64 shards, each under its own mutex), so the TX and
// RX threads rarely meet and garbage collection holds one shard at a time.
#pragma once
#include <cstdint>

#include "sharded.h"

namespace wm {

enum CtScope : uint8_t { kCtEgress = 0, kCtIngress = 1 };
enum CtResult : uint8_t { kCtMiss = 0, kCtEstablished = 1, kCtReply = 2 };

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
  // 1 h), closing 10 s, anything else 60 s.
  static constexpr uint32_t kTcpTimeout = 3600, kClosingTimeout = 10, kOtherTimeout = 60;

  explicit Conntrack(size_t max_entries = 1 << 21) : map_(max_entries) {}
  // Looks the flow up in `scope` as an established flow (same orientation)
  // and, in the other scope, as a reply (reverse orientation).
  CtResult lookup(CtScope scope, const FlowTuple& t, uint32_t now_s);
  // false: the table is full (the flow is still allowed; its replies may not be).
  bool create(CtScope scope, const FlowTuple& t, uint32_t now_s, uint32_t rule);
  size_t gc(uint32_t now_s);
  size_t size() const { return map_.size(); }
  void clear() { map_.clear(); }

 private:
  struct Key {
    uint8_t a[16], b[16];
    uint16_t pa, pb;
    uint8_t proto, scope, family, pad;
  };
  struct Entry {
    uint32_t last_s;
    uint32_t rule;
    uint8_t orig_is_a;
    uint8_t closing;
    uint8_t tcp;
    uint8_t pad;
  };
  static Key make_key(CtScope scope, const FlowTuple& t, bool* src_is_a);

  ShardedMap<Key, Entry> map_;
};

}  // namespace wm
