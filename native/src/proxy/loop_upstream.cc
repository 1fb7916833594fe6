// The L7 proxy's upstream side: responses, tunnels, upstream failures (loop.h).
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

void L7Proxy::Loop::process_upstream(Conn* c) {
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

void L7Proxy::Loop::finish_response(Conn* c) {
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
void L7Proxy::Loop::upstream_closed(Conn* c) {
  bool waiting = false;
  for (const Pending& pr : c->queue) waiting |= !pr.local;
  if (waiting) return upstream_failed(c);
  drop_upstream(c);  // idle keep-alive closed: the next allowed request connects again
}

void L7Proxy::Loop::upstream_failed(Conn* c) {
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

void L7Proxy::Loop::drop_upstream(Conn* c) {
  if (c->ufd >= 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, c->ufd, nullptr);
    close(c->ufd);
    resume_accept();  // a descriptor is free (other workers: their own closes or their 1 s sweep)
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
void L7Proxy::Loop::refuse_h2(Conn* c) {
  p_->h2_refused_.fetch_add(1, std::memory_order_relaxed);
  static const char kFrames[] = {0, 0, 0, 4, 0, 0, 0, 0, 0,                    // SETTINGS, empty
                                 0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd};  // GOAWAY 0, 0xd
  c->first = false;
  c->cin.clear();
  c->cout.append(kFrames, sizeof kFrames);
  c->closing = true;
}

void L7Proxy::Loop::start_passthrough(Conn* c) {
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

}  // namespace wm
