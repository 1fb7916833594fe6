// The L7 proxy's client side: request heads, decisions, local answers (loop.h).
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
#include <cstring>
#include <deque>

namespace wm {

void L7Proxy::Loop::process_client(Conn* c) {
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
        // decided as the pod will read it; an L4-allowed flow (rules `all`) is not rewritten (docs/policy.md)
        if (!c->rules->all()) http1::set_forwarded_for(&h, c->client_ip);
        on_request(c, h);
        break;
      }
    }
  }
}

void L7Proxy::Loop::on_request(Conn* c, const http1::Head& h) {
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
// matched is what the pod serves), X-Forwarded-For is the client's address alone (the client's own
// lines dropped: http1::set_forwarded_for, the value the rules saw; not on an L4-allowed flow), and an h2c
// upgrade is dropped (Upgrade, HTTP2-Settings and Connection; the connection's persistence is
// restated), so the pod answers in HTTP/1.1.
void L7Proxy::Loop::append_forward_head(Conn* c, const http1::Head& h) {
  std::string_view raw(c->cin.data(), h.size);
  while (raw.size() >= 2 && raw[0] == '\r' && raw[1] == '\n') raw.remove_prefix(2);
  raw.remove_suffix(2);  // the empty line
  size_t i = raw.find("\r\n") + 2;  // past the request line
  c->uout.append(h.method);
  c->uout.append(" ");
  c->uout.append(h.target);
  c->uout.append(h.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  bool rewrite_xff = !(c->rules && c->rules->all());
  auto named = [](std::string_view line, std::string_view name) {
    return line.size() > name.size() && line[name.size()] == ':' && strncasecmp(line.data(), name.data(), name.size()) == 0;
  };
  while (i < raw.size()) {
    size_t e = raw.find("\r\n", i);
    std::string_view line = raw.substr(i, e + 2 - i);
    i = e + 2;
    if (rewrite_xff && named(line, "x-forwarded-for")) continue;
    if (h.h2c_upgrade && (named(line, "upgrade") || named(line, "http2-settings") || named(line, "connection"))) continue;
    c->uout.append(line);
  }
  if (h.h2c_upgrade) {
    if (!h.keep_alive) c->uout.append("connection: close\r\n");
    else if (h.minor == 0) c->uout.append("connection: keep-alive\r\n");
  }
  if (rewrite_xff) {
    c->uout.append("x-forwarded-for: ");
    c->uout.append(std::string_view(c->client_ip));
    c->uout.append("\r\n");
  }
  c->uout.append("\r\n");
}

void L7Proxy::Loop::bad_request(Conn* c, int status) {
  p_->bad_requests_.fetch_add(1, std::memory_order_relaxed);
  local_close(c, status);
}

// Answers status after the responses already due, then closes; the client is not read any more.
void L7Proxy::Loop::local_close(Conn* c, int status) {
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
void L7Proxy::Loop::answer_local(Conn* c) {
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

void L7Proxy::Loop::complete(Conn* c, const Pending& pr, bool denied_or_local) {
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

}  // namespace wm
