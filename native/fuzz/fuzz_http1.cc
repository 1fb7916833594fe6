// The L7 proxy's HTTP/1.1 framing on hostile bytes: request and response
// heads parse or fail cleanly, and a body framer fed the same stream in
// arbitrary splits consumes exactly what it consumes in one piece. Decisions:
// X-Forwarded-For replaced by the client's, no upgrade past a rule without Upgrade.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxy/http1.h"
#include "proxy/l7rules.h"

using namespace wm::http1;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const char* p = reinterpret_cast<const char*>(data) + 1;
  size_t n = size - 1;
  uint8_t mode = data[0];

  Head req;
  int status = 0;
  std::string reason;
  if (parse_request(p, n, 4096, &req, &status, &reason) == ParseResult::kDone) {
    if (req.size > n) abort();
    static const auto rules = wm::L7RuleSet::compile(false, {{1, std::string("GET|POST"), std::string("/a/.*"), std::nullopt, {{"x-t", std::nullopt}}}}, nullptr);
    // X-Forwarded-For is decided as the pod gets it: one line, the client's address
    set_forwarded_for(&req, "100.64.0.1");
    size_t xff = 0;
    for (const auto& f : req.headers)
      if (f.first == "x-forwarded-for" && (++xff > 1 || f.second != "100.64.0.1")) abort();
    if (xff != 1) abort();
    // an upgrade (a tunnel on 101) never passes a rule that does not name the Upgrade header
    if (rules->decide(req).allowed && req.upgrade) abort();
  } else if (status != 0 && status != 400 && status != 431 && status != 501) {
    abort();
  }
  Head resp;
  if (parse_response(p, n, 4096, (mode & 1) ? "HEAD" : "GET", &resp, &reason) == ParseResult::kDone && resp.size > n) abort();

  // Body framing: one piece vs split every `step` bytes.
  BodyKind kind = BodyKind((mode >> 1) % 4);
  uint64_t length = (mode >> 3) * 7;
  BodyFramer whole, split;
  whole.start(kind, length);
  split.start(kind, length);
  size_t a = whole.feed(p, n);
  size_t step = (mode % 7) + 1, b = 0;
  while (b < n && !split.done() && !split.failed()) {
    size_t chunk = std::min(step, n - b);
    size_t used = split.feed(p + b, chunk);
    b += used;
    if (used < chunk) break;
  }
  if (a > n || b > n) abort();
  if (!whole.failed() && !split.failed() && (a != b || whole.done() != split.done())) abort();
  return 0;
}
