// Liveness of the peers JavaScript watches (src/services/health.ts states the
// rules and src/native/fakeprobe.ts mirrors them for the fake device). The TX
// thread runs round() every kRoundMs: it reads each watched peer's last probe
// answer, adds a new answer's RTT to the peer's windowed minimum
// (rtt_window.h), updates the peer's state, queues the peers whose liveness
// flipped or whose windowed-minimum RTT moved by more than 1/8 of the last
// reported value, and lists the peers to probe. JavaScript sets the watched
// set on change (watch) and drains the queue (drain): at rest its thread does
// O(1) per round.
//
// Rules: a peer is alive when it answered after watching began and no probe
// sent more than kDeadAfterMs ago is unanswered (counted from the oldest probe
// sent after the last answer, so a stall of the prober itself, which sends no
// probes, cannot make a healthy peer dead).
//
// Thread safety: mu_ guards everything; round() holds it for one pass over the
// watched peers (O(watched), ~tens of ns each), watch/drain for their own work.
#pragma once
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "rtt_window.h"

namespace wm {

class ProbeMonitor {
 public:
  static constexpr uint64_t kRoundMs = 200;
  static constexpr uint64_t kDeadAfterMs = 1000;
  // Rows (3 words each) kept for the next drain; beyond, the queue is
  // dropped and the next drain returns every watched peer (lost = true).
  static constexpr size_t kQueueMax = 65536;

  struct Reply {
    uint64_t last_ms = 0;  // monotonic ms of the last answer, 0 = none
    uint64_t rtt_us = 0;   // RTT of the last answer, µs (0 = none)
    uint64_t replies = 0;  // answers counted so far: a new count = a new sample
  };

  static bool rtt_moved(uint64_t reported, uint64_t rtt) {
    uint64_t d = rtt > reported ? rtt - reported : reported - rtt;
    return d * 8 > reported;
  }

  // Control thread: add starts (again) watching with no answer yet; remove stops.
  void watch(const std::vector<uint32_t>& add, const std::vector<uint32_t>& remove, uint64_t now);
  bool empty() const {
    std::lock_guard<std::mutex> l(mu_);
    return watched_.empty();
  }
  // Appends rows [peer, alive 0/1, rtt µs] to *rows; returns lost (rows then
  // hold every watched peer's state).
  bool drain(std::vector<uint32_t>* rows);

  // Device thread. reply(peer, Reply*) returns false for a peer that does not
  // exist (it counts as silent); *probe receives the peers to probe now.
  template <class F>
  void round(uint64_t now, F&& reply, std::vector<uint32_t>* probe) {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [peer, w] : watched_) {
      Reply r;
      if (!reply(peer, &r)) r = Reply{};
      if (w.has_unanswered && r.last_ms >= w.unanswered) w.has_unanswered = false;
      bool overdue = w.has_unanswered && now - w.unanswered > kDeadAfterMs;
      bool answered = r.last_ms >= w.since && r.last_ms != 0;  // since watching began
      bool alive = answered && !overdue;
      // Several answers between two rounds (after a stall) give one sample, the
      // newest: the others are the stall's, which the minimum would drop anyway.
      if (answered && r.replies != w.replies && r.rtt_us) {
        w.replies = r.replies;
        w.window.add(now, uint32_t(r.rtt_us > 0xffffffffu ? 0xffffffffu : r.rtt_us));
      }
      uint32_t rtt = w.window.min(now);
      if (alive != w.alive || (rtt && (!w.rtt_us || rtt_moved(w.rtt_us, rtt)))) {
        w.alive = alive;
        if (rtt) w.rtt_us = rtt;
        if (queue_.size() / 3 >= kQueueMax) lost_ = true, queue_.clear();
        if (!lost_) queue_.insert(queue_.end(), {peer, alive ? 1u : 0u, w.rtt_us});
      }
      if (!w.has_unanswered) w.has_unanswered = true, w.unanswered = now;
      probe->push_back(peer);
    }
  }

 private:
  struct Watched {
    uint64_t since = 0;
    uint64_t unanswered = 0;  // when the oldest probe sent after the last answer went out
    bool has_unanswered = false;
    bool alive = false;
    uint32_t rtt_us = 0;   // last reported
    uint64_t replies = 0;  // the answer count of the last sample taken
    RttWindow window;      // answers since watching began
  };
  mutable std::mutex mu_;
  std::unordered_map<uint32_t, Watched> watched_;
  std::vector<uint32_t> queue_;
  bool lost_ = false;
};

}  // namespace wm
