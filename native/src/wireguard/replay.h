// Sliding-window replay filter for transport counters (RFC 6479). The window is
// 8192 bits in 64-bit blocks; one block is always the "current" block being
// rotated in, so the guaranteed window is 8192 - 64 = 8128 counters, as in
// wireguard-go. Only the RX thread touches a keypair's filter.
#pragma once
#include <cstdint>
#include <cstring>

#include "messages.h"

namespace wm {

class ReplayFilter {
 public:
  static constexpr uint64_t kBlockBits = 64;
  static constexpr uint64_t kRingBlocks = 128;
  static constexpr uint64_t kWindowSize = (kRingBlocks - 1) * kBlockBits;  // 8128

  void reset() {
    last_ = 0;
    std::memset(ring_, 0, sizeof ring_);
  }

  // Accepts counter once; returns false for a replay, a counter too old for the
  // window, or one at/after RejectAfterMessages.
  bool validate(uint64_t counter) {
    if (counter >= kRejectAfterMessages) return false;
    uint64_t index = counter / kBlockBits;
    if (counter > last_) {
      uint64_t current = last_ / kBlockBits;
      uint64_t diff = index - current;
      if (diff > kRingBlocks) diff = kRingBlocks;
      for (uint64_t i = current + 1; i <= current + diff; i++) ring_[i % kRingBlocks] = 0;
      last_ = counter;
    } else if (last_ - counter > kWindowSize) {
      return false;
    }
    uint64_t bit = uint64_t(1) << (counter % kBlockBits);
    uint64_t& block = ring_[index % kRingBlocks];
    if (block & bit) return false;
    block |= bit;
    return true;
  }

 private:
  uint64_t last_ = 0;
  uint64_t ring_[kRingBlocks] = {0};
};

}  // namespace wm
