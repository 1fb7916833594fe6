// Which allowed ICMP packets that no conntrack entry tracks (icmp.h: an
// unsolicited answer, a redirect, neighbour discovery, an error policy allows)
// get a flow record and count as a new flow.
//
// A tracked flow is recorded once, when its entry is made, and its later
// packets pass by conntrack; such ICMP meets policy on every packet instead,
// so without this gate a pod sending it fast would write a record per packet
// (overwriting the 16,384-record flow ring) and inflate
// policy_forwarded_new_flows. Fixed tables, lock-free (one atomic word a
// slot, relaxed: a race costs at most one extra record per racing thread):
//  - seen: 4,096 slots per sender class (pods, others: as the budget below),
//    direct-mapped by a keyed hash of what the record shows (direction,
//    family, protocol, source, destination, both identities). One table per
//    class, so a flood from outside the node evicts no pod's seen tuple (which
//    would then be recorded again and spend the pod's budget again).
//    A packet whose tuple was seen within kIntervalS is not recorded again
//    (and keeps it seen), as a tracked flow's later packets are not while its
//    entry lives (60 s without a packet, UDP's timeout). The ICMP type, code and
//    identifier are not in the key: the record carries none of them but the
//    identifier of an answer, and all three are the sender's free choice.
//  - budget: what a sender may add, in two tables of 1,024 slots each (a
//    keyed hash of the sender), so that no flood from outside the node can
//    spend a local pod's budget:
//      pods:   a local endpoint, by its endpoint id (egress, or ingress from a
//              pod of this node; a pod cannot send as another, the pod guard);
//      others: a remote node, by its WireGuard peer; anything else (the
//              host's own egress or ingress, the world, CIDR identities) by
//              its source prefix, an IPv6 /64
//              (as conntrack charges it) or an IPv4 /24, since such a sender
//              picks any address of its prefix.
//    At most kPerSourcePerInterval records a slot per kIntervalS window;
//    senders that share a slot share its budget. Windows are staggered by
//    slot (a slot's window starts at its index mod 60 s), so budgets do not
//    all refill in the same second.
//  - rate: each table's records in all, at most kPerClassPerSecond a second
//    (both: 4,096 a second, a quarter of the 16,384-record flow ring, which
//    the agent drains every 100 ms), however many slots a flood spends.
// What the budget or the rate holds back is counted (policy_icmp_unrecorded).
// The hash is keyed with the process's random seed: a sender cannot aim its
// tuples at an honest tuple's or sender's slot.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>

#include "flatmap.h"

namespace wm {

class IcmpRecordGate {
 public:
  static constexpr uint32_t kIntervalS = 60;
  static constexpr uint32_t kPerSourcePerInterval = 64;
  static constexpr uint32_t kPerClassPerSecond = 2048;
  static constexpr size_t kSeenSlots = 4096, kBudgetSlots = 1024;

  enum Verdict { kRecord, kSeen, kOverBudget };

  // What a record of this packet would show (the dedupe key), and who sent it.
  struct Tuple {
    uint8_t direction = 0, family = 0, proto = 0, pad = 0;
    uint32_t src_identity = 0, dst_identity = 0;
    uint8_t src[16] = {}, dst[16] = {};
  };
  // Who a record is charged to (icmprecord.h's header: budget).
  struct Sender {
    enum Kind : uint8_t { kPod = 1, kPeer = 2, kPrefix = 3 };
    uint8_t kind = 0, family = 0, pad[2] = {};
    uint32_t id = 0;          // kPod: the endpoint id; kPeer: the peer
    uint8_t prefix[16] = {};  // kPrefix: the source's /24 (IPv4) or /64 (IPv6), the rest zero

    static Sender pod(uint32_t endpoint) { return make(kPod, endpoint); }
    static Sender peer(uint32_t peer) { return make(kPeer, peer); }
    static Sender source(uint8_t family, const uint8_t* src) {
      Sender s = make(kPrefix, 0);
      s.family = family;
      std::memcpy(s.prefix, src, family == 4 ? 3 : 8);
      return s;
    }

   private:
    static Sender make(Kind k, uint32_t id) {
      Sender s;
      s.kind = k;
      s.id = id;
      return s;
    }
  };

  IcmpRecordGate() {
    for (auto& table : seen_)
      for (auto& s : table) s.store(0, std::memory_order_relaxed);
    for (auto& s : pods_) s.store(0, std::memory_order_relaxed);
    for (auto& s : others_) s.store(0, std::memory_order_relaxed);
    for (auto& r : rate_) r.store(0, std::memory_order_relaxed);
  }

  // now_s: monotonic seconds. kRecord: record and count it (the tuple is then
  // seen); kSeen: seen within the last kIntervalS; kOverBudget: new, but its
  // sender's slot spent its budget this window or its table its rate this
  // second (not marked seen: it is offered again with the next packet).
  Verdict admit(const Tuple& t, const Sender& s, uint32_t now_s) {
    uint64_t h = hash_bytes(&t, sizeof t, seed_);
    std::atomic<uint64_t>& slot = seen_[s.kind == Sender::kPod ? 0 : 1][h & (kSeenSlots - 1)];
    uint64_t tag = (h >> 32) | 1;  // never 0: an empty slot matches no tuple
    uint64_t v = slot.load(std::memory_order_relaxed);
    if (v >> 32 == tag && now_s - uint32_t(v) < kIntervalS) {
      if (uint32_t(v) != now_s) slot.store(tag << 32 | now_s, std::memory_order_relaxed);  // a write a second at most
      return kSeen;
    }
    if (!spend(s, now_s)) return kOverBudget;
    slot.store(tag << 32 | now_s, std::memory_order_relaxed);
    return kRecord;
  }

 private:
  // Takes one record from the sender's slot's budget for the slot's window
  // now_s is in, and from its table's rate for this second.
  bool spend(const Sender& s, uint32_t now_s) {
    bool pod = s.kind == Sender::kPod;
    size_t i = hash_bytes(&s, sizeof s, seed_ + 1) & (kBudgetSlots - 1);
    std::atomic<uint64_t>& slot = (pod ? pods_ : others_)[i];
    // never 0: an empty slot is an old window
    uint64_t window = (uint64_t(now_s) + i % kIntervalS) / kIntervalS + 1;
    if (!take(slot, window, kPerSourcePerInterval)) return false;
    if (take(rate_[pod ? 0 : 1], uint64_t(now_s) + 1, kPerClassPerSecond)) return true;
    // not recorded: the slot keeps its budget, or a flood held back by the
    // rate would spend every slot's minute while it recorded nothing
    uint64_t v = slot.load(std::memory_order_relaxed);
    while (v >> 32 == (window & 0xffffffff) && uint32_t(v) > 0 &&
           !slot.compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) {
    }
    return false;
  }

  // One from a (period << 32 | used) word: false when `limit` were used this period.
  static bool take(std::atomic<uint64_t>& word, uint64_t period, uint32_t limit) {
    uint64_t v = word.load(std::memory_order_relaxed);
    for (;;) {
      uint64_t used = v >> 32 == (period & 0xffffffff) ? uint32_t(v) : 0;
      if (used >= limit) return false;
      if (word.compare_exchange_weak(v, period << 32 | (used + 1), std::memory_order_relaxed)) return true;
    }
  }

  uint64_t seed_ = flatmap_seed();
  std::atomic<uint64_t> seen_[2][kSeenSlots];  // pods, others
  std::atomic<uint64_t> pods_[kBudgetSlots], others_[kBudgetSlots];
  std::atomic<uint64_t> rate_[2];  // pods, others: (second + 1) << 32 | records
};

}  // namespace wm
