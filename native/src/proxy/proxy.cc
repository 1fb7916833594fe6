#include "proxy.h"

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

namespace {

constexpr size_t kMaxRequestHead = 16 * 1024;   // as Node's default --max-http-header-size
constexpr size_t kMaxResponseHead = 64 * 1024;
constexpr size_t kHighWater = 1 << 20;          // stop reading a side while the other has this much unsent
constexpr size_t kMaxPipelined = 64;            // requests awaiting responses per connection
constexpr uint32_t kIdleTimeoutS = 600;
// A request head must arrive whole within this, from its first byte (a new connection: from accept); more
// bytes do not extend it, so a client trickling a head (slowloris) holds a connection 10 s, not for ever.
constexpr uint32_t kHeadTimeoutS = 10;
// A request body may pause this long while the proxy is reading it (not while the pod holds it back).
constexpr uint32_t kBodyTimeoutS = 30;
// Connections per proxy and per source identity: one identity (a compromised pod, say) cannot take them all.
constexpr uint64_t kMaxConnections = 16384;
constexpr uint32_t kMaxPerIdentity = 4096;
constexpr size_t kMaxRecords = 65536;

const char kH2Preface[] = "PRI * HTTP/2.0\r\n";

uint64_t now_us() {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
uint64_t wall_ms() {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// A byte queue: append at the end, consume from the front.
struct Buf {
  std::string d;
  size_t off = 0;
  size_t size() const { return d.size() - off; }
  bool empty() const { return d.size() == off; }
  const char* data() const { return d.data() + off; }
  void append(const char* p, size_t n) { d.append(p, n); }
  void append(std::string_view s) { d.append(s.data(), s.size()); }
  void consume(size_t n) {
    off += n;
    if (off == d.size()) {
      d.clear();
      off = 0;
    } else if (off > 65536 && off > d.size() / 2) {
      d.erase(0, off);
      off = 0;
    }
  }
  void clear() {
    d.clear();
    off = 0;
  }
};

std::string local_response(int status) {
  switch (status) {
    case 403: return "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 14\r\n";
    case 400: return "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n";
    case 408: return "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n";
    case 431: return "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n";
    case 501: return "HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\n";
    case 502: return "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n";
    default: return "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n";
  }
}
const char* local_body(int status) {
  return status == 403 ? "Access denied\n" : status == 502 || status == 503 ? "upstream unavailable\n" : "";
}

// One request on a connection, in order, until its response is written.
struct Pending {
  bool local;         // answered by the proxy (403, 400, ...), not forwarded
  bool record;        // an L7 record is due when it completes
  bool close_after;   // the connection closes after this response
  bool head_request;  // HEAD: the response has no body
  bool tunnel_on_2xx; // CONNECT or an upgrade: a 101 / 2xx turns the connection into a tunnel
  uint16_t status = 0;
  int32_t ref = -1;
  uint64_t t0_us = 0;
  std::string method, path, host;
};

// kHold: read nothing from the client until the front response decides (an
// upgrade or CONNECT: tunnel or back to kHead) or the connection closes.
enum class ClientState : uint8_t { kAwaitRules, kHead, kBody, kHold, kTunnel };

struct Conn {
  uint32_t id = 0;
  int cfd = -1, ufd = -1;
  uint8_t client[4];
  uint16_t client_port = 0;
  char client_ip[INET_ADDRSTRLEN] = {0};
  L7FlowKey key;
  Buf cin, cout, uin, uout;
  ClientState state = ClientState::kAwaitRules;
  bool first = true;  // no request seen yet (the HTTP/2 preface check)
  http1::BodyFramer req_body;
  bool req_forward = false;
  http1::BodyFramer resp_body;
  bool resp_in_body = false;
  std::deque<Pending> queue;
  std::shared_ptr<const L7RuleSet> rules;
  uint64_t generation = 0;
  bool connecting = false, connected = false;
  bool ceof = false, ueof = false, cshut = false, ushut = false;
  bool closing = false;  // close once cout is written
  uint32_t cmask = 0, umask = 0;
  uint32_t last_active_s = 0;
  uint32_t head_deadline_s = 0;  // 0: not waiting for a head (kHeadTimeoutS)
  uint32_t body_deadline_s = 0;  // 0: not waiting for body bytes (kBodyTimeoutS)
};

uint32_t mono_s() {
  return uint32_t(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

}  // namespace

class L7Proxy::Loop {
 public:
  Loop(L7Proxy* owner, int index) : p_(owner), index_(index) {}
  ~Loop() { stop(); }

  bool open(const uint8_t addr[4], uint16_t port, std::string* err) {
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
    return true;
  }

  void start() {
    running_ = true;
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "wm-proxy");
      run();
    });
  }

  void wake() {
    uint64_t one = 1;
    if (wfd_ >= 0) (void)!write(wfd_, &one, sizeof one);
  }

  void stop() {
    if (running_.exchange(false)) {
      wake();
      if (thread_.joinable()) thread_.join();
    }
    for (auto& kv : conns_) close_fds(kv.second.get());
    conns_.clear();
    for (int* fd : {&lfd_, &epfd_, &wfd_})
      if (*fd >= 0) close(*fd), *fd = -1;
  }

 private:
  static constexpr uint64_t kListener = 0, kWake = 1, kClient = 2, kUpstream = 3;

  void add(int fd, uint32_t events, uint64_t tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void run() {
    epoll_event evs[128];
    uint32_t last_sweep = mono_s();
    while (running_.load(std::memory_order_relaxed)) {
      int n = epoll_wait(epfd_, evs, 128, 1000);
      now_s_ = mono_s();
      for (int i = 0; i < n; i++) {
        uint64_t tag = evs[i].data.u64;
        uint32_t kind = uint32_t(tag & 3), id = uint32_t(tag >> 2);
        if (kind == kListener) {
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
      if (now_s_ != last_sweep) {
        last_sweep = now_s_;
        sweep();
      }
    }
  }

  // Once a second: idle connections close; late heads get 408; stalled bodies close.
  void sweep() {
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

  void accept_all() {
    for (;;) {
      sockaddr_in sa{};
      socklen_t len = sizeof sa;
      int fd = accept4(lfd_, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      p_->connections_.fetch_add(1, std::memory_order_relaxed);
      auto c = std::make_unique<Conn>();
      std::memcpy(c->client, &sa.sin_addr, 4);
      c->client_port = ntohs(sa.sin_port);
      if (!p_->original()(index_, c->client, c->client_port, c->key.dst, &c->key.port, &c->key.identity)) {
        close(fd);  // not a redirected flow, or the agent did not answer (fail closed)
        continue;
      }
      if (p_->active_.load(std::memory_order_relaxed) >= kMaxConnections || !p_->acquire(c->key.identity, kMaxPerIdentity)) {
        p_->limited_.fetch_add(1, std::memory_order_relaxed);
        close(fd);
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      inet_ntop(AF_INET, c->client, c->client_ip, sizeof c->client_ip);
      c->id = next_id_++;
      if (next_id_ >= (1u << 30)) next_id_ = 1;
      c->cfd = fd;
      c->last_active_s = now_s_;
      c->head_deadline_s = now_s_ + kHeadTimeoutS;
      Conn* raw = c.get();
      conns_.emplace(c->id, std::move(c));
      p_->active_.fetch_add(1, std::memory_order_relaxed);
      add(fd, 0, uint64_t(raw->id) << 2 | kClient);
      refresh_rules(raw);
      settle(raw);
    }
  }

  // Makes sure c has the current generation's rules; false: asked the agent, c waits.
  bool refresh_rules(Conn* c) {
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

  void retry_waiting() {
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

  // --- I/O ---

  // Reads what fd has (one 64 KiB read per event, level-triggered); false on EOF/error.
  bool read_into(int fd, Buf* b) {
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
  bool flush(int fd, Buf* b) {
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

  void client_event(Conn* c, uint32_t ev) {
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

  void upstream_event(Conn* c, uint32_t ev) {
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

  bool connect_upstream(Conn* c) {
    // No bind: the kernel's route to the local pod (its veth, the node's
    // source address) is the host's own path, outside the TUN and policy.
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
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

  // --- client side: requests ---

  void process_client(Conn* c) {
    while (!c->closing) {
      switch (c->state) {
        case ClientState::kAwaitRules:
        case ClientState::kHold:
          return;
        case ClientState::kTunnel:
          c->uout.append(c->cin.data(), c->cin.size());
          c->cin.clear();
          return;
        case ClientState::kBody: {
          if (c->cin.empty()) return;
          size_t n = c->req_body.feed(c->cin.data(), c->cin.size());
          if (c->req_forward) c->uout.append(c->cin.data(), n);
          c->cin.consume(n);
          if (n) c->body_deadline_s = 0;  // progress; settle() starts the clock again while it reads
          if (c->req_body.failed()) return bad_request(c, 400);
          if (!c->req_body.done()) return;
          c->state = ClientState::kHead;
          break;
        }
        case ClientState::kHead: {
          if (c->cin.empty() || c->queue.size() >= kMaxPipelined) return;
          if (c->first) {
            size_t n = std::min(c->cin.size(), sizeof kH2Preface - 1);
            if (std::memcmp(c->cin.data(), kH2Preface, n) == 0) {
              if (n < sizeof kH2Preface - 1) return;  // maybe the preface: wait for the rest
              if (!refresh_rules(c)) return;
              // An L4 allow for this flow lets everything through: HTTP/2 as well, unchecked.
              return c->rules->all() ? start_passthrough(c) : refuse_h2(c);
            }
          }
          if (!refresh_rules(c)) return;
          http1::Head h;
          int status = 0;
          std::string reason;
          http1::ParseResult r = http1::parse_request(c->cin.data(), c->cin.size(), kMaxRequestHead, &h, &status, &reason);
          if (r == http1::ParseResult::kNeedMore) {
            if (!c->head_deadline_s) c->head_deadline_s = now_s_ + kHeadTimeoutS;  // its first bytes are here
            return;
          }
          c->head_deadline_s = 0;
          if (r == http1::ParseResult::kError) return bad_request(c, status);
          c->first = false;
          on_request(c, h);
          break;
        }
      }
    }
  }

  void on_request(Conn* c, const http1::Head& h) {
    p_->requests_.fetch_add(1, std::memory_order_relaxed);
    if (h.h2c_upgrade) p_->h2c_ignored_.fetch_add(1, std::memory_order_relaxed);
    L7RuleSet::Decision d = c->rules->decide(h);
    Pending pr;
    pr.record = true;
    pr.t0_us = now_us();
    pr.method = h.method;
    pr.path = h.target;
    if (const std::string* host = h.get("host")) pr.host = *host;
    pr.head_request = h.method == "HEAD";
    pr.ref = d.ref;
    if (!d.allowed) {
      p_->denied_.fetch_add(1, std::memory_order_relaxed);
      pr.local = true;
      pr.status = 403;
      // The client waits for 100 Continue before sending the body: it never comes, so close after the 403.
      bool close_after = !h.keep_alive || h.expect_continue || h.upgrade || h.method == "CONNECT";
      pr.close_after = close_after;
      c->queue.push_back(std::move(pr));
      c->cin.consume(h.size);
      c->req_forward = false;
      c->req_body.start(h.body, h.length);
      c->state = h.body == http1::BodyKind::kNone ? ClientState::kHead : ClientState::kBody;
      if (close_after) c->state = ClientState::kHold;
      answer_local(c);
      return;
    }
    if (c->ufd < 0 && !connect_upstream(c)) {
      p_->upstream_errors_.fetch_add(1, std::memory_order_relaxed);
      pr.local = true;
      pr.status = 503;
      pr.close_after = true;
      c->queue.push_back(std::move(pr));
      c->state = ClientState::kHold;
      answer_local(c);
      return;
    }
    pr.local = false;
    pr.tunnel_on_2xx = h.upgrade || h.method == "CONNECT";
    pr.close_after = !h.keep_alive;
    append_forward_head(c, h);
    c->cin.consume(h.size);
    c->queue.push_back(std::move(pr));
    c->req_forward = true;
    c->req_body.start(h.body, h.length);
    if (c->queue.back().tunnel_on_2xx) c->state = ClientState::kHold;
    else c->state = h.body == http1::BodyKind::kNone ? ClientState::kHead : ClientState::kBody;
  }

  // The head as received but for: the request line carries the normalised target (what the rules
  // matched is what the pod serves), X-Forwarded-For is extended with the client, and an h2c
  // upgrade is dropped (Upgrade, HTTP2-Settings and Connection; the connection's persistence is
  // restated), so the pod answers in HTTP/1.1.
  void append_forward_head(Conn* c, const http1::Head& h) {
    std::string_view raw(c->cin.data(), h.size);
    while (raw.size() >= 2 && raw[0] == '\r' && raw[1] == '\n') raw.remove_prefix(2);
    std::string xff;
    for (const auto& f : h.headers)
      if (f.first == "x-forwarded-for") xff += (xff.empty() ? "" : ", ") + f.second;
    xff += (xff.empty() ? "" : ", ") + std::string(c->client_ip);
    raw.remove_suffix(2);  // the empty line
    size_t i = raw.find("\r\n") + 2;  // past the request line
    c->uout.append(h.method);
    c->uout.append(" ");
    c->uout.append(h.target);
    c->uout.append(h.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    auto named = [](std::string_view line, std::string_view name) {
      return line.size() > name.size() && line[name.size()] == ':' && strncasecmp(line.data(), name.data(), name.size()) == 0;
    };
    while (i < raw.size()) {
      size_t e = raw.find("\r\n", i);
      std::string_view line = raw.substr(i, e + 2 - i);
      i = e + 2;
      if (named(line, "x-forwarded-for")) continue;
      if (h.h2c_upgrade && (named(line, "upgrade") || named(line, "http2-settings") || named(line, "connection"))) continue;
      c->uout.append(line);
    }
    if (h.h2c_upgrade) {
      if (!h.keep_alive) c->uout.append("connection: close\r\n");
      else if (h.minor == 0) c->uout.append("connection: keep-alive\r\n");
    }
    c->uout.append("x-forwarded-for: ");
    c->uout.append(xff);
    c->uout.append("\r\n\r\n");
  }

  void bad_request(Conn* c, int status) {
    p_->bad_requests_.fetch_add(1, std::memory_order_relaxed);
    local_close(c, status);
  }

  // Answers status after the responses already due, then closes; the client is not read any more.
  void local_close(Conn* c, int status) {
    Pending pr;
    pr.local = true;
    pr.record = false;
    pr.status = uint16_t(status);
    pr.close_after = true;
    c->queue.push_back(std::move(pr));
    c->state = ClientState::kHold;
    c->cin.clear();
    answer_local(c);
  }

  // Writes the local answers at the front of the queue (those whose turn it is).
  void answer_local(Conn* c) {
    while (!c->queue.empty() && c->queue.front().local && !c->closing) {
      Pending& pr = c->queue.front();
      c->cout.append(local_response(pr.status));
      if (pr.close_after) c->cout.append("connection: close\r\n");
      c->cout.append("\r\n");
      c->cout.append(std::string_view(local_body(pr.status)));
      complete(c, pr, true);
      bool close_after = pr.close_after;
      c->queue.pop_front();
      if (close_after) c->closing = true;
    }
  }

  void complete(Conn* c, const Pending& pr, bool denied_or_local) {
    if (!pr.record) return;
    L7Record r;
    r.time_ms = wall_ms();
    std::memcpy(r.client, c->client, 4);
    r.client_port = c->client_port;
    r.identity = c->key.identity;
    std::memcpy(r.dst, c->key.dst, 4);
    r.dst_port = c->key.port;
    r.denied = denied_or_local && pr.status == 403;
    r.status = pr.status;
    r.latency_us = uint32_t(std::min<uint64_t>(now_us() - pr.t0_us, UINT32_MAX));
    r.ref = pr.ref;
    r.generation = c->generation;
    r.method = pr.method;
    r.path = pr.path;
    r.host = pr.host;
    p_->record(std::move(r));
  }

  // --- upstream side: responses ---

  void process_upstream(Conn* c) {
    while (!c->closing) {
      if (c->state == ClientState::kTunnel) {
        c->cout.append(c->uin.data(), c->uin.size());
        c->uin.clear();
        return;
      }
      if (c->resp_in_body) {
        if (c->uin.empty()) {
          if (c->ueof) {
            c->resp_body.eof();
            if (c->resp_body.done()) {
              c->resp_in_body = false;
              finish_response(c);
              c->closing = true;  // the body ran to the server's close
            } else {
              return upstream_failed(c);
            }
          }
          return;
        }
        size_t n = c->resp_body.feed(c->uin.data(), c->uin.size());
        c->cout.append(c->uin.data(), n);
        c->uin.consume(n);
        if (c->resp_body.failed()) return upstream_failed(c);
        if (!c->resp_body.done()) continue;
        c->resp_in_body = false;
        finish_response(c);
        continue;
      }
      if (c->uin.empty()) {
        if (c->ueof) upstream_closed(c);
        return;
      }
      if (c->queue.empty() || c->queue.front().local) return upstream_failed(c);  // a response nobody asked for
      Pending& pr = c->queue.front();
      http1::Head h;
      std::string reason;
      http1::ParseResult r = http1::parse_response(c->uin.data(), c->uin.size(), kMaxResponseHead,
                                                   pr.head_request ? "HEAD" : pr.method, &h, &reason);
      if (r == http1::ParseResult::kNeedMore) {
        if (c->ueof) return upstream_failed(c);
        return;
      }
      if (r == http1::ParseResult::kError) return upstream_failed(c);
      // Switching protocols nobody asked to switch to (an h2c upgrade the proxy dropped, say): what
      // follows would not be HTTP/1.1 the proxy can frame, so the connection ends here.
      if (h.status == 101 && !pr.tunnel_on_2xx) return upstream_failed(c);
      c->cout.append(c->uin.data(), h.size);
      c->uin.consume(h.size);
      if (h.status < 200 && h.status != 101) continue;  // interim (100 Continue): the final response follows
      pr.status = uint16_t(h.status);
      if (pr.tunnel_on_2xx && (h.status == 101 || (pr.method == "CONNECT" && h.status < 300))) {
        complete(c, pr, false);
        c->queue.pop_front();
        c->state = ClientState::kTunnel;
        p_->passthrough_.fetch_add(1, std::memory_order_relaxed);
        c->uout.append(c->cin.data(), c->cin.size());
        c->cin.clear();
        continue;
      }
      if (!h.keep_alive) pr.close_after = true;
      c->resp_body.start(h.body, h.length);
      if (h.body == http1::BodyKind::kNone) finish_response(c);
      else c->resp_in_body = true;
    }
  }

  void finish_response(Conn* c) {
    Pending pr = std::move(c->queue.front());
    c->queue.pop_front();
    complete(c, pr, false);
    if (pr.close_after) {
      c->closing = true;
      return;
    }
    if (pr.tunnel_on_2xx && c->state == ClientState::kHold) c->state = ClientState::kHead;  // upgrade refused
    answer_local(c);
    process_client(c);  // pipelined requests held back by the queue limit
  }

  // The pod closed its side between responses.
  void upstream_closed(Conn* c) {
    bool waiting = false;
    for (const Pending& pr : c->queue) waiting |= !pr.local;
    if (waiting) return upstream_failed(c);
    drop_upstream(c);  // idle keep-alive closed: the next allowed request connects again
  }

  void upstream_failed(Conn* c) {
    p_->upstream_errors_.fetch_add(1, std::memory_order_relaxed);
    drop_upstream(c);
    if (c->state == ClientState::kTunnel) {
      c->closing = true;
      return;
    }
    // The front request's response never started: answer it; the rest are lost with the connection.
    if (!c->queue.empty() && !c->queue.front().local && !c->resp_in_body && c->queue.front().status == 0) {
      Pending& pr = c->queue.front();
      pr.local = true;
      pr.status = uint16_t(c->connected ? 502 : 503);
      pr.close_after = true;
      answer_local(c);
    }
    c->resp_in_body = false;
    c->closing = true;
  }

  void drop_upstream(Conn* c) {
    if (c->ufd >= 0) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, c->ufd, nullptr);
      close(c->ufd);
    }
    c->ufd = -1;
    c->connecting = c->connected = false;
    c->ueof = false;
    c->uin.clear();
    c->uout.clear();
  }

  // HTTP/2 with prior knowledge on a flow with HTTP rules: its requests would be frames the proxy
  // does not decide, so it is refused, never tunnelled: an empty SETTINGS (the server preface) and
  // GOAWAY with HTTP_1_1_REQUIRED (RFC 9113 7; curl, for one, then says so), then close.
  void refuse_h2(Conn* c) {
    p_->h2_refused_.fetch_add(1, std::memory_order_relaxed);
    static const char kFrames[] = {0, 0, 0, 4, 0, 0, 0, 0, 0,                    // SETTINGS, empty
                                   0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd};  // GOAWAY 0, 0xd
    c->first = false;
    c->cin.clear();
    c->cout.append(kFrames, sizeof kFrames);
    c->closing = true;
  }

  void start_passthrough(Conn* c) {
    p_->passthrough_.fetch_add(1, std::memory_order_relaxed);
    c->first = false;
    if (c->ufd < 0 && !connect_upstream(c)) {
      p_->upstream_errors_.fetch_add(1, std::memory_order_relaxed);
      c->closing = true;
      return;
    }
    c->state = ClientState::kTunnel;
    c->uout.append(c->cin.data(), c->cin.size());
    c->cin.clear();
  }

  // --- after every event: write, close or re-arm ---

  void settle(Conn* c) {
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

  void destroy_later(Conn* c) {
    c->closing = true;
    c->cout.clear();
  }

  void close_fds(Conn* c) {
    if (c->cfd >= 0) close(c->cfd);
    if (c->ufd >= 0) close(c->ufd);
    c->cfd = c->ufd = -1;
  }

  void destroy(Conn* c) {
    if (c->cfd >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, c->cfd, nullptr);
    if (c->ufd >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, c->ufd, nullptr);
    close_fds(c);
    p_->active_.fetch_sub(1, std::memory_order_relaxed);
    p_->release(c->key.identity);
    conns_.erase(c->id);
  }

  L7Proxy* p_;
  int index_;
  int lfd_ = -1, epfd_ = -1, wfd_ = -1;
  std::atomic<bool> running_{false};
  std::thread thread_;
  std::unordered_map<uint32_t, std::unique_ptr<Conn>> conns_;
  std::vector<uint32_t> waiting_;
  uint32_t next_id_ = 1;
  uint32_t now_s_ = 0;
};

bool L7Proxy::start(const uint8_t address[4], uint16_t port, int workers, OriginalFn original,
                    std::function<void()> notify, std::string* err) {
  std::memcpy(address_, address, 4);
  original_ = std::move(original);
  notify_ = std::move(notify);
  if (workers < 1) workers = 1;
  for (int i = 0; i < workers; i++) {
    auto l = std::make_unique<Loop>(this, i);
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
  std::lock_guard<std::mutex> lock(records_mu_);
  s.records_lost = records_lost_;
  return s;
}

}  // namespace wm
