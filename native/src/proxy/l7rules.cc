#include "l7rules.h"

#include <re2/re2.h>

namespace wm {
namespace {

// RE2's memory budget per pattern (compiled program plus its DFA cache). When
// a match would need more DFA states, RE2 falls back to its NFA: slower, still
// linear, never more memory. A pattern whose program alone exceeds it does not
// compile, and is then rejected at apply as well.
constexpr int64_t kMaxMem = 2 << 20;

RE2::Options options() {
  RE2::Options o;
  o.set_max_mem(kMaxMem);
  o.set_log_errors(false);  // errors are returned (warnings, apply), not printed by the agent
  return o;
}

}  // namespace

std::string check_pattern(const std::string& pattern) {
  RE2 re(pattern, options());
  return re.ok() ? std::string() : re.error();
}

std::shared_ptr<const L7RuleSet> L7RuleSet::compile(bool all, const std::vector<HttpRuleSpec>& rules,
                                                    std::vector<std::string>* warnings) {
  auto set = std::make_shared<L7RuleSet>();
  set->all_ = all;
  for (const HttpRuleSpec& s : rules) {
    Rule r;
    r.ref = s.ref;
    auto re = [&](const std::optional<std::string>& src, std::shared_ptr<const re2::RE2>* dst, const char* field) {
      if (!src) return;
      auto compiled = std::make_shared<const RE2>(*src, options());
      if (!compiled->ok()) {
        r.broken = true;
        if (warnings) warnings->push_back(std::string("http ") + field + " pattern '" + *src + "': " + compiled->error());
        return;
      }
      *dst = std::move(compiled);
    };
    re(s.method, &r.method, "method");
    re(s.path, &r.path, "path");
    re(s.host, &r.host, "host");
    for (const auto& h : s.headers) {
      std::string name = h.first;
      for (char& c : name)
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
      r.names_upgrade |= name == "upgrade";
      r.headers.emplace_back(std::move(name), h.second);
    }
    set->rules_.push_back(std::move(r));
  }
  return set;
}

L7RuleSet::Decision L7RuleSet::decide(const http1::Head& req) const {
  if (all_) return {true, -1};
  static const std::string kEmpty;
  const std::string* host = req.get("host");
  // A CONNECT's 2xx makes the connection a byte tunnel, past every later request's decision. Envoy (Cilium's
  // proxy) refuses CONNECT unless configured for it; here only a rule whose method pattern matches CONNECT
  // allows it: a rule without a method (a host or header rule, say) was not written for tunnels.
  const bool connect = req.method == "CONNECT";
  // An upgrade's 101 does the same (WebSocket, or any protocol the pod speaks). Envoy answers 403 to an upgrade
  // type its listener is not configured for; here a rule allows one only by naming the Upgrade header
  // ("Upgrade: websocket" for that protocol, "Upgrade" for any): a path or method rule was not written for it.
  for (const Rule& r : rules_) {
    if (r.broken) continue;
    if (connect && !r.method) continue;
    if (req.upgrade && !r.names_upgrade) continue;
    // FullMatch: the whole value, as Cilium's anchored Go regexps and l7.ts's ^(?:...)$.
    if (r.method && !RE2::FullMatch(req.method, *r.method)) continue;
    if (r.path && !RE2::FullMatch(req.target, *r.path)) continue;
    if (r.host && !RE2::FullMatch(host ? *host : kEmpty, *r.host)) continue;
    bool ok = true;
    for (const auto& want : r.headers) {
      // Repeated field lines are one field whose value is theirs joined by commas, in order (RFC 9110 5.3;
      // Envoy matches that combined value too, joined by ","). A rule's value is compared with it, so
      // "X-Role: admin" does not pass a request that also carries "X-Role: guest", which the pod may read.
      bool found = false;
      std::string combined;
      for (const auto& h : req.headers) {
        if (h.first != want.first) continue;
        if (found) combined += ',';
        combined += h.second;
        found = true;
      }
      if (!found || (want.second && combined != *want.second)) {
        ok = false;
        break;
      }
    }
    if (ok) return {true, r.ref};
  }
  return {false, -1};
}

}  // namespace wm
