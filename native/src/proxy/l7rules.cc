#include "l7rules.h"

namespace wm {

std::shared_ptr<const L7RuleSet> L7RuleSet::compile(bool all, const std::vector<HttpRuleSpec>& rules,
                                                    std::vector<std::string>* warnings) {
  auto set = std::make_shared<L7RuleSet>();
  set->all_ = all;
  for (const HttpRuleSpec& s : rules) {
    Rule r;
    r.ref = s.ref;
    auto re = [&](const std::optional<std::string>& src, std::optional<std::regex>* dst, const char* field) {
      if (!src) return;
      try {
        dst->emplace(*src, std::regex::ECMAScript | std::regex::optimize);
      } catch (const std::exception& e) {
        r.broken = true;
        if (warnings) warnings->push_back(std::string("http ") + field + " pattern '" + *src + "': " + e.what());
      } catch (...) {
        // Anything else thrown while compiling is still a rejected pattern.
        r.broken = true;
        if (warnings) warnings->push_back(std::string("http ") + field + " pattern '" + *src + "': not a pattern std::regex accepts");
      }
    };
    re(s.method, &r.method, "method");
    re(s.path, &r.path, "path");
    re(s.host, &r.host, "host");
    for (const auto& h : s.headers) {
      std::string name = h.first;
      for (char& c : name)
        if (c >= 'A' && c <= 'Z') c = char(c + 32);
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
  for (const Rule& r : rules_) {
    if (r.broken) continue;
    if (r.method && !std::regex_match(req.method, *r.method)) continue;
    if (r.path && !std::regex_match(req.target, *r.path)) continue;
    if (r.host && !std::regex_match(host ? *host : kEmpty, *r.host)) continue;
    bool ok = true;
    for (const auto& want : r.headers) {
      bool found = false;
      for (const auto& h : req.headers) {
        if (h.first != want.first) continue;
        if (!want.second || h.second == *want.second) {
          found = true;
          break;
        }
      }
      if (!found) {
        ok = false;
        break;
      }
    }
    if (ok) return {true, r.ref};
  }
  return {false, -1};
}

}  // namespace wm
