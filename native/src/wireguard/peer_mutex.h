// Peer::mu: a mutex of one 32-bit word on a Linux futex, where std::mutex (glibc's pthread_mutex_t) is 40 bytes.
//
// Why: an agent holds a native Peer for every node of every connected cluster (16,000 at 16 x 1000), nearly all
// idle, so a peer's size is paid 16,000 times: with this lock a Peer is 120 bytes, a 128-byte malloc chunk
// instead of 160 (issue 16: 32 B per peer, ~3 B per remote endpoint at 10 per node; docs/benchmarks.md s38).
//
// The algorithm is the three-state futex mutex of Drepper's "Futexes Are Tricky" (2011, "mutex3": 0 free, 1 held,
// 2 held and maybe waited on), its unlock an exchange as in glibc's own low-level lock (lll_unlock). An uncontended
// lock is one compare-exchange and its unlock one exchange, as std::mutex's; a contended one sleeps in the kernel
// (FUTEX_WAIT), never spins, so a holder preempted on a busy core costs a waiter nothing but the wait. Not
// recursive; no ownership check (as std::mutex's unlock by another thread, undefined to do). Meets BasicLockable
// and Lockable, so std::lock_guard and std::unique_lock take it. Process-private (FUTEX_*_PRIVATE): a Peer is
// never in shared memory.
//
// Ordering: lock's successful exchange is an acquire and unlock's exchange a release, so what one holder wrote is
// seen by the next (ThreadSanitizer follows this through the atomics: tsan_peermutex.cc).
#pragma once
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

namespace wm {

class PeerMutex {
 public:
  PeerMutex() = default;
  PeerMutex(const PeerMutex&) = delete;
  PeerMutex& operator=(const PeerMutex&) = delete;

  void lock() {
    uint32_t c = kFree;
    if (state_.compare_exchange_strong(c, kHeld, std::memory_order_acquire, std::memory_order_relaxed)) return;
    // contended: mark it waited on (2) and sleep while another holds it; whoever takes it this way leaves 2, so
    // its unlock wakes the next sleeper (at worst one wake too many, never one too few)
    if (c != kWaited) c = state_.exchange(kWaited, std::memory_order_acquire);
    while (c != kFree) {
      // sleeps until a wake or a signal (EINTR) while the word is 2; returns at once (EAGAIN) if it no longer is
      futex(FUTEX_WAIT_PRIVATE, kWaited);
      c = state_.exchange(kWaited, std::memory_order_acquire);
    }
  }

  bool try_lock() {
    uint32_t c = kFree;
    return state_.compare_exchange_strong(c, kHeld, std::memory_order_acquire, std::memory_order_relaxed);
  }

  void unlock() {
    if (state_.exchange(kFree, std::memory_order_release) == kWaited) futex(FUTEX_WAKE_PRIVATE, 1);
  }

 private:
  static constexpr uint32_t kFree = 0, kHeld = 1, kWaited = 2;

  // errno is kept as it was (a failed FUTEX_WAIT sets it; std::mutex leaves it alone, and a caller may read it
  // across the lock).
  void futex(int op, uint32_t val) {
    const int saved = errno;
    // the kernel reads the word itself: an atomic of one uint32_t is that word (checked below)
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&state_), op, val, nullptr, nullptr, 0);
    errno = saved;
  }

  std::atomic<uint32_t> state_{kFree};
};

static_assert(sizeof(PeerMutex) == 4 && std::atomic<uint32_t>::is_always_lock_free, "a futex word");

}  // namespace wm
