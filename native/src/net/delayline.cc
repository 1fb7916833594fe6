#include "delayline.h"

#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <deque>
#include <vector>

namespace wm {

namespace {
uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}
}  // namespace

bool DelayLine::start(const std::string& tun_name, uint32_t delay_ms, std::string* err) {
  if (!tun_open(tun_name, false, &tun_, err)) return false;
  delay_ns_ = uint64_t(delay_ms) * 1000000ull;
  running_.store(true);
  thread_ = std::thread([this] { loop(); });
  return true;
}

void DelayLine::stop() {
  if (running_.exchange(false) && thread_.joinable()) thread_.join();
  if (tun_.fd >= 0) close(tun_.fd);
  tun_.fd = -1;
}

void DelayLine::loop() {
  struct Held {
    uint64_t due;
    std::vector<uint8_t> pkt;
  };
  std::deque<Held> queue;  // due times only grow: a FIFO keeps packet order
  std::vector<uint8_t> buf(65536);
  while (running_.load(std::memory_order_relaxed)) {
    uint64_t now = now_ns();
    while (!queue.empty() && queue.front().due <= now) {
      if (write(tun_.fd, queue.front().pkt.data(), queue.front().pkt.size()) > 0)
        packets_.fetch_add(1, std::memory_order_relaxed);
      queue.pop_front();
    }
    int timeout = 100;
    if (!queue.empty()) timeout = int((queue.front().due - now) / 1000000ull);
    pollfd pfd{tun_.fd, POLLIN, 0};
    if (poll(&pfd, 1, timeout) <= 0) continue;
    for (;;) {
      ssize_t n = read(tun_.fd, buf.data(), buf.size());
      if (n <= 0) break;
      queue.push_back(Held{now_ns() + delay_ns_, std::vector<uint8_t>(buf.begin(), buf.begin() + n)});
    }
  }
}

}  // namespace wm
