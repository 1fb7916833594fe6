#include "lookup.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace wm {

LookupServer::LookupServer(OriginalFn original) : original_(std::move(original)) {}
LookupServer::~LookupServer() { stop(); }

bool LookupServer::start(std::string* err) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || wfd_ < 0) return *err = std::string("proxy lookup: ") + std::strerror(errno), false;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wfd_;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, wfd_, &ev);
  running_ = true;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "wm-proxy-lookup");
    run();
  });
  return true;
}

int LookupServer::pair(std::string* err) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!running_) return *err = "proxy lookup: not running", -1;
  if (fds_.size() >= kMaxLookupChannels) return *err = "proxy lookup: too many channels", -1;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return *err = std::string("proxy lookup socketpair: ") + std::strerror(errno), -1;
  // Both directions hold a worker's whole queue (lookup.h); sized here, with the agent's privileges, as the
  // proxy process may lack CAP_NET_ADMIN (it sizes its end again and fits its queue to what it got: loop.cc).
  for (int fd : sv) size_lookup_channel(fd, kLookupChannelMessages);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = sv[0];
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, sv[0], &ev) < 0) {
    close(sv[0]);
    close(sv[1]);
    return *err = std::string("proxy lookup epoll: ") + std::strerror(errno), -1;
  }
  fds_.insert(sv[0]);
  return sv[1];
}

void LookupServer::drop(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!fds_.erase(fd)) return;
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
}

void LookupServer::run() {
  epoll_event evs[64];
  while (running_.load(std::memory_order_relaxed)) {
    int n = epoll_wait(epfd_, evs, 64, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == wfd_) {
        uint64_t v;
        (void)!read(wfd_, &v, sizeof v);
        continue;
      }
      bool gone = false;
      for (int k = 0; k < 64; k++) {  // a burst, then the other channels get their turn
        char buf[64];               // larger than a request: an oversized message is seen as such
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (r <= 0) {  // the proxy process is gone (or closed its end)
          gone = true;
          break;
        }
        if (size_t(r) != sizeof(LookupRequest)) {
          malformed_.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        LookupRequest rq;
        std::memcpy(&rq, buf, sizeof rq);
        LookupAnswer a;
        std::memset(&a, 0, sizeof a);
        a.seq = rq.seq;
        a.found = original_(rq.client, rq.client_port, a.dst, &a.dst_port, &a.identity) ? 1 : 0;
        if (!a.found) std::memset(a.dst, 0, 4), a.dst_port = 0, a.identity = 0;
        (a.found ? answered_ : not_found_).fetch_add(1, std::memory_order_relaxed);
        // Sized for a worker's whole queue (size_lookup_channel); full only if the proxy is not reading: that
        // connection then gets no answer and times out.
        (void)!send(fd, &a, sizeof a, MSG_DONTWAIT | MSG_NOSIGNAL);
      }
      if (gone || (evs[i].events & (EPOLLHUP | EPOLLERR))) drop(fd);
    }
  }
}

void LookupServer::stop() {
  if (running_.exchange(false)) {
    uint64_t one = 1;
    (void)!write(wfd_, &one, sizeof one);
    if (thread_.joinable()) thread_.join();
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (int fd : fds_) close(fd);
  fds_.clear();
  for (int* fd : {&epfd_, &wfd_})
    if (*fd >= 0) close(*fd), *fd = -1;
}

LookupStats LookupServer::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {answered_.load(), not_found_.load(), malformed_.load(), uint64_t(fds_.size())};
}

bool send_lookup(int fd, uint32_t seq, const uint8_t client[4], uint16_t client_port) {
  if (fd < 0) return false;
  LookupRequest rq;
  std::memset(&rq, 0, sizeof rq);
  rq.seq = seq;
  std::memcpy(rq.client, client, 4);
  rq.client_port = client_port;
  return send(fd, &rq, sizeof rq, MSG_DONTWAIT | MSG_NOSIGNAL) == ssize_t(sizeof rq);
}

size_t size_lookup_channel(int fd, size_t messages) {
  auto holds = [fd]() -> size_t {
    int got = 0;
    socklen_t len = sizeof got;
    return getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) < 0 || got <= 0 ? 0 : size_t(got) / kLookupMessageCharge;
  };
  if (holds() >= messages) return holds();  // sized already (the agent's pair): SO_SNDBUF could only lower it
  int want = int(messages * kLookupMessageCharge / 2);  // the kernel doubles what it is given
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
  return holds();
}

int recv_answer(int fd, LookupAnswer* a) {
  for (;;) {
    char buf[64];  // larger than an answer: an oversized message is seen as such
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    if (n <= 0) return -1;  // the agent is gone (or fd is no socket)
    if (size_t(n) != sizeof *a) continue;
    std::memcpy(a, buf, sizeof *a);
    return 1;
  }
}

}  // namespace wm
