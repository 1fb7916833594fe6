#include "http1.h"

#include <algorithm>
#include <cstring>

namespace wm::http1 {
namespace {

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// Does a comma-separated header value list this token (case-insensitively)?
bool has_token(std::string_view list, std::string_view token) {
  size_t i = 0;
  while (i <= list.size()) {
    size_t j = list.find(',', i);
    if (j == std::string_view::npos) j = list.size();
    std::string_view t = list.substr(i, j - i);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (iequals(t, token)) return true;
    i = j + 1;
  }
  return false;
}

// The last coding of a Transfer-Encoding list.
std::string_view last_coding(std::string_view list) {
  size_t c = list.rfind(',');
  std::string_view t = c == std::string_view::npos ? list : list.substr(c + 1);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  return t;
}

// Finds CRLFCRLF; returns the head size or 0.
size_t head_end(const char* data, size_t len) {
  if (len < 4) return 0;
  const char* p = data;
  const char* end = data + len;
  while ((p = static_cast<const char*>(std::memchr(p, '\r', size_t(end - p)))) != nullptr) {
    if (end - p >= 4 && p[1] == '\n' && p[2] == '\r' && p[3] == '\n') return size_t(p - data) + 4;
    p++;
  }
  return 0;
}

bool parse_version(std::string_view v, int* minor) {
  if (v.size() != 8 || v.substr(0, 7) != "HTTP/1." || v[7] < '0' || v[7] > '9') return false;
  *minor = v[7] - '0';
  return true;
}

// Header lines after the start line: fills out->headers and the framing fields.
bool parse_fields(std::string_view lines, Head* out, std::string* reason) {
  bool have_length = false, have_te = false, conn_close = false, conn_keep = false, conn_upgrade = false;
  std::string te;
  size_t i = 0;
  while (i < lines.size()) {
    size_t e = lines.find("\r\n", i);
    if (e == std::string_view::npos) e = lines.size();
    std::string_view line = lines.substr(i, e - i);
    i = e + 2;
    if (line.empty()) continue;
    if (line[0] == ' ' || line[0] == '\t') return *reason = "obsolete line folding", false;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return *reason = "header line without a name", false;
    std::string name;
    name.reserve(colon);
    for (size_t k = 0; k < colon; k++) {
      if (!is_tchar(static_cast<unsigned char>(line[k]))) return *reason = "invalid character in a header name", false;
      name.push_back(lower(line[k]));
    }
    std::string_view value = line.substr(colon + 1);
    for (char ch : value) {
      unsigned char u = static_cast<unsigned char>(ch);
      if ((u < 0x20 && u != '\t') || u == 0x7f) return *reason = "control character in a header value", false;
    }
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (name == "content-length") {
      uint64_t n = 0;
      if (value.empty() || value.size() > 15) return *reason = "invalid Content-Length", false;
      for (char d : value) {
        if (d < '0' || d > '9') return *reason = "invalid Content-Length", false;
        n = n * 10 + uint64_t(d - '0');
      }
      if (have_length && n != out->length) return *reason = "conflicting Content-Length values", false;
      have_length = true;
      out->length = n;
    } else if (name == "transfer-encoding") {
      if (have_te) te += ",";
      te.append(value);
      have_te = true;
    } else if (name == "connection") {
      conn_close |= has_token(value, "close");
      conn_keep |= has_token(value, "keep-alive");
      conn_upgrade |= has_token(value, "upgrade");
    } else if (name == "expect") {
      out->expect_continue = iequals(value, "100-continue");
    }
    out->headers.emplace_back(std::move(name), std::string(value));
  }
  if (have_te && have_length) return *reason = "both Transfer-Encoding and Content-Length", false;
  if (have_te) {
    out->body = iequals(last_coding(te), "chunked") ? BodyKind::kChunked : BodyKind::kUntilClose;
  } else if (have_length) {
    out->body = out->length ? BodyKind::kLength : BodyKind::kNone;
  }
  out->keep_alive = out->minor >= 1 ? !conn_close : conn_keep;
  out->upgrade = conn_upgrade && out->get("upgrade") != nullptr;
  return true;
}

int hex(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

bool unreserved(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// RFC 3986 5.2.4 on an absolute path, by segments: "." drops itself, ".."
// its parent; either one last leaves the trailing '/'. (The fuzz target checks
// it against the RFC's buffer-moving algorithm, written out literally.)
std::string remove_dot_segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 1;  // path starts with '/'
  for (;;) {
    size_t j = path.find('/', i);
    bool last = j == std::string_view::npos;
    std::string_view seg = path.substr(i, last ? std::string_view::npos : j - i);
    if (seg == "." || seg == "..") {
      if (seg == ".." && !out.empty()) out.pop_back();
      if (last) out.emplace_back();
    } else {
      out.push_back(seg);
    }
    if (last) break;
    i = j + 1;
  }
  std::string r;
  r.reserve(path.size());
  for (std::string_view seg : out) r.append("/").append(seg);
  return r.empty() ? "/" : r;
}

// Decodes and checks an origin-form path (no query), then removes dot segments.
bool normalize_path(std::string_view path, std::string* out, std::string* reason) {
  std::string d;
  d.reserve(path.size());
  for (size_t i = 0; i < path.size(); i++) {
    unsigned char c = static_cast<unsigned char>(path[i]);
    if (c == '%') {
      if (path.size() - i < 3 || hex(path[i + 1]) < 0 || hex(path[i + 2]) < 0)
        return *reason = "invalid percent-encoding in the request target", false;
      unsigned char v = static_cast<unsigned char>(hex(path[i + 1]) * 16 + hex(path[i + 2]));
      if (v == '/' || v == '\\' || v == 0)
        return *reason = "encoded '/', '\\' or NUL in the request path", false;
      if (unreserved(v)) {
        d.push_back(char(v));
      } else {
        static const char kHex[] = "0123456789ABCDEF";
        d.push_back('%');
        d.push_back(kHex[v >> 4]);
        d.push_back(kHex[v & 15]);
      }
      i += 2;
    } else if (c == '\\' || c == '#' || c >= 0x80) {
      return *reason = "'\\', '#' or a non-ASCII byte in the request path", false;
    } else {
      d.push_back(char(c));
    }
  }
  // A "." or ".." segment with parameters: Tomcat and others read "..;x" as "..", RFC 3986 does not.
  for (size_t k = 0; (k = d.find('.', k)) != std::string::npos; k++) {
    if (d[k - 1] != '/') continue;  // d starts with '/', so k >= 1
    size_t e = k + (k + 1 < d.size() && d[k + 1] == '.' ? 2 : 1);
    if (e < d.size() && d[e] == ';') return *reason = "a dot segment with parameters in the request path", false;
  }
  *out = remove_dot_segments(d);
  return true;
}

}  // namespace

bool normalize_target(std::string_view method, std::string_view target, std::string* out, std::string* authority,
                      std::string* reason) {
  authority->clear();
  if (method == "CONNECT" || (method == "OPTIONS" && target == "*")) {
    if (method == "CONNECT" && target.find_first_of("/\\#") != std::string_view::npos)
      return *reason = "a CONNECT target is host:port", false;
    *out = std::string(target);
    return true;
  }
  if (target.empty() || target[0] != '/') {
    // absolute-form: http[s]://authority[/path][?query]
    size_t sep = target.find("://");
    std::string_view scheme = sep == std::string_view::npos ? std::string_view() : target.substr(0, sep);
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) return *reason = "invalid request target", false;
    std::string_view rest = target.substr(sep + 3);
    size_t end = rest.find_first_of("/?#");
    std::string_view auth = rest.substr(0, end);
    if (auth.empty() || auth.find('@') != std::string_view::npos || auth.find('\\') != std::string_view::npos)
      return *reason = "invalid authority in the request target", false;
    std::string origin = end == std::string_view::npos ? "/" : rest[end] == '/' ? std::string(rest.substr(end)) : "/" + std::string(rest.substr(end));
    std::string none;
    if (!normalize_target(method, origin, out, &none, reason)) return false;
    authority->assign(auth);
    return true;
  }
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  if (q != std::string_view::npos && target.find('#', q) != std::string_view::npos)
    return *reason = "'#' in the request target", false;
  if (!normalize_path(path, out, reason)) return false;
  if (q != std::string_view::npos) out->append(target.substr(q));
  return true;
}

const std::string* Head::get(std::string_view name) const {
  for (const auto& h : headers)
    if (h.first == name) return &h.second;
  return nullptr;
}

ParseResult parse_request(const char* data, size_t len, size_t max_head, Head* out, int* error_status,
                          std::string* reason) {
  // Leading empty lines before a request are ignored (RFC 9112 2.2).
  size_t skip = 0;
  while (skip + 1 < len && data[skip] == '\r' && data[skip + 1] == '\n') skip += 2;
  size_t n = head_end(data + skip, len - skip);
  if (n == 0) {
    if (len > max_head) return *error_status = 431, *reason = "request head too large", ParseResult::kError;
    return ParseResult::kNeedMore;
  }
  if (skip + n > max_head) return *error_status = 431, *reason = "request head too large", ParseResult::kError;
  *error_status = 400;
  std::string_view head(data + skip, n - 4);
  size_t eol = head.find("\r\n");
  std::string_view start = head.substr(0, eol);
  size_t sp1 = start.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : start.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || start.find(' ', sp2 + 1) != std::string_view::npos)
    return *reason = "malformed request line", ParseResult::kError;
  std::string_view method = start.substr(0, sp1), target = start.substr(sp1 + 1, sp2 - sp1 - 1);
  if (method.empty() || target.empty()) return *reason = "malformed request line", ParseResult::kError;
  for (char c : method)
    if (!is_tchar(static_cast<unsigned char>(c))) return *reason = "invalid method", ParseResult::kError;
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return *reason = "invalid request target", ParseResult::kError;
  if (!parse_version(start.substr(sp2 + 1), &out->minor)) return *reason = "unsupported HTTP version", ParseResult::kError;
  out->method.assign(method);
  out->target.assign(target);
  if (!parse_fields(eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2), out, reason))
    return ParseResult::kError;
  // Faulty framing (RFC 9112 6.1): Go's net/http ignores it and reads the chunked body as requests never decided.
  if (out->minor == 0 && out->get("transfer-encoding"))
    return *reason = "Transfer-Encoding in an HTTP/1.0 request", ParseResult::kError;
  // Two Host headers: which one would the pod use? (RFC 9112 3.2: 400)
  size_t hosts = 0;
  for (const auto& f : out->headers) {
    hosts += f.first == "host";
    // An h2c upgrade would turn the connection into HTTP/2 frames the proxy cannot decide: the
    // request is decided and forwarded as plain HTTP/1.1, without the upgrade (loop_client.cc).
    if (f.first == "upgrade" && has_token(f.second, "h2c")) out->h2c_upgrade = true;
  }
  if (hosts > 1) return *reason = "more than one Host header", ParseResult::kError;
  if (out->h2c_upgrade) out->upgrade = false;
  std::string normalized, authority;
  if (!normalize_target(out->method, out->target, &normalized, &authority, reason)) return ParseResult::kError;
  if (!authority.empty()) {
    const std::string* host = out->get("host");
    if (!host || !iequals(*host, authority)) return *reason = "Host differs from the target's authority", ParseResult::kError;
  }
  out->target = std::move(normalized);
  // A request body runs to the end only with a close-delimited coding, which requests cannot have.
  if (out->body == BodyKind::kUntilClose)
    return *error_status = 501, *reason = "unsupported transfer coding", ParseResult::kError;
  // The proxy holds what follows an upgrade or CONNECT until the answer says tunnel or not; refused, the
  // bytes were parsed as the next request while the pod read them as this one's body, and a request inside
  // that body reached it undecided (smuggling). Neither needs a body (RFC 6455 4.1, RFC 9110 9.3.6).
  if ((out->upgrade || out->method == "CONNECT") && out->body != BodyKind::kNone)
    return *reason = "an upgrade or CONNECT request with a body", ParseResult::kError;
  out->size = skip + n;
  return ParseResult::kDone;
}

void set_forwarded_for(Head* out, std::string_view client) {
  auto& hs = out->headers;
  hs.erase(std::remove_if(hs.begin(), hs.end(), [](const auto& f) { return f.first == "x-forwarded-for"; }), hs.end());
  hs.emplace_back("x-forwarded-for", std::string(client));
}

ParseResult parse_response(const char* data, size_t len, size_t max_head, std::string_view request_method, Head* out,
                           std::string* reason) {
  size_t n = head_end(data, len);
  if (n == 0) {
    if (len > max_head) return *reason = "response head too large", ParseResult::kError;
    return ParseResult::kNeedMore;
  }
  std::string_view head(data, n - 4);
  size_t eol = head.find("\r\n");
  std::string_view start = head.substr(0, eol);
  // HTTP/1.1 SP 3DIGIT SP reason (the reason may be empty, the SP may be missing in old servers)
  if (start.size() < 12 || !parse_version(start.substr(0, 8), &out->minor) || start[8] != ' ')
    return *reason = "malformed status line", ParseResult::kError;
  int status = 0;
  for (int k = 9; k < 12; k++) {
    if (start[size_t(k)] < '0' || start[size_t(k)] > '9') return *reason = "malformed status line", ParseResult::kError;
    status = status * 10 + (start[size_t(k)] - '0');
  }
  if (status < 100) return *reason = "malformed status line", ParseResult::kError;
  out->status = status;
  if (!parse_fields(eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2), out, reason))
    return ParseResult::kError;
  bool no_body = request_method == "HEAD" || status < 200 || status == 204 || status == 304 ||
                 (request_method == "CONNECT" && status < 300);
  if (no_body) {
    out->body = BodyKind::kNone;
  } else if (out->body == BodyKind::kNone && out->get("content-length") == nullptr) {
    out->body = BodyKind::kUntilClose;  // neither length nor chunked: the body ends when the server closes
  }
  if (out->body == BodyKind::kUntilClose) out->keep_alive = false;
  out->size = n;
  return ParseResult::kDone;
}

void BodyFramer::start(BodyKind kind, uint64_t length) {
  kind_ = kind;
  remaining_ = length;
  size_digits_ = 0;
  switch (kind) {
    case BodyKind::kNone: state_ = kDone; break;
    case BodyKind::kLength: state_ = length ? kLength : kDone; break;
    case BodyKind::kChunked: state_ = kSize; break;
    case BodyKind::kUntilClose: state_ = kUntilClose; break;
  }
}

size_t BodyFramer::feed(const char* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    switch (state_) {
      case kDone:
      case kFailed:
        return i;
      case kUntilClose:
        return n;
      case kLength:
      case kData: {
        size_t take = remaining_ < n - i ? size_t(remaining_) : n - i;
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = state_ == kLength ? kDone : kDataCR;
        break;
      }
      case kSize: {
        char c = p[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v >= 0) {
          if (++size_digits_ > 15) return state_ = kFailed, i;
          remaining_ = remaining_ * 16 + uint64_t(v);
          i++;
        } else if (size_digits_ == 0) {
          return state_ = kFailed, i;
        } else if (c == '\r') {
          state_ = kSizeLF;
          i++;
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = kExt;
          i++;
        } else {
          return state_ = kFailed, i;
        }
        break;
      }
      case kExt:  // chunk extensions and trailer fields are skipped up to their CR, not kept
      case kTrailer: {
        // ... but checked for control bytes, as header values are: a bare LF ends the line for a
        // lenient server (nginx), which then reads what follows "0\r\n\n" or "5;x\n" as the next
        // request, one this proxy framed as body and never decided (smuggling).
        for (; i < n && p[i] != '\r'; i++) {
          unsigned char u = static_cast<unsigned char>(p[i]);
          if ((u < 0x20 && u != '\t') || u == 0x7f) return state_ = kFailed, i;
        }
        if (i == n) return n;
        i++;
        state_ = state_ == kExt ? kSizeLF : kTrailerLF;
        break;
      }
      case kSizeLF:
        if (p[i++] != '\n') return state_ = kFailed, i;
        size_digits_ = 0;
        state_ = remaining_ ? kData : kTrailerStart;
        break;
      case kDataCR:
        if (p[i++] != '\r') return state_ = kFailed, i;
        state_ = kDataLF;
        break;
      case kDataLF:
        if (p[i++] != '\n') return state_ = kFailed, i;
        state_ = kSize;
        break;
      case kTrailerStart:
        if (p[i] == '\r') {
          i++;
          state_ = kEndLF;
        } else {
          state_ = kTrailer;
        }
        break;
      case kTrailerLF:
        if (p[i++] != '\n') return state_ = kFailed, i;
        state_ = kTrailerStart;
        break;
      case kEndLF:
        if (p[i++] != '\n') return state_ = kFailed, i;
        state_ = kDone;
        return i;
    }
  }
  return i;
}

}  // namespace wm::http1
