#include "policymap.h"

#include <algorithm>

namespace wm {

PolicyMap::PolicyMap(std::vector<PolicyEntry> entries) : by_identity_(16), entries_(std::move(entries)) {
  std::stable_sort(entries_.begin(), entries_.end(), [](const PolicyEntry& a, const PolicyEntry& b) {
    if (a.identity != b.identity) return a.identity < b.identity;
    auto rank = [](uint8_t action) { return action == kActionDeny ? 0 : action == kActionRedirect ? 1 : 2; };
    return rank(a.action) < rank(b.action);
  });
  by_identity_.reserve(entries_.size());
  for (uint32_t i = 0; i < entries_.size();) {
    uint32_t j = i;
    while (j < entries_.size() && entries_[j].identity == entries_[i].identity) j++;
    by_identity_.put(entries_[i].identity, Span{i, j - i});
    i = j;
  }
}

static inline bool matches(const PolicyEntry& e, uint8_t proto, uint16_t port, bool has_ports) {
  if (e.proto != 0 && e.proto != proto) return false;
  bool any_port = e.port_lo == 0 && e.port_hi == 65535;
  if (any_port) return true;
  return has_ports && port >= e.port_lo && port <= e.port_hi;
}

PolicyResult PolicyMap::lookup(uint32_t identity, uint8_t proto, uint16_t port, bool has_ports) const {
  const Span* spans[2] = {by_identity_.find(identity), identity != 0 ? by_identity_.find(0) : nullptr};
  const PolicyEntry* allow = nullptr;
  const PolicyEntry* redirect = nullptr;
  for (const Span* s : spans) {
    if (!s) continue;
    for (uint32_t i = s->first; i < s->first + s->count; i++) {
      const PolicyEntry& e = entries_[i];
      if (!matches(e, proto, port, has_ports)) continue;
      if (e.action == kActionDeny) return PolicyResult{kPolicyDeny, e.rule};
      // denies come first in a group, then redirects: the first other match decides the group
      if (e.action == kActionRedirect) {
        if (!redirect) redirect = &e;
      } else if (!allow) {
        allow = &e;
      }
      break;
    }
  }
  if (redirect) return PolicyResult{kPolicyRedirect, redirect->rule};
  if (allow) return PolicyResult{kPolicyAllow, allow->rule};
  return PolicyResult{kPolicyDefaultDeny, 0};
}

}  // namespace wm
