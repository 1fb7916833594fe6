// L7Proxy's shared state: workers, the rule cache per flow key, identity caps, records.
// The worker loops: loop.h.
#include "proxy.h"
#include "loop.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>

#include "http1.h"

namespace wm {

bool L7FlowKey::operator==(const L7FlowKey& o) const {
  return std::memcmp(dst, o.dst, 4) == 0 && port == o.port && identity == o.identity;
}
size_t L7FlowKeyHash::operator()(const L7FlowKey& k) const {
  uint64_t a;
  uint32_t d;
  std::memcpy(&d, k.dst, 4);
  a = (uint64_t(d) << 16 | k.port) * 0x9E3779B97F4A7C15ull;
  return size_t(a ^ (uint64_t(k.identity) * 0xC2B2AE3D27D4EB4Full) ^ (a >> 29));
}


// The connection cap the descriptor limit allows. Each connection holds two descriptors (client, upstream); the
// rest of the process (Node and libuv, the control and lookup channels, each loop's listener, epoll and
// eventfd) keeps 128 plus an eighth of the limit, or half of a small one. Node raises the soft limit to the
// hard one at startup, so this is usually kMaxConnections; at 1024 it is 384. A descriptor limit lowered
// later (prlimit) is met by pausing accept (loop.cc pause_accept), not by this cap.
static uint64_t connection_cap() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return kMaxConnections;
  uint64_t soft = rl.rlim_cur, reserve = std::min<uint64_t>(128 + soft / 8, soft / 2);
  return std::max<uint64_t>(1, std::min<uint64_t>(kMaxConnections, (soft - reserve) / 2));
}

bool L7Proxy::start(const uint8_t address[4], uint16_t port, const std::vector<int>& lookup_fds,
                    std::function<void()> notify, std::string* err) {
  std::memcpy(address_, address, 4);
  max_connections_ = connection_cap();
  notify_ = std::move(notify);
  if (lookup_fds.empty()) return *err = "proxy: no lookup channel", false;
  for (size_t i = 0; i < lookup_fds.size(); i++) {
    auto l = std::make_unique<Loop>(this, int(i), lookup_fds[i]);
    if (!l->open(address, port, err)) {
      loops_.clear();
      return false;
    }
    loops_.push_back(std::move(l));
  }
  for (auto& l : loops_) l->start();
  return true;
}

L7Proxy::L7Proxy() = default;
L7Proxy::~L7Proxy() { stop(); }

void L7Proxy::stop() {
  for (auto& l : loops_) l->stop();
  loops_.clear();
}

bool L7Proxy::lookup(const L7FlowKey& key, CacheEntry* out, uint64_t* generation) {
  bool ask = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    *generation = generation_.load(std::memory_order_acquire);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      *out = it->second;
      return true;
    }
    if (requested_.insert(key).second) {
      requests_pending_.push_back({key, *generation});
      ask = true;
    }
  }
  if (ask && notify_) notify_();
  return false;
}

void L7Proxy::take_requests(std::vector<L7RuleRequest>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  out->swap(requests_pending_);
  requests_pending_.clear();
}

void L7Proxy::set_rules(const L7RuleRequest& req, bool found, std::shared_ptr<const L7RuleSet> rules) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (req.generation != generation_.load(std::memory_order_acquire)) {
      // Answered under an older policy: ask again (the connections still wait).
      requested_.erase(req.key);
    } else {
      cache_[req.key] = CacheEntry{found, std::move(rules)};
    }
  }
  for (auto& l : loops_) l->wake();
}

uint64_t L7Proxy::invalidate() {
  uint64_t g;
  {
    std::lock_guard<std::mutex> lock(mu_);
    g = generation_.fetch_add(1, std::memory_order_acq_rel) + 1;
    cache_.clear();
    requested_.clear();
    requests_pending_.clear();
  }
  for (auto& l : loops_) l->wake();  // waiting connections ask again
  return g;
}

bool L7Proxy::acquire(uint32_t identity, uint32_t max) {
  std::lock_guard<std::mutex> lock(ids_mu_);
  uint32_t& n = per_identity_[identity];
  if (n >= max) return false;
  n++;
  return true;
}

void L7Proxy::release(uint32_t identity) {
  std::lock_guard<std::mutex> lock(ids_mu_);
  auto it = per_identity_.find(identity);
  if (it != per_identity_.end() && --it->second == 0) per_identity_.erase(it);
}

void L7Proxy::record(L7Record&& r) {
  std::lock_guard<std::mutex> lock(records_mu_);
  if (records_.size() >= kMaxRecords) {
    records_lost_++;
    return;
  }
  records_.push_back(std::move(r));
}

void L7Proxy::drain(std::vector<L7Record>* out, size_t max) {
  std::lock_guard<std::mutex> lock(records_mu_);
  if (records_.size() <= max) {
    out->swap(records_);
    records_.clear();
    return;
  }
  out->assign(std::make_move_iterator(records_.begin()), std::make_move_iterator(records_.begin() + long(max)));
  records_.erase(records_.begin(), records_.begin() + long(max));
}

L7ProxyStats L7Proxy::stats() const {
  L7ProxyStats s;
  s.connections = connections_.load();
  s.active = active_.load();
  s.requests = requests_.load();
  s.denied = denied_.load();
  s.upstream_errors = upstream_errors_.load();
  s.passthrough = passthrough_.load();
  s.bad_requests = bad_requests_.load();
  s.h2_refused = h2_refused_.load();
  s.h2c_ignored = h2c_ignored_.load();
  s.head_timeouts = head_timeouts_.load();
  s.body_timeouts = body_timeouts_.load();
  s.limited = limited_.load();
  s.fd_exhausted = fd_exhausted_.load();
  s.accept_errors = accept_errors_.load();
  s.max_connections = max_connections_;
  s.lookup_timeouts = lookup_timeouts_.load();
  s.lookups_limited = lookups_limited_.load();
  s.lookups_unsent = lookups_unsent_.load();
  std::lock_guard<std::mutex> lock(records_mu_);
  s.records_lost = records_lost_;
  return s;
}

}  // namespace wm
