// Per-source handshake rate limiter: a token bucket per source IP (20 initiations
// per second, burst 5), consulted only while the device is under load. Entries
// idle for a second are swept so spoofed sources cannot grow the table without
// bound; the table also has a hard cap.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace wm {

class RateLimiter {
 public:
  static constexpr uint64_t kPacketsPerSecond = 20;
  static constexpr uint64_t kBurst = 5;
  static constexpr uint64_t kCostNs = 1000000000ull / kPacketsPerSecond;
  static constexpr uint64_t kMaxTokensNs = kCostNs * kBurst;
  static constexpr size_t kMaxEntries = 1 << 16;

  // ip is 4 or 16 bytes; now_ns from a monotonic clock.
  bool allow(const uint8_t* ip, int bytes, uint64_t now_ns);
  size_t size();

 private:
  struct Bucket {
    uint64_t last_ns;
    uint64_t tokens_ns;
  };
  void sweep(uint64_t now_ns);
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> table_;
  uint64_t last_sweep_ns_ = 0;
};

}  // namespace wm
