// How long a packet thread waits for PolicyEngine::mu while a policy map
// update compacts the map (bench/policymap-hold.sh builds this file against
// two source trees, this one and an anchor, and runs them alternating).
//
// Per size N (10k / 100k / 1M entries) and repetition: a fresh engine with one
// endpoint whose ingress map holds N identities of one entry each; half of
// them grown to two entries and shrunk back (the growth moved each group to
// the end: N slots of garbage, no compaction yet, both trees alike); then the
// measured update removes one identity, which tips the map over its
// compaction threshold. During that call a reader thread takes mu shared again
// and again, as the TX/RX threads do per batch; the longest wait of one
// acquisition is the stall a packet sees (the exclusive hold, plus the
// scheduler's noise on a shared machine). Also the update call's own time.
// Uses only the engine API both trees have (set_endpoint, policy_map_update, mu).
// Output: one line per size: "N <median max wait us> <median call us> <reps>".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "policy/engine.h"

namespace {

using Clock = std::chrono::steady_clock;
using wm::PolicyEntry;

double us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }
PolicyEntry entry(uint32_t i, uint16_t port) { return PolicyEntry{256 + i, 6, wm::kActionAllow, port, port, i + 1}; }

struct Sample {
  double max_wait_us, call_us;
};

Sample one(uint32_t n) {
  wm::PolicyEngine eng;
  std::vector<PolicyEntry> all;
  for (uint32_t i = 0; i < n; i++) all.push_back(entry(i, 80));
  eng.set_endpoint(1, 300, std::make_shared<wm::PolicyMap>(all), nullptr);
  std::vector<PolicyEntry> grown, none;
  for (uint32_t i = 0; i < n / 2; i++) grown.push_back(entry(i, 81));
  eng.policy_map_update(1, true, grown, none);  // n/2 groups move to the end: n + 2 * n/2 slots, n + n/2 live
  eng.policy_map_update(1, true, none, grown);  // shrunk in place: 2n slots, n live (not over 2 * live yet)

  std::atomic<int> phase{0};  // 0 wait, 1 measure, 2 done
  std::atomic<bool> ready{false};
  double max_wait = 0;
  std::thread reader([&] {
    volatile uint64_t sink = 0;
    ready = true;
    while (phase.load() == 0) {
    }
    while (phase.load() == 1) {
      auto t0 = Clock::now();
      std::shared_lock<std::shared_mutex> lock(eng.mu);
      max_wait = std::max(max_wait, us(Clock::now() - t0));
      for (int i = 0; i < 200; i++) sink = sink + uint64_t(i);  // a batch's worth of work under the lock
      lock.unlock();
      // and between batches (the TUN read): without a gap a reader-preferring rwlock starves the writer
      for (int i = 0; i < 200; i++) sink = sink + uint64_t(i);
    }
  });
  while (!ready.load()) {
  }
  phase = 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto t0 = Clock::now();
  eng.policy_map_update(1, true, none, {entry(n - 1, 80)});  // tips it: 2n slots > 2 * (n - 1) live
  double call = us(Clock::now() - t0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  phase = 2;
  reader.join();
  return Sample{max_wait, call};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  for (uint32_t n : {10000u, 100000u, 1000000u}) {
    std::vector<double> waits, calls;
    for (int r = 0; r < reps; r++) {
      Sample s = one(n);
      waits.push_back(s.max_wait_us);
      calls.push_back(s.call_us);
    }
    std::printf("%u %.1f %.1f %d\n", n, median(waits), median(calls), reps);
    std::fflush(stdout);
  }
  return 0;
}
