// The agent's L7 proxy, native: HTTP/1.1 flows the data path redirects
// (policy verdict "redirect") are parsed, decided and forwarded here, on the
// proxy's own threads. JavaScript runs once per (endpoint, port, source
// identity) and policy generation, to say which rules apply; never per request.
//
//   RX/TX thread: a new flow to a local pod whose verdict is redirect ──▶ DNAT
//     to <router address>:<proxy port>, remembering (original destination,
//     source identity) per client address and port (LoadBalancer)
//   proxy loop (epoll, one per worker, SO_REUSEPORT listeners; in the proxy
//   process, src/proxy/worker.ts, not the agent's):
//     accept ──▶ original destination and identity (the agent's LoadBalancer,
//     asked over the worker's lookup channel, lookup.h; the loop does not wait
//     for the answer, loop_accept.cc) ──▶ rules
//     for (destination, port, identity) from the cache, or asked of the agent
//     (the connection waits, unread) ──▶ per request (http1.h framing): the
//     decision (L7RuleSet) ──▶ 403 "Access denied", or the head (X-Forwarded-For
//     set to the client's address) and body streamed to the pod over this connection's own
//     upstream connection ──▶ the pod's responses streamed back, in request
//     order (a denied request's 403 waits for the responses before it) ──▶ an
//     L7 record (method, path, host, status, latency) queued for the agent.
//   A 101 to an allowed upgrade (a rule naming Upgrade) and a CONNECT's 2xx turn the
//   connection into a byte tunnel. HTTP/2 is refused where HTTP rules apply:
//   the prior-knowledge preface gets GOAWAY(HTTP_1_1_REQUIRED) and a close; an
//   Upgrade: h2c is dropped and the request decided as HTTP/1.1. Targets are
//   normalised (http1.h normalize_target) before matching and forwarding.
//
// One upstream connection per client connection keeps hop-by-hop semantics
// (keep-alive, close, upgrade) the same on both legs, so heads pass unchanged
// but for X-Forwarded-For. Upstream connections take the host's own route to
// the local pod (its veth), like any host process.
//
// Threads and locks: each loop owns its connections, no locks on them. Shared:
// the rule cache and request list (mu_), the record queue (records_mu_), the
// generation and counters (atomics). The agent calls set_rules/invalidate/
// drain from the JS thread; loops are woken through their eventfd.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "l7rules.h"

namespace wm {

struct L7FlowKey {
  uint8_t dst[4];
  uint16_t port;
  uint32_t identity;
  bool operator==(const L7FlowKey& o) const;
};
struct L7FlowKeyHash {
  size_t operator()(const L7FlowKey& k) const;
};

// What the agent is asked: the rules for this key, in this generation.
struct L7RuleRequest {
  L7FlowKey key;
  uint64_t generation;
};

struct L7Record {
  uint64_t time_ms;
  uint8_t client[4];
  uint16_t client_port;
  uint32_t identity;
  uint8_t dst[4];
  uint16_t dst_port;
  bool denied;
  uint16_t status;
  uint32_t latency_us;
  int32_t ref;  // the rule that allowed it (-1: an L4 allow, or denied)
  uint64_t generation;
  std::string method, path, host;
};

struct L7ProxyStats {
  uint64_t connections, active, requests, denied, upstream_errors, passthrough, bad_requests, records_lost;
  uint64_t h2_refused;   // connections opening with the HTTP/2 preface on a flow with HTTP rules
  uint64_t h2c_ignored;  // requests whose Upgrade: h2c was dropped
  uint64_t head_timeouts, body_timeouts;  // heads not whole in time (408), bodies stalled (closed)
  uint64_t limited;      // connections closed at accept: over the total or per-identity cap
  uint64_t fd_exhausted;   // episodes of accept failing for want of descriptors or memory, or refused (paused)
  uint64_t accept_errors;  // failed accepts, one per attempt (paused: one per closed descriptor or second)
  uint64_t max_connections;  // the cap in force: kMaxConnections or what RLIMIT_NOFILE holds, if lower
  uint64_t lookup_timeouts;  // connections closed: no original destination from the agent in kLookupTimeoutMs
  uint64_t lookups_limited;  // connections closed at accept: their address over its share of the lookup queue
  uint64_t lookups_unsent;   // connections closed at accept: the lookup could not be sent (channel gone or full)
};

class L7Proxy {
 public:
  L7Proxy();
  ~L7Proxy();
  // Listens on address:port with one loop per lookup channel (lookup_fds[i]: worker i asks the agent
  // there where each accepted connection was headed, lookup.h; the proxy does not own them); notify() is
  // called (from a loop) when rule requests are waiting for take_requests().
  bool start(const uint8_t address[4], uint16_t port, const std::vector<int>& lookup_fds, std::function<void()> notify,
             std::string* err);
  void stop();

  void take_requests(std::vector<L7RuleRequest>* out);
  // The agent's answer; found = false: no such local endpoint (its connections are closed).
  void set_rules(const L7RuleRequest& req, bool found, std::shared_ptr<const L7RuleSet> rules);
  // Policy changed: cached rules are dropped; each connection asks again before its next request.
  uint64_t invalidate();
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  void drain(std::vector<L7Record>* out, size_t max);
  L7ProxyStats stats() const;

  // --- for the loops (loop*.cc) ---
  struct CacheEntry {
    bool found;
    std::shared_ptr<const L7RuleSet> rules;
  };
  // The cached entry for key in the current generation; on a miss the key is
  // queued for the agent (once) and false is returned.
  bool lookup(const L7FlowKey& key, CacheEntry* out, uint64_t* generation);
  void record(L7Record&& r);
  const uint8_t* address() const { return address_; }

  std::atomic<uint64_t> connections_{0}, active_{0}, requests_{0}, denied_{0}, upstream_errors_{0}, passthrough_{0},
      bad_requests_{0}, h2_refused_{0}, h2c_ignored_{0}, head_timeouts_{0}, body_timeouts_{0}, limited_{0},
      fd_exhausted_{0}, accept_errors_{0}, lookup_timeouts_{0}, lookups_limited_{0},
      lookups_unsent_{0}, parked_{0};  // parked_: connections waiting for their lookup (all workers)
  uint64_t max_connections() const { return max_connections_; }
  // Connections per source identity (the cap in loop.cc): acquire at accept, release on close.
  bool acquire(uint32_t identity, uint32_t max);
  void release(uint32_t identity);

 private:
  class Loop;
  uint8_t address_[4] = {0, 0, 0, 0};
  std::function<void()> notify_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<uint64_t> generation_{1};
  uint64_t max_connections_ = 0;  // set by start, before the loops run

  std::mutex mu_;
  std::unordered_map<L7FlowKey, CacheEntry, L7FlowKeyHash> cache_;
  std::unordered_set<L7FlowKey, L7FlowKeyHash> requested_;  // asked of the agent in this generation
  std::vector<L7RuleRequest> requests_pending_;

  std::mutex ids_mu_;
  std::unordered_map<uint32_t, uint32_t> per_identity_;

  mutable std::mutex records_mu_;
  std::vector<L7Record> records_;
  uint64_t records_lost_ = 0;
};

}  // namespace wm
