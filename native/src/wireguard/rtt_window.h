// Windowed minimum of one peer's probe RTT: what affinity "nearest" compares
// (src/services/service.ts). The minimum over a window measures the path's
// delay and not the queueing on it: on a loaded host our own userspace path
// adds tens of ms to single probes, which an average follows and a minimum
// ignores unless every probe of the window was delayed (the reasoning behind
// TCP BBR's 10 s min_rtt filter). src/native/rttwindow.ts mirrors it.
//
// The window is kSlots slots of kSlotMs aligned on the clock, each keeping the
// least sample taken in it; the value is the least of the slots, i.e. the
// minimum over the samples taken since the oldest slot began, between
// (kSlots-1)*kSlotMs and kSlots*kSlotMs ago (7.5..10 s). So a decrease of the
// path delay is seen at its first sample, an increase once the slots holding
// older samples have left the window (7.5..10 s later), and a spike only when
// every probe of at least 7.5 s (37 probes at 200 ms) was delayed.
// O(1) per sample (kSlots words), no allocation. Not thread safe: the probe
// monitor calls it under its lock.
#pragma once
#include <cstdint>

namespace wm {

class RttWindow {
 public:
  static constexpr uint64_t kWindowMs = 10000;
  static constexpr uint64_t kSlots = 4;
  static constexpr uint64_t kSlotMs = kWindowMs / kSlots;

  // A sample (µs, 0 is taken as 1) taken at now (monotonic ms; an earlier now
  // than a previous call counts as the current slot).
  void add(uint64_t now, uint32_t rtt_us) {
    advance(now);
    uint32_t& s = slot_[slot_index_ % kSlots];
    if (rtt_us == 0) rtt_us = 1;
    if (s == 0 || rtt_us < s) s = rtt_us;
  }

  // The least sample of the window at now (µs), 0 when it holds none.
  uint32_t min(uint64_t now) {
    advance(now);
    uint32_t m = 0;
    for (uint32_t s : slot_)
      if (s != 0 && (m == 0 || s < m)) m = s;
    return m;
  }

 private:
  // Empties the slots that the clock has left behind since the last call.
  void advance(uint64_t now) {
    uint64_t index = now / kSlotMs;
    if (index <= slot_index_) return;
    uint64_t passed = index - slot_index_ < kSlots ? index - slot_index_ : kSlots;
    for (uint64_t i = 1; i <= passed; i++) slot_[(slot_index_ + i) % kSlots] = 0;
    slot_index_ = index;
  }

  uint64_t slot_index_ = 0;               // now / kSlotMs of the newest slot
  uint32_t slot_[kSlots] = {0, 0, 0, 0};  // least sample per slot, µs; 0 = none
};

}  // namespace wm
