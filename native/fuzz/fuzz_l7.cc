// The L7 proxy's decisions on hostile input:
//  - request targets (mode 0): normalize_target agrees with a straightforward
//    reference written here from RFC 3986 (percent-decoding unreserved
//    characters, then 5.2.4's buffer-moving algorithm, step by step), and its
//    output is a fixed point (a pod normalising again sees what was matched);
//  - patterns (mode 1): any pattern through check_pattern and the matcher
//    (they agree on what compiles), against inputs up to 16 KiB, each match
//    in bounded time: RE2 is linear, a slow one aborts.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "proxy/http1.h"
#include "proxy/l7rules.h"

namespace {

bool starts(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// "removing the last segment and its preceding "/" (if any) from the output buffer"
void pop_last(std::string* out) {
  size_t k = out->rfind('/');
  out->erase(k == std::string::npos ? 0 : k);
}

// RFC 3986 5.2.4, literally.
std::string ref_remove_dot_segments(std::string in) {
  std::string out;
  while (!in.empty()) {
    if (starts(in, "../")) in.erase(0, 3);                        // A
    else if (starts(in, "./")) in.erase(0, 2);                    // A
    else if (starts(in, "/./")) in.replace(0, 3, "/");            // B
    else if (in == "/.") in = "/";                                // B
    else if (starts(in, "/../")) in.replace(0, 4, "/"), pop_last(&out);  // C
    else if (in == "/..") in = "/", pop_last(&out);               // C
    else if (in == "." || in == "..") in.clear();                 // D
    else {                                                        // E
      size_t j = in.find('/', in[0] == '/' ? 1 : 0);
      out += in.substr(0, j);
      in.erase(0, j == std::string::npos ? in.size() : j);
    }
  }
  return out;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The proxy's documented rules for an origin-form target (http1.h), one at a time.
bool ref_normalize(const std::string& target, std::string* out) {
  size_t q = target.find('?');
  std::string path = target.substr(0, q), query = q == std::string::npos ? "" : target.substr(q);
  if (target.find('#') != std::string::npos) return false;
  std::string d;
  for (size_t i = 0; i < path.size(); i++) {
    unsigned char c = static_cast<unsigned char>(path[i]);
    if (c == '\\' || c >= 0x80) return false;
    if (c != '%') {
      d += char(c);
      continue;
    }
    if (i + 2 >= path.size() || hexval(path[i + 1]) < 0 || hexval(path[i + 2]) < 0) return false;
    int v = hexval(path[i + 1]) * 16 + hexval(path[i + 2]);
    if (v == '/' || v == '\\' || v == 0) return false;
    bool unreserved = isalnum(v) || v == '-' || v == '.' || v == '_' || v == '~';
    char buf[4];
    snprintf(buf, sizeof buf, "%%%02X", v);
    d += unreserved ? std::string(1, char(v)) : std::string(buf);
    i += 2;
  }
  // segments "." or ".." carrying ";" parameters are refused
  size_t s = 0;
  while (s != std::string::npos) {
    size_t e = d.find('/', s + 1);
    std::string seg = d.substr(s + 1, e == std::string::npos ? std::string::npos : e - s - 1);
    if (starts(seg, ".;") || starts(seg, "..;")) return false;
    s = e;
  }
  *out = ref_remove_dot_segments(d) + query;
  if (out->empty() || (*out)[0] != '/') *out = "/" + *out;
  return true;
}

void targets(const std::string& t) {
  if (t.empty() || t[0] != '/') return;
  std::string got, want, auth, reason;
  bool ok = wm::http1::normalize_target("GET", t, &got, &auth, &reason);
  bool ref_ok = ref_normalize(t, &want);
  if (ok != ref_ok || (ok && got != want)) {
    fprintf(stderr, "target '%s': proxy %d '%s', reference %d '%s'\n", t.c_str(), ok, got.c_str(), ref_ok, want.c_str());
    abort();
  }
  if (!ok) return;
  std::string again;
  if (!wm::http1::normalize_target("GET", got, &again, &auth, &reason) || again != got) abort();
}

void patterns(const std::string& in) {
  size_t nl = in.find('\n');
  if (nl == std::string::npos || nl > 256) return;
  std::string pattern = in.substr(0, nl), unit = in.substr(nl + 1);
  if (unit.empty()) unit = "a";
  std::string subject;
  while (subject.size() + unit.size() <= 16384) subject += unit;  // long, repetitive: backtracking bait
  std::vector<std::string> warnings;
  auto set = wm::L7RuleSet::compile(false, {{1, std::nullopt, pattern, pattern, {}}}, &warnings);
  if (wm::check_pattern(pattern).empty() != warnings.empty()) abort();  // apply and the data path disagree
  wm::http1::Head h;
  h.method = "GET";
  h.target = subject;
  h.headers.emplace_back("host", subject);
  auto t0 = std::chrono::steady_clock::now();
  (void)set->decide(h);
  if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(1)) {
    fprintf(stderr, "pattern '%s' took over 1 s on %zu bytes\n", pattern.c_str(), subject.size());
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) patterns(in);
  else targets(in);
  return 0;
}
