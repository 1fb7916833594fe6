// HTTP/1.1 message framing for the L7 proxy (RFC 9112): where a message's
// head ends, what it says, and where its body ends. The proxy forwards bytes
// as they are; it only needs to know message boundaries (to decide each
// request and to keep pipelined responses in order) and a few fields (method,
// target, Host, the headers rules name, status).
//
// Strict where smuggling lives: CRLF line endings only, no obs-fold, token
// header names, one Content-Length value, Transfer-Encoding and
// Content-Length together rejected, a Transfer-Encoding whose last coding is
// not chunked rejected on requests, and any on an HTTP/1.0 request (RFC 9112
// 6.1; Go ignores it there), no control byte but HTAB inside a chunk
// extension or trailer line (a bare LF there ends the line for nginx), no
// body on an upgrade or CONNECT request (its bytes would be the next request
// to the proxy when the upgrade is refused, body to the pod).
// Errors carry the status to answer with.
//
// Request targets are normalised before anyone matches them (normalize_target),
// and the upstream is sent the normalised target: what a rule matched is what
// the pod serves. One Host header at most; an absolute-form target's authority
// must equal it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wm::http1 {

enum class BodyKind : uint8_t { kNone, kLength, kChunked, kUntilClose };

struct Head {
  // request
  std::string method;
  std::string target;
  // response
  int status = 0;
  int minor = 1;  // HTTP/1.<minor>
  // header (lowercased name, value without surrounding whitespace), in order
  std::vector<std::pair<std::string, std::string>> headers;
  BodyKind body = BodyKind::kNone;
  uint64_t length = 0;
  bool keep_alive = true;
  bool upgrade = false;         // request: Connection: upgrade with an Upgrade header
  bool expect_continue = false;  // request: Expect: 100-continue
  bool h2c_upgrade = false;      // request: Upgrade names h2c (never forwarded; upgrade is then false)
  size_t size = 0;               // bytes of the head, CRLFCRLF included

  // The first value of a header (lowercase name), or nullptr.
  const std::string* get(std::string_view name) const;
};

enum class ParseResult { kNeedMore, kDone, kError };

// The request target as the proxy matches and forwards it, or false with
// *reason (answered 400). Origin-form paths: percent-encoded unreserved
// characters (ALPHA DIGIT - . _ ~) decoded, other escapes upper-cased, then dot
// segments removed (RFC 3986 5.2.4), so %2e%2e is "..", normalised away; the
// query is kept as sent. Refused, as a server could read them differently: an
// encoded '/', '\' or NUL (%2F %5C %00), a raw '\', '#', non-ASCII bytes, a
// bad escape, a "." or ".." segment with ';' parameters (Tomcat reads "..;" as
// ".."). Absolute-form (http[s]://authority/path) becomes origin-form, its
// authority returned in *authority (no userinfo). OPTIONS "*" and a CONNECT's
// authority-form pass as they are.
bool normalize_target(std::string_view method, std::string_view target, std::string* out, std::string* authority,
                      std::string* reason);

// Parses a request head from the start of data. kError sets *error_status
// (400, 431 head too large, 501 unsupported transfer coding) and *reason.
ParseResult parse_request(const char* data, size_t len, size_t max_head, Head* out, int* error_status,
                          std::string* reason);

// X-Forwarded-For as the pod is sent it, so rules decide what the pod reads: the client's address alone.
// A value the client sent is dropped, never extended: a pod is the first hop in the mesh, so no proxy in
// front of the L7 proxy is trusted (Envoy's use_remote_address with xff_num_trusted_hops 0, and the
// untrusted entries removed rather than kept to the left of ours). Replaces every x-forwarded-for line
// of out->headers with one holding client (dotted quad).
void set_forwarded_for(Head* out, std::string_view client);

// Parses a response head; request_method decides bodies (HEAD, CONNECT).
ParseResult parse_response(const char* data, size_t len, size_t max_head, std::string_view request_method, Head* out,
                           std::string* reason);

// Walks a message body as it streams by, without changing it: feed() says how
// many of the given bytes still belong to the body (the rest is the next
// message). Chunk sizes, extensions and trailers are checked, not kept.
class BodyFramer {
 public:
  void start(BodyKind kind, uint64_t length);
  // Consumes body bytes from p (at most n); returns how many were the body's.
  size_t feed(const char* p, size_t n);
  bool done() const { return state_ == kDone; }
  bool failed() const { return state_ == kFailed; }
  // An until-close body ends when the peer closes; the others fail there.
  void eof() { state_ = kind_ == BodyKind::kUntilClose ? kDone : kFailed; }

 private:
  enum State : uint8_t { kDone, kFailed, kLength, kUntilClose, kSize, kExt, kSizeLF, kData, kDataCR, kDataLF, kTrailerStart, kTrailer, kTrailerLF, kEndLF };
  BodyKind kind_ = BodyKind::kNone;
  State state_ = kDone;
  uint64_t remaining_ = 0;
  int size_digits_ = 0;
};

}  // namespace wm::http1
