// DelayLine: a TUN device that hands every packet back to the kernel after a
// fixed delay. The testbed's stand-in for WAN latency (this kernel has no
// netem): policy routing sends a node's traffic for a remote underlay prefix
// into the device, and what comes back out is routed on by a table without
// that detour (src/testbed/latency.ts sets the routes up).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "tun.h"

namespace wm {

class DelayLine {
 public:
  ~DelayLine() { stop(); }
  bool start(const std::string& tun_name, uint32_t delay_ms, std::string* err);
  void stop();
  uint64_t packets() const { return packets_.load(std::memory_order_relaxed); }

 private:
  void loop();
  TunDevice tun_;
  uint64_t delay_ns_ = 0;
  std::atomic<bool> running_{false};
  std::atomic<uint64_t> packets_{0};
  std::thread thread_;
};

}  // namespace wm
