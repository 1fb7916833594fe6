// The policy Conntrack's accounts (policy/conntrack.h) under ThreadSanitizer:
// two threads open flows from many sources into four pods (and answer them),
// a third sends the pods' own flows and looks flows up (the lock-free reads),
// a fourth moves the clock a second at a time (every 200 us) and runs gc, at limits small enough that the
// inbound half fills, destinations meet their bound and fair share, and
// sweeps run. TSan reports a data race (quota_mu_ must guard every
// count; it is never held while a shard lock is taken); after the threads stop
// the bounds must hold within the documented overshoot (one entry per racing
// thread), and once every entry has expired every count must be exactly zero
// (no account leaks through a race between a sweep and a create).
// Built and run by run.sh (clang-14 -fsanitize=thread); exit status 1 on a
// broken bound or a leak, 66 (TSan's) on a race.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "policy/conntrack.h"

namespace {

constexpr size_t kMax = 2048, kPer = 128;
constexpr uint32_t kEnd = 700;  // the clock starts at 100: ten minutes, ten lifetimes of an unreplied or UDP entry
constexpr uint8_t kUdp = 17;

wm::FlowTuple Flow(uint8_t* s, uint8_t* d, uint32_t src, uint32_t pod, uint16_t sport, bool reply) {
  uint8_t a[4] = {100, 65, uint8_t(src >> 8), uint8_t(src)}, b[4] = {100, 64, 3, uint8_t(pod)};
  std::memcpy(reply ? d : s, a, 4);
  std::memcpy(reply ? s : d, b, 4);
  return wm::FlowTuple{s, d, 4, reply ? uint16_t(53) : sport, reply ? sport : uint16_t(53), kUdp, 0};
}

}  // namespace

int main() {
  wm::Conntrack ct(kMax, kPer);
  std::atomic<uint32_t> now{100};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> created{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 2; w++)
    threads.emplace_back([&, w] {
      uint64_t x = 0x9E3779B97F4A7C15ull * uint64_t(w + 1);
      while (now.load(std::memory_order_relaxed) < kEnd) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t src = uint32_t(x >> 40) % 64, pod = 1 + uint32_t(x >> 20) % 4 / (x & 1 ? 4 : 1);  // pod 1 most
        uint16_t sport = uint16_t(x >> 48);
        uint8_t s[4], d[4];
        uint32_t t = now.load(std::memory_order_relaxed);
        if (ct.create(wm::kCtIngress, Flow(s, d, src, pod, sport, false), t, 1, pod) == wm::kCtCreated) {
          created.fetch_add(1, std::memory_order_relaxed);
          if (x & 6) ct.lookup(wm::kCtEgress, Flow(s, d, src, pod, sport, true), t);  // answered
        }
      }
    });
  threads.emplace_back([&] {
    uint64_t x = 7;
    while (!stop.load(std::memory_order_relaxed)) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      uint32_t src = uint32_t(x >> 40) % 64, pod = 1 + uint32_t(x >> 20) % 4;
      uint8_t s[4], d[4];
      uint32_t t = now.load(std::memory_order_relaxed);
      if (x & 8) ct.create(wm::kCtEgress, Flow(s, d, src, pod, uint16_t(x >> 48), true), t, 1, pod);
      ct.lookup(wm::kCtIngress, Flow(s, d, src, pod, uint16_t(x >> 48), false), t);
    }
  });
  threads.emplace_back([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      ct.gc(now.fetch_add(1, std::memory_order_relaxed) + 1);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  threads[0].join();
  threads[1].join();
  stop.store(true);
  threads[2].join();
  threads[3].join();
  int bad = 0;
  int64_t dests = 0;
  for (uint32_t pod = 1; pod <= 4; pod++) {
    wm::Conntrack::Accounting a = ct.accounting(pod);
    dests += int64_t(a.destination);
    if (a.destination > kMax / 4 + 2) bad |= 1;  // (two creating threads may each pass the bound once)
  }
  wm::Conntrack::Accounting a = ct.accounting(1);
  if (a.inbound > int64_t(kMax / 2 + 2) || dests != a.inbound) bad |= 2;
  uint64_t evicted = ct.counter(wm::Conntrack::kEvicted), dfull = ct.counter(wm::Conntrack::kDestinationFull);
  ct.gc(now.load() + 10000);
  a = ct.accounting(1);
  if (ct.size() != 0 || a.inbound != 0 || a.inbound_evictable != 0 || a.accounts != 0) bad |= 4;
  std::printf("tsan_conntrack: %llu created, %llu evicted, %llu refused at a destination's bound, bounds%s, accounts%s\n",
              (unsigned long long)created.load(), (unsigned long long)evicted, (unsigned long long)dfull,
              bad & 3 ? " BROKEN" : " held", bad & 4 ? " LEAKED" : " back to zero");
  return bad ? 1 : 0;
}
