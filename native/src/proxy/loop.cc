// The L7 proxy's worker loop: lifecycle, epoll events, rules, I/O (loop.h); accepting: loop_accept.cc.
#include "loop.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <algorithm>
#include <cstring>
#include <deque>

namespace wm {

bool L7Proxy::Loop::open(const uint8_t addr[4], uint16_t port, std::string* err) {
  lfd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd_ < 0) return *err = std::string("proxy socket: ") + std::strerror(errno), false;
  int one = 1;
  setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(lfd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  std::memcpy(&sa.sin_addr, addr, 4);
  sa.sin_port = htons(port);
  if (bind(lfd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || listen(lfd_, 1024) < 0)
    return *err = std::string("proxy listen: ") + std::strerror(errno), false;
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || wfd_ < 0) return *err = std::string("proxy epoll: ") + std::strerror(errno), false;
  add(lfd_, EPOLLIN, kListener);
  add(wfd_, EPOLLIN, kWake);
  if (kfd_ >= 0) add(kfd_, EPOLLIN, kLookupTag);  // fails for a descriptor that is no socket: sends fail then too
  // The queue never outgrows the channel: a lookup queued is a lookup sent (loop.h)
  size_t holds = kfd_ >= 0 ? size_lookup_channel(kfd_, kMaxPendingLookups) : 0;
  lookup_bound_ = std::max<size_t>(1, std::min(kMaxPendingLookups, holds));
  lookup_share_ = uint32_t(std::max<size_t>(1, lookup_bound_ / kLookupShareDivisor));
  return true;
}

void L7Proxy::Loop::start() {
  running_ = true;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "wm-proxy");
    run();
  });
}

void L7Proxy::Loop::wake() {
  uint64_t one = 1;
  if (wfd_ >= 0) (void)!write(wfd_, &one, sizeof one);
}

void L7Proxy::Loop::stop() {
  if (running_.exchange(false)) {
    wake();
    if (thread_.joinable()) thread_.join();
  }
  for (auto& kv : conns_) close_fds(kv.second.get());
  conns_.clear();
  for (auto& kv : lookups_) close(kv.second.fd);
  p_->parked_.fetch_sub(lookups_.size(), std::memory_order_relaxed);
  lookups_.clear();
  lookup_order_.clear();
  lookups_per_source_.clear();
  for (int* fd : {&lfd_, &epfd_, &wfd_})
    if (*fd >= 0) close(*fd), *fd = -1;
}

void L7Proxy::Loop::add(int fd, uint32_t events, uint64_t tag) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
}

void L7Proxy::Loop::run() {
  epoll_event evs[128];
  uint32_t last_sweep = mono_s();
  while (running_.load(std::memory_order_relaxed)) {
    int n = epoll_wait(epfd_, evs, 128, wait_ms());
    now_s_ = mono_s();
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      uint32_t kind = uint32_t(tag & 3), id = uint32_t(tag >> 2);
      if (tag == kLookupTag) {
        take_answers();
      } else if (kind == kListener) {
        accept_all();
      } else if (kind == kWake) {
        uint64_t v;
        (void)!read(wfd_, &v, sizeof v);
        retry_waiting();
      } else {
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        Conn* c = it->second.get();
        if (kind == kClient) client_event(c, evs[i].events);
        else upstream_event(c, evs[i].events);
        settle(c);
      }
    }
    expire_lookups();
    if (now_s_ != last_sweep) {
      last_sweep = now_s_;
      sweep();
    }
  }
}

// Once a second: a paused listener re-arms; idle connections close; late heads get 408; stalled bodies close.
void L7Proxy::Loop::sweep() {
  resume_accept();
  std::vector<uint32_t> idle, head, body;
  for (auto& kv : conns_) {
    const Conn* c = kv.second.get();
    if (now_s_ - c->last_active_s > kIdleTimeoutS) idle.push_back(c->id);
    // only while the proxy reads: a head held back by a slow pod or agent is not the client's doing
    else if (c->head_deadline_s && now_s_ >= c->head_deadline_s && !c->closing && (c->cmask & EPOLLIN)) head.push_back(c->id);
    else if (c->body_deadline_s && now_s_ >= c->body_deadline_s && !c->closing) body.push_back(c->id);
  }
  for (uint32_t id : idle) destroy(conns_[id].get());
  for (uint32_t id : head) {
    Conn* c = conns_[id].get();
    p_->head_timeouts_.fetch_add(1, std::memory_order_relaxed);
    c->head_deadline_s = 0;
    if (c->state == ClientState::kHead && !c->cin.empty()) {
      local_close(c, 408);  // in order, after the responses before it
      settle(c);
    } else {
      destroy(c);  // nothing of a request came: no answer owed
    }
  }
  for (uint32_t id : body) {
    p_->body_timeouts_.fetch_add(1, std::memory_order_relaxed);
    destroy(conns_[id].get());  // mid-body: the pod has part of it, nothing sensible to answer
  }
}

// Makes sure c has the current generation's rules; false: asked the agent, c waits.
bool L7Proxy::Loop::refresh_rules(Conn* c) {
  if (c->rules && c->generation == p_->generation()) return true;
  L7Proxy::CacheEntry e;
  uint64_t gen;
  if (!p_->lookup(c->key, &e, &gen)) {
    c->state = ClientState::kAwaitRules;
    waiting_.push_back(c->id);
    return false;
  }
  if (!e.found) {
    c->closing = true;  // its endpoint is gone
    c->cout.clear();
    c->state = ClientState::kAwaitRules;
    return false;
  }
  c->rules = e.rules;
  c->generation = gen;
  if (c->state == ClientState::kAwaitRules) {
    c->state = ClientState::kHead;
    if (c->head_deadline_s) c->head_deadline_s = now_s_ + kHeadTimeoutS;  // the wait for rules was ours
  }
  return true;
}

void L7Proxy::Loop::retry_waiting() {
  std::vector<uint32_t> w;
  w.swap(waiting_);
  for (uint32_t id : w) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    Conn* c = it->second.get();
    if (c->state != ClientState::kAwaitRules || c->closing) continue;
    if (refresh_rules(c)) process_client(c);
    settle(c);
  }
}

// Reads what fd has (one 64 KiB read per event, level-triggered); false on EOF/error.
bool L7Proxy::Loop::read_into(int fd, Buf* b) {
  char tmp[65536];
  ssize_t n = read(fd, tmp, sizeof tmp);
  if (n > 0) {
    b->append(tmp, size_t(n));
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  return false;
}

// Writes what it can; false on a broken connection.
bool L7Proxy::Loop::flush(int fd, Buf* b) {
  while (!b->empty()) {
    ssize_t n = send(fd, b->data(), b->size(), MSG_NOSIGNAL);
    if (n > 0) {
      b->consume(size_t(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
  return true;
}

void L7Proxy::Loop::client_event(Conn* c, uint32_t ev) {
  c->last_active_s = now_s_;
  if (ev & EPOLLOUT) {
    if (!flush(c->cfd, &c->cout)) return destroy_later(c);
  }
  if (ev & EPOLLERR) return destroy_later(c);  // reset: nothing more can be written either
  if (ev & (EPOLLIN | EPOLLHUP)) {
    if (!read_into(c->cfd, &c->cin)) c->ceof = true;
    process_client(c);
  }
}

void L7Proxy::Loop::upstream_event(Conn* c, uint32_t ev) {
  c->last_active_s = now_s_;
  if (c->connecting && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int soerr = 0;
    socklen_t l = sizeof soerr;
    getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &soerr, &l);
    c->connecting = false;
    if (soerr != 0) return upstream_failed(c);
    c->connected = true;
  }
  if (ev & EPOLLERR) return upstream_failed(c);
  if (ev & EPOLLOUT) {
    if (!flush(c->ufd, &c->uout)) return upstream_failed(c);
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    if (!read_into(c->ufd, &c->uin)) c->ueof = true;
    process_upstream(c);
  }
}

bool L7Proxy::Loop::connect_upstream(Conn* c) {
  // No bind: the kernel's route to the local pod (its veth, the node's
  // source address) is the host's own path, outside the TUN and policy.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    // accept took the last descriptor: this request gets its 503, and no more clients are taken on until
    // descriptors are free (counted as an accept failure: fdExhausted, acceptErrors).
    if (errno == EMFILE || errno == ENFILE) pause_accept();
    return false;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  std::memcpy(&sa.sin_addr, c->key.dst, 4);
  sa.sin_port = htons(c->key.port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 && errno != EINPROGRESS) {
    close(fd);
    return false;
  }
  c->ufd = fd;
  c->connecting = true;
  c->connected = false;
  c->ueof = c->ushut = false;
  c->umask = 0;
  add(fd, 0, uint64_t(c->id) << 2 | kUpstream);
  return true;
}

void L7Proxy::Loop::settle(Conn* c) {
  if (c->cfd < 0) return;
  if (!c->cout.empty() && !flush(c->cfd, &c->cout)) return destroy(c);
  if (c->ufd >= 0 && c->connected && !c->uout.empty() && !flush(c->ufd, &c->uout)) {
    upstream_failed(c);
    if (!c->cout.empty() && !flush(c->cfd, &c->cout)) return destroy(c);
  }
  if (c->closing) {
    if (c->cout.empty()) return destroy(c);
  } else if (c->state == ClientState::kTunnel) {
    if (c->ceof && c->uout.empty() && c->ufd >= 0 && !c->ushut) {
      shutdown(c->ufd, SHUT_WR);
      c->ushut = true;
    }
    if (c->ueof && c->cout.empty() && !c->cshut) {
      shutdown(c->cfd, SHUT_WR);
      c->cshut = true;
    }
    if (c->ceof && c->ueof && c->cout.empty() && c->uout.empty()) return destroy(c);
  } else if (c->ceof && c->queue.empty() && c->cout.empty()) {
    return destroy(c);  // the client is done (an unfinished request goes with it)
  }
  uint32_t cm = 0, um = 0;
  bool reading = c->state != ClientState::kAwaitRules && c->state != ClientState::kHold;
  // cout bounds the proxy's own answers too: a client pipelining denied requests without reading
  // the 403s is not read either, rather than growing cout for ever.
  if (!c->ceof && !c->closing && (reading || c->state == ClientState::kTunnel) && c->uout.size() < kHighWater &&
      c->queue.size() < kMaxPipelined && (c->state == ClientState::kTunnel || c->cout.size() < kHighWater))
    cm |= EPOLLIN;
  if (c->state == ClientState::kBody && (cm & EPOLLIN)) {
    if (!c->body_deadline_s) c->body_deadline_s = now_s_ + kBodyTimeoutS;
  } else {
    c->body_deadline_s = 0;  // not waiting for the client's body bytes (done, or the pod is slow)
  }
  if (!c->cout.empty()) cm |= EPOLLOUT;
  if (c->ufd >= 0) {
    if (c->connecting || !c->uout.empty()) um |= EPOLLOUT;
    if (c->connected && !c->ueof && c->cout.size() < kHighWater) um |= EPOLLIN;
  }
  if (cm != c->cmask) {
    epoll_event ev{};
    ev.events = cm;
    ev.data.u64 = uint64_t(c->id) << 2 | kClient;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, c->cfd, &ev);
    c->cmask = cm;
  }
  if (c->ufd >= 0 && um != c->umask) {
    epoll_event ev{};
    ev.events = um;
    ev.data.u64 = uint64_t(c->id) << 2 | kUpstream;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, c->ufd, &ev);
    c->umask = um;
  }
}

void L7Proxy::Loop::destroy_later(Conn* c) {
  c->closing = true;
  c->cout.clear();
}

void L7Proxy::Loop::close_fds(Conn* c) {
  if (c->cfd >= 0) close(c->cfd);
  if (c->ufd >= 0) close(c->ufd);
  c->cfd = c->ufd = -1;
}

void L7Proxy::Loop::destroy(Conn* c) {
  if (c->cfd >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, c->cfd, nullptr);
  if (c->ufd >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, c->ufd, nullptr);
  close_fds(c);
  p_->active_.fetch_sub(1, std::memory_order_relaxed);
  p_->release(c->key.identity);
  conns_.erase(c->id);
  resume_accept();  // its descriptors are free
}

}  // namespace wm
