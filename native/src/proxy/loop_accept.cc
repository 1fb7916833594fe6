// The L7 proxy's worker loop: accepting, and each accepted connection's original destination asked of the agent
// without blocking the loop (lookup.h; the bounds in loop.h), then admitted under the connection caps.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "loop.h"

namespace wm {

void L7Proxy::Loop::accept_all() {
  // A connection's own errors are skipped, but at most kMaxAcceptSkips a call: one that keeps coming back would
  // hold the thread here, its connections starved and stop() waiting on join. The listener is level-triggered,
  // so what is left is tried again after the loop's other events (kMaxAcceptsPerPass: the answers among them).
  uint32_t skipped = 0;
  for (uint32_t accepted = 0; accepted < kMaxAcceptsPerPass; accepted++) {
    if (lookups_.size() >= lookup_bound_) return arm_listener();  // disarmed until one ends
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    int fd = accept4(lfd_, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (!accept_error_is_the_connections(errno)) return pause_accept();
      p_->accept_errors_.fetch_add(1, std::memory_order_relaxed);
      if (++skipped >= kMaxAcceptSkips) return;
      continue;  // that connection is gone; the next may be fine
    }
    exhausted_ = false;
    p_->connections_.fetch_add(1, std::memory_order_relaxed);
    ask_original(fd, sa);
  }
}

// Asks the agent where fd's flow was headed (lookup.h) and parks it until the answer (take_answers) or
// kLookupTimeoutMs (expire_lookups); the loop serves everything else meanwhile. Over its address's share of
// the queue, or with the connection cap taken by admitted and parked connections together (a parked one holds
// a descriptor too), or with the channel gone (or full: not expected, it is sized for the queue), the
// connection is closed at once (fails closed).
void L7Proxy::Loop::ask_original(int fd, const sockaddr_in& sa) {
  uint32_t source;
  std::memcpy(&source, &sa.sin_addr, 4);
  auto share = lookups_per_source_.find(source);
  if (share != lookups_per_source_.end() && share->second >= lookup_share_) {
    p_->lookups_limited_.fetch_add(1, std::memory_order_relaxed);
    close(fd);
    return;
  }
  if (p_->active_.load(std::memory_order_relaxed) + p_->parked_.load(std::memory_order_relaxed) >= p_->max_connections()) {
    p_->limited_.fetch_add(1, std::memory_order_relaxed);
    close(fd);
    return;
  }
  PendingLookup pl{fd, {0, 0, 0, 0}, ntohs(sa.sin_port)};
  std::memcpy(pl.client, &sa.sin_addr, 4);
  uint32_t seq = ++seq_;
  if (!send_lookup(kfd_, seq, pl.client, pl.client_port)) {
    p_->lookups_unsent_.fetch_add(1, std::memory_order_relaxed);
    close(fd);  // no lookup channel, or the agent is not reading it
    return;
  }
  lookups_.emplace(seq, pl);
  p_->parked_.fetch_add(1, std::memory_order_relaxed);
  lookup_order_.emplace_back(now_us() + uint64_t(kLookupTimeoutMs) * 1000, seq);
  lookups_per_source_[source]++;
}

// The agent's answers: each ends its lookup (one for a request already timed out is skipped).
void L7Proxy::Loop::take_answers() {
  LookupAnswer a;
  int r;
  while ((r = recv_answer(kfd_, &a)) == 1) {
    auto it = lookups_.find(a.seq);
    if (it == lookups_.end()) continue;
    PendingLookup pl = it->second;
    end_lookup(it);
    if (!a.found) {
      close(pl.fd);  // not a redirected flow (fails closed)
      continue;
    }
    admit(pl.fd, pl, a);
  }
  if (r < 0 && kfd_ >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, kfd_, nullptr);  // the agent is gone: waits time out
}

// Lookups past kLookupTimeoutMs: their connections close (fails closed). Answered ones leave the order here.
void L7Proxy::Loop::expire_lookups() {
  uint64_t now = now_us();
  while (!lookup_order_.empty()) {
    auto [deadline, seq] = lookup_order_.front();
    auto it = lookups_.find(seq);
    if (it != lookups_.end()) {
      if (deadline > now) return;
      p_->lookup_timeouts_.fetch_add(1, std::memory_order_relaxed);
      close(it->second.fd);
      end_lookup(it);
    }
    lookup_order_.pop_front();
  }
}

void L7Proxy::Loop::end_lookup(std::unordered_map<uint32_t, PendingLookup>::iterator it) {
  uint32_t source;
  std::memcpy(&source, it->second.client, 4);
  auto share = lookups_per_source_.find(source);
  if (share != lookups_per_source_.end() && --share->second == 0) lookups_per_source_.erase(share);
  lookups_.erase(it);
  p_->parked_.fetch_sub(1, std::memory_order_relaxed);
  arm_listener();  // a slot is free
}

// The epoll wait: the next lookup deadline, or the 1 s sweep.
int L7Proxy::Loop::wait_ms() const {
  if (lookup_order_.empty()) return 1000;
  uint64_t now = now_us(), deadline = lookup_order_.front().first;
  return deadline <= now ? 0 : int(std::min<uint64_t>(1000, (deadline - now) / 1000 + 1));
}

// A redirected flow, its original destination and identity known: capped, then served.
void L7Proxy::Loop::admit(int fd, const PendingLookup& pl, const LookupAnswer& a) {
  auto c = std::make_unique<Conn>();
  std::memcpy(c->client, pl.client, 4);
  c->client_port = pl.client_port;
  std::memcpy(c->key.dst, a.dst, 4);
  c->key.port = a.dst_port;
  c->key.identity = a.identity;
  if (p_->active_.load(std::memory_order_relaxed) >= p_->max_connections() || !p_->acquire(c->key.identity, kMaxPerIdentity)) {
    p_->limited_.fetch_add(1, std::memory_order_relaxed);
    close(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  inet_ntop(AF_INET, c->client, c->client_ip, sizeof c->client_ip);
  c->id = next_id_++;
  if (next_id_ >= (1u << 30)) next_id_ = 1;
  c->cfd = fd;
  c->last_active_s = now_s_;
  c->head_deadline_s = now_s_ + kHeadTimeoutS;  // from here: the wait for the lookup was ours
  Conn* raw = c.get();
  conns_.emplace(c->id, std::move(c));
  p_->active_.fetch_add(1, std::memory_order_relaxed);
  add(fd, 0, uint64_t(raw->id) << 2 | kClient);
  refresh_rules(raw);
  settle(raw);
}

// accept(2) on Linux hands a new connection's pending network error to the caller (man accept: "treat them
// like EAGAIN by retrying"); the listener itself is fine. Not EPERM or EACCES: on Linux they come from seccomp
// or an LSM before the connection leaves the queue, so they repeat; they pause accept like EMFILE.
bool L7Proxy::Loop::accept_error_is_the_connections(int err) {
  switch (err) {
    case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN: case ENONET:
    case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

// No descriptor (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM) for the next connection, or accept refused
// (EPERM, EACCES: seccomp, an LSM), or the listener broken (EBADF, EINVAL: not expected). The listener is
// level-triggered: left armed it fires again at once and the loop spins on the same failure (a core at 100 %).
// It is disarmed until a descriptor closes on this worker (destroy, drop_upstream) or its next sweep (1 s):
// then one accept is tried again. A close on another worker does not wake this one (its sweep does, 1 s).
// An episode (failures with no accept between) is counted once in fd_exhausted, for the agent's log.
void L7Proxy::Loop::pause_accept() {
  p_->accept_errors_.fetch_add(1, std::memory_order_relaxed);
  if (!exhausted_) p_->fd_exhausted_.fetch_add(1, std::memory_order_relaxed);
  exhausted_ = true;
  accept_paused_ = true;
  arm_listener();
}

void L7Proxy::Loop::resume_accept() {
  if (!accept_paused_) return;
  accept_paused_ = false;
  arm_listener();
}

// The listener is armed unless accepting is paused or the lookup queue is full (level-triggered: armed with a
// connection waiting, it fires again at once).
void L7Proxy::Loop::arm_listener() {
  bool want = !accept_paused_ && lookups_.size() < lookup_bound_;
  if (want == listener_armed_) return;
  epoll_event ev{};
  ev.events = want ? uint32_t(EPOLLIN) : 0u;
  ev.data.u64 = kListener;
  epoll_ctl(epfd_, EPOLL_CTL_MOD, lfd_, &ev);
  listener_armed_ = want;
}

}  // namespace wm
