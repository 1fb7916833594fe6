// PeerMutex (wireguard/peer_mutex.h) under ThreadSanitizer: six threads (more than this machine's two cores) take
// one lock around plain (non-atomic) reads and writes of shared words, by lock() and by try_lock(), holders
// yielding inside, so holders get preempted while others sleep in FUTEX_WAIT. TSan reports a race if a holder's
// writes were not ordered before the next holder's reads; the test itself fails if a holder found another inside
// (a plain `inside` count not 0 on entry) or an increment was lost.
// Built and run by run.sh (clang-14 -fsanitize=thread); exit status 1 on an overlap or a lost increment, 66
// (TSan's) on a race.
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "wireguard/peer_mutex.h"

int main() {
  wm::PeerMutex mu;
  uint64_t counter = 0, inside = 0, overlaps = 0;
  constexpr int kThreads = 6, kRounds = 20000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kRounds; i++) {
        if ((i + t) % 7 == 0) {
          while (!mu.try_lock()) std::this_thread::yield();
        } else {
          mu.lock();
        }
        if (inside++ != 0) overlaps++;
        uint64_t seen = counter;
        if (i % 64 == 0) std::this_thread::yield();  // a holder off its core while the others queue
        counter = seen + 1;
        inside--;
        mu.unlock();
      }
      std::lock_guard<wm::PeerMutex> g(mu);  // BasicLockable: what the device's sites use
      counter += 0;
    });
  for (auto& t : ts) t.join();
  const uint64_t want = uint64_t(kThreads) * kRounds;
  std::printf("tsan_peermutex: %d threads, %llu increments (want %llu), %llu overlaps\n", kThreads,
              (unsigned long long)counter, (unsigned long long)want, (unsigned long long)overlaps);
  return counter == want && overlaps == 0 ? 0 : 1;
}
