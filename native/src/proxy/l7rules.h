// The HTTP rules deciding one redirected flow (an endpoint, a port, a source
// identity), compiled for the proxy thread. The agent computes which rules
// apply (src/policy/l7.ts l7Rules) and hands them down once per flow key and
// policy generation; every request is then decided here, natively. The
// semantics are those of src/policy/l7.ts httpRuleMatches/decideRequest (a
// unit test runs both over the same table): method, path and host are
// regular expressions over the whole value, headers must be present and, when
// a value is given, equal to the field's value (repeated lines: joined by ",").
// CONNECT is allowed only by a rule with a method pattern that matches it, and
// an upgrade (Connection: upgrade with Upgrade; h2c is never one, http1.h) only
// by a rule naming the Upgrade header: both turn the connection into a byte
// tunnel past every later decision. X-Forwarded-For is matched as the pod gets
// it: the client's address alone (http1::set_forwarded_for).
//
// Patterns are RE2 (the syntax Cilium's Go regexps share): matching is linear
// in the input whatever the pattern, so no request can make a rule take
// exponential time (std::regex backtracks). `wiremesh apply` rejects patterns
// RE2 refuses (check_pattern, exposed as validateRegex), with the same options.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "http1.h"

namespace re2 {
class RE2;
}

namespace wm {

struct HttpRuleSpec {
  int32_t ref = -1;  // the agent's handle for the policy rule (flow records name it)
  std::optional<std::string> method, path, host;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
};

// Why RE2 refuses pattern (with the proxy's options), or "" if it compiles.
std::string check_pattern(const std::string& pattern);

class L7RuleSet {
 public:
  // all: some L4 rule allows everything on this flow. A pattern RE2 refuses
  // makes its rule match nothing (fails closed); *warnings says which.
  static std::shared_ptr<const L7RuleSet> compile(bool all, const std::vector<HttpRuleSpec>& rules,
                                                  std::vector<std::string>* warnings);

  struct Decision {
    bool allowed;
    int32_t ref;  // the matching rule's ref, -1 for an L4 allow or a denial
  };
  // request.target is matched as parse_request left it (normalised, http1.h).
  Decision decide(const http1::Head& request) const;
  bool all() const { return all_; }

 private:
  struct Rule {
    int32_t ref;
    bool broken = false;
    bool names_upgrade = false;  // a header match on Upgrade: the rule may allow an upgrade
    std::shared_ptr<const re2::RE2> method, path, host;
    std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  };
  bool all_ = false;
  std::vector<Rule> rules_;
};

}  // namespace wm
