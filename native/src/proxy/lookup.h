// The original-destination lookup between the agent and its L7 proxy process.
//
// The data path DNATs a redirected flow to <router address>:<proxy port> and
// keeps, in the agent's LoadBalancer, where it was headed and the client's
// identity. The proxy runs in a process of its own (src/proxy/worker.ts), so a
// fault there cannot take the agent's packet path with it; at accept it must
// still learn both. Each proxy worker holds one end of a SOCK_SEQPACKET
// socketpair the agent made before spawning it (no path: only that process has
// it); a thread in the agent (LookupServer) answers on the other end, so no
// JavaScript runs per connection on either side.
//
// Fixed-size messages in host byte order (both ends are on one machine):
//   request  LookupRequest, 12 bytes: seq, client address, client port
//   answer   LookupAnswer,  16 bytes: seq (echoed), found, original port,
//            original address, source identity
// A request of another size is dropped and counted (it gets no answer). The
// server answers in order. The proxy does not wait: each worker keeps its
// lookups in flight (loop.h kMaxPendingLookups, a share per address) and takes
// answers as its epoll loop sees them, by seq: one arriving after its request's
// timeout is skipped. No answer in kLookupTimeoutMs, or not found: the
// connection is closed (fail closed).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

namespace wm {

struct LookupRequest {
  uint32_t seq;
  uint8_t client[4];
  uint16_t client_port;
  uint16_t zero;
};
struct LookupAnswer {
  uint32_t seq;
  uint8_t found;
  uint8_t zero;
  uint16_t dst_port;
  uint8_t dst[4];
  uint32_t identity;
};
static_assert(sizeof(LookupRequest) == 12, "lookup request: 12 bytes");
static_assert(sizeof(LookupAnswer) == 16, "lookup answer: 16 bytes");

constexpr int kLookupTimeoutMs = 250;
// Channels the server holds at once (a proxy process has at most 16 workers; a dead one's close on its own).
constexpr size_t kMaxLookupChannels = 64;

struct LookupStats {
  uint64_t answered, not_found, malformed, channels;
};

// The agent's side: one thread answering every channel from `original` (LoadBalancer::proxy_original).
class LookupServer {
 public:
  using OriginalFn = std::function<bool(const uint8_t client[4], uint16_t client_port, uint8_t dst[4],
                                        uint16_t* dst_port, uint32_t* identity)>;
  explicit LookupServer(OriginalFn original);
  ~LookupServer();
  bool start(std::string* err);
  // A new channel: the server keeps one end; returns the other (close-on-exec: a spawn that names it
  // as a child's stdio dup2s it there), or -1 with err (over kMaxLookupChannels, or no socket).
  int pair(std::string* err);
  void stop();
  LookupStats stats() const;

 private:
  void run();
  void drop(int fd);
  OriginalFn original_;
  int epfd_ = -1, wfd_ = -1;
  std::atomic<bool> running_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::unordered_set<int> fds_;
  std::atomic<uint64_t> answered_{0}, not_found_{0}, malformed_{0};
};

// The proxy's side, never blocking. send_lookup: false when the request could not be queued (the channel
// gone, or full: the agent is not reading). recv_answer: 1 an answer in *a, 0 none yet, -1 the channel is gone
// (messages of another size are skipped).
bool send_lookup(int fd, uint32_t seq, const uint8_t client[4], uint16_t client_port);
int recv_answer(int fd, LookupAnswer* a);

// Messages a channel must queue in each direction: a worker's lookups in flight (loop.h kMaxPendingLookups).
// A message of 12-16 bytes is charged its whole buffer (~768 B on x86-64) against the sender's SO_SNDBUF, so the
// default buffer (212,992 B) holds ~278, not 1024.
constexpr size_t kLookupChannelMessages = 1024;
constexpr size_t kLookupMessageCharge = 1024;  // bytes of send buffer counted per message, with a margin
// Asks for a send buffer holding `messages` (SO_SNDBUFFORCE, which needs CAP_NET_ADMIN, else SO_SNDBUF, capped
// by net.core.wmem_max) and returns how many messages the buffer obtained holds (0: fd is no socket).
size_t size_lookup_channel(int fd, size_t messages);

}  // namespace wm
