// Internal to the L7 proxy's files: the per-worker event loop (L7Proxy::Loop) and its
// connection state. loop.cc: lifecycle, events, I/O; loop_accept.cc: accept, lookups; loop_client.cc: requests;
// loop_upstream.cc: responses, tunnels; proxy.cc: the shared state (rules, records).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "http1.h"
#include "lookup.h"
#include "proxy.h"

namespace wm {
namespace l7proxy {

constexpr size_t kMaxRequestHead = 16 * 1024;   // as Node's default --max-http-header-size
constexpr size_t kMaxResponseHead = 64 * 1024;
constexpr size_t kHighWater = 1 << 20;          // stop reading a side while the other has this much unsent
constexpr size_t kMaxPipelined = 64;            // requests awaiting responses per connection
constexpr uint32_t kIdleTimeoutS = 600;
// A request head must arrive whole within this, from its first byte (a new connection: from its admission,
// loop_accept.cc); more bytes do not extend it, so a client trickling a head (slowloris) holds a connection
// 10 s, not for ever.
constexpr uint32_t kHeadTimeoutS = 10;
// A request body may pause this long while the proxy is reading it (not while the pod holds it back).
constexpr uint32_t kBodyTimeoutS = 30;
// Connections per proxy and per source identity: one identity (a compromised pod, say) cannot take them all.
// The proxy's cap is the lower of kMaxConnections and what its descriptor limit holds (L7Proxy::start).
constexpr uint64_t kMaxConnections = 16384;
constexpr uint32_t kMaxPerIdentity = 4096;
constexpr size_t kMaxRecords = 65536;
// Original-destination lookups in flight per worker (lookup.h), and per client address: a pod opening
// connections while the agent is slow takes at most an eighth of the queue, never all of it. Beyond its share
// a connection is closed at accept (lookupsLimited); with the queue full the worker stops accepting (the
// kernel's backlog holds the rest) until an answer or a timeout (kLookupTimeoutMs) frees a slot. The queue is
// kMaxPendingLookups, or fewer if the channel's send buffer holds fewer (no CAP_NET_ADMIN and a low
// net.core.wmem_max: Loop::open), so a queued lookup is always one sent; the share is per worker.
constexpr size_t kMaxPendingLookups = kLookupChannelMessages;
constexpr uint32_t kLookupShareDivisor = 8;  // one address: 128 of 1024
// Accepts per pass: the loop then serves its other events (the lookup answers among them) before the next.
constexpr uint32_t kMaxAcceptsPerPass = 64;
// Failed accepts a connection's own error explains (ECONNABORTED, say) skipped in one pass before the loop's other events.
constexpr uint32_t kMaxAcceptSkips = 64;

inline constexpr char kH2Preface[] = "PRI * HTTP/2.0\r\n";

inline uint64_t now_us() {
  return uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
inline uint64_t wall_ms() {
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

inline std::string local_response(int status) {
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
inline const char* local_body(int status) {
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

inline uint32_t mono_s() {
  return uint32_t(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

}  // namespace l7proxy

using namespace l7proxy;  // internal header: only the proxy's files include it

class L7Proxy::Loop {
 public:
  Loop(L7Proxy* owner, int index, int lookup_fd) : p_(owner), index_(index), kfd_(lookup_fd) {}
  ~Loop() { stop(); }

  bool open(const uint8_t addr[4], uint16_t port, std::string* err);
  void start();
  void wake();
  void stop();

 private:
  static constexpr uint64_t kListener = 0, kWake = 1, kClient = 2, kUpstream = 3;
  static constexpr uint64_t kLookupTag = kClient;  // kClient with id 0: connection ids start at 1

  // An accepted connection waiting for its original destination (lookup.h), by sequence number.
  struct PendingLookup {
    int fd;
    uint8_t client[4];
    uint16_t client_port;
  };

  void add(int fd, uint32_t events, uint64_t tag);
  void run();
  void sweep();
  void accept_all();
  void ask_original(int fd, const sockaddr_in& sa);
  void take_answers();
  void expire_lookups();
  void end_lookup(std::unordered_map<uint32_t, PendingLookup>::iterator it);
  void admit(int fd, const PendingLookup& pl, const LookupAnswer& a);
  int wait_ms() const;
  void arm_listener();
  static bool accept_error_is_the_connections(int err);
  void pause_accept();
  void resume_accept();
  bool refresh_rules(Conn* c);
  void retry_waiting();
  bool read_into(int fd, Buf* b);
  bool flush(int fd, Buf* b);
  void client_event(Conn* c, uint32_t ev);
  void upstream_event(Conn* c, uint32_t ev);
  bool connect_upstream(Conn* c);
  // requests (loop_client.cc)
  void process_client(Conn* c);
  void on_request(Conn* c, const http1::Head& h);
  void append_forward_head(Conn* c, const http1::Head& h);
  void bad_request(Conn* c, int status);
  void local_close(Conn* c, int status);
  void answer_local(Conn* c);
  void complete(Conn* c, const Pending& pr, bool denied_or_local);
  // responses and tunnels (loop_upstream.cc)
  void process_upstream(Conn* c);
  void finish_response(Conn* c);
  void upstream_closed(Conn* c);
  void upstream_failed(Conn* c);
  void drop_upstream(Conn* c);
  void refuse_h2(Conn* c);
  void start_passthrough(Conn* c);
  // after every event: write, close or re-arm (loop.cc)
  void settle(Conn* c);
  void destroy_later(Conn* c);
  void close_fds(Conn* c);
  void destroy(Conn* c);

  L7Proxy* p_;
  int index_;
  int lfd_ = -1, epfd_ = -1, wfd_ = -1;
  std::atomic<bool> running_{false};
  std::thread thread_;
  std::unordered_map<uint32_t, std::unique_ptr<Conn>> conns_;
  std::vector<uint32_t> waiting_;
  uint32_t next_id_ = 1;
  uint32_t now_s_ = 0;
  bool accept_paused_ = false;  // accepting paused for want of descriptors (pause_accept)
  bool listener_armed_ = true;  // not while paused or the lookup queue is full (arm_listener)
  int kfd_ = -1;                // the lookup channel (lookup.h), the proxy process's
  uint32_t seq_ = 0;
  std::unordered_map<uint32_t, PendingLookup> lookups_;
  std::deque<std::pair<uint64_t, uint32_t>> lookup_order_;  // (deadline in µs, seq), in sending order
  std::unordered_map<uint32_t, uint32_t> lookups_per_source_;  // client address -> lookups in flight
  size_t lookup_bound_ = kMaxPendingLookups;  // what the channel holds, at most kMaxPendingLookups (open)
  uint32_t lookup_share_ = kMaxPendingLookups / kLookupShareDivisor;  // per client address
  bool exhausted_ = false;      // accept paused (pause_accept), none accepted since
};

}  // namespace wm
