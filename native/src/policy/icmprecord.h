// Which allowed ICMP packets that no conntrack entry tracks (icmp.h: an
// unsolicited answer, a redirect, neighbour discovery, an error policy allows)
// get a flow record and count as a new flow.
//
// A tracked flow is recorded once, when its entry is made, and its later
// packets pass by conntrack; such ICMP meets policy on every packet instead,
// so without this gate a pod sending it fast would write a record per packet
// (overwriting the 16,384-record flow ring) and inflate
// policy_forwarded_new_flows. Two fixed tables, lock-free (one atomic word a
// slot, relaxed: a race costs at most one extra record per racing thread):
//  - seen: 4,096 slots, direct-mapped by a keyed hash of what the record shows
//    (direction, family, protocol, source, destination, both identities).
//    A packet whose tuple was seen within kIntervalS is not recorded again
//    (and keeps it seen), as a tracked flow's later packets are not while its
//    entry lives (60 s without a packet, UDP's timeout). The ICMP type, code and
//    identifier are not in the key: the record carries none of them but the
//    identifier of an answer, and all three are the sender's free choice.
//  - budget: 1,024 slots by a keyed hash of the sender (the WireGuard peer a
//    packet came from, or the source address of a local one: a pod cannot
//    forge its own, the pod guard), at most kPerSourcePerInterval records a
//    slot per kIntervalS window. Senders that share a slot share its budget,
//    so however many tuples or senders a flood uses, this gate lets through at
//    most 1,024 x 64 records a minute in all (~1,100/s, the ring is drained
//    every 100 ms); what it holds back is counted (policy_icmp_unrecorded).
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
  static constexpr size_t kSeenSlots = 4096, kBudgetSlots = 1024;

  enum Verdict { kRecord, kSeen, kOverBudget };

  // What a record of this packet would show (the dedupe key), and who sent it.
  struct Tuple {
    uint8_t direction = 0, family = 0, proto = 0, pad = 0;
    uint32_t src_identity = 0, dst_identity = 0;
    uint8_t src[16] = {}, dst[16] = {};
  };
  struct Sender {
    uint32_t peer = 0;  // 0: a packet of this node (src is then its source address)
    uint8_t src[16] = {};
  };

  IcmpRecordGate() {
    for (auto& s : seen_) s.store(0, std::memory_order_relaxed);
    for (auto& s : budget_) s.store(0, std::memory_order_relaxed);
  }

  // now_s: monotonic seconds. kRecord: record and count it (the tuple is then
  // seen); kSeen: seen within the last kIntervalS; kOverBudget: new, but its
  // sender's slot spent its budget this window (not marked seen: it is offered
  // again with the next packet).
  Verdict admit(const Tuple& t, const Sender& s, uint32_t now_s) {
    uint64_t h = hash_bytes(&t, sizeof t, seed_);
    std::atomic<uint64_t>& slot = seen_[h & (kSeenSlots - 1)];
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
  // Takes one record from the sender's slot's budget for the window now_s is in.
  bool spend(const Sender& s, uint32_t now_s) {
    std::atomic<uint64_t>& slot = budget_[hash_bytes(&s, sizeof s, seed_ + 1) & (kBudgetSlots - 1)];
    uint64_t window = now_s / kIntervalS + 1;  // never 0: an empty slot is an old window
    uint64_t v = slot.load(std::memory_order_relaxed);
    for (;;) {
      uint64_t used = v >> 32 == window ? uint32_t(v) : 0;
      if (used >= kPerSourcePerInterval) return false;
      if (slot.compare_exchange_weak(v, window << 32 | (used + 1), std::memory_order_relaxed)) return true;
    }
  }

  uint64_t seed_ = flatmap_seed();
  std::atomic<uint64_t> seen_[kSeenSlots];
  std::atomic<uint64_t> budget_[kBudgetSlots];
};

}  // namespace wm
