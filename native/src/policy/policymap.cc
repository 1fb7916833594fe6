#include "policymap.h"

#include <algorithm>
#include <map>

namespace wm {

namespace {
int rank(uint8_t action) { return action == kActionDeny ? 0 : action == kActionRedirect ? 1 : 2; }
bool same(const PolicyEntry& a, const PolicyEntry& b) {
  return a.identity == b.identity && a.proto == b.proto && a.action == b.action && a.port_lo == b.port_lo &&
         a.port_hi == b.port_hi && a.rule == b.rule;
}
}  // namespace

PolicyMap::PolicyMap(std::vector<PolicyEntry> entries) : entries_(std::move(entries)) {
  std::stable_sort(entries_.begin(), entries_.end(), [](const PolicyEntry& a, const PolicyEntry& b) {
    if (a.identity != b.identity) return a.identity < b.identity;
    return rank(a.action) < rank(b.action);
  });
  index(entries_.size());  // identities unknown before the pass: at most one per entry
}

PolicyMap::PolicyMap(Ordered, std::vector<PolicyEntry> entries, uint64_t generation, size_t identities)
    : entries_(std::move(entries)), generation_(generation) {
  index(identities);
}

std::shared_ptr<PolicyMap> PolicyMap::compacted() const {
  // The copy's index sized to the identities, not the entries: groups of several entries would otherwise
  // over-reserve it while the old map is still held (the peak the header bounds).
  return std::shared_ptr<PolicyMap>(new PolicyMap(Ordered{}, entries(), generation_, by_identity_.size()));
}

void PolicyMap::index(size_t identities) {
  by_identity_.clear();
  by_identity_.reserve(identities);  // a hint: put() grows the index past it
  wild_ = Span{};
  live_ = entries_.size();
  for (uint32_t i = 0; i < entries_.size();) {
    uint32_t j = i;
    while (j < entries_.size() && entries_[j].identity == entries_[i].identity) j++;
    if (entries_[i].identity == 0)
      wild_ = make_span(i, j - i);
    else
      by_identity_.put(entries_[i].identity, make_span(i, j - i));
    i = j;
  }
}

void PolicyMap::order_group(std::vector<PolicyEntry>* g) {
  std::stable_sort(g->begin(), g->end(), [](const PolicyEntry& a, const PolicyEntry& b) { return rank(a.action) < rank(b.action); });
}

void PolicyMap::set_group(uint32_t identity, std::vector<PolicyEntry> group) {
  const Span* old = span(identity);
  Span s = old ? *old : Span{};
  live_ = live_ - s.count + group.size();
  if (group.size() <= s.count) {
    // in place: the group shrinks (its tail becomes garbage)
    std::copy(group.begin(), group.end(), entries_.begin() + s.first);
    s.count = uint32_t(group.size());
  } else {
    s.first = uint32_t(entries_.size());
    s.count = uint32_t(group.size());
    entries_.insert(entries_.end(), group.begin(), group.end());
  }
  s = make_span(s.first, s.count);
  if (identity == 0)
    wild_ = s.count ? s : Span{};
  else if (s.count)
    by_identity_.put(identity, s);
  else
    by_identity_.erase(identity);
}

void PolicyMap::update(const std::vector<PolicyEntry>& upserts, const std::vector<PolicyEntry>& removes) {
  // the new group of every identity named, in identity order (deterministic)
  std::map<uint32_t, std::vector<PolicyEntry>> groups;
  auto group = [&](uint32_t id) -> std::vector<PolicyEntry>& {
    auto it = groups.find(id);
    if (it != groups.end()) return it->second;
    std::vector<PolicyEntry>& g = groups[id];
    if (const Span* s = span(id)) g.assign(entries_.begin() + s->first, entries_.begin() + s->first + s->count);
    return g;
  };
  for (const PolicyEntry& r : removes) {
    std::vector<PolicyEntry>& g = group(r.identity);
    g.erase(std::remove_if(g.begin(), g.end(), [&](const PolicyEntry& e) { return same(e, r); }), g.end());
  }
  for (const PolicyEntry& u : upserts) group(u.identity).push_back(u);
  for (auto& [id, g] : groups) {
    order_group(&g);
    set_group(id, std::move(g));
  }
  generation_++;
}

std::vector<PolicyEntry> PolicyMap::entries() const {
  std::vector<std::pair<uint32_t, Span>> spans;
  spans.reserve(by_identity_.size() + 1);
  if (wild_.count) spans.emplace_back(0, wild_);
  by_identity_.for_each([&](uint32_t id, const Span& s) { spans.emplace_back(id, s); });
  std::sort(spans.begin(), spans.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<PolicyEntry> out;
  out.reserve(live_);
  for (const auto& [id, s] : spans) out.insert(out.end(), entries_.begin() + s.first, entries_.begin() + s.first + s.count);
  return out;
}

PolicyResult PolicyMap::lookup_groups(uint32_t identity, uint8_t proto, uint16_t port, bool has_ports) const {
  const Span* spans[2] = {span(identity), identity != 0 ? span(0) : nullptr};
  const PolicyEntry* allow = nullptr;
  const PolicyEntry* redirect = nullptr;
  for (const Span* s : spans) {
    if (!s) continue;
    for (uint32_t i = 0; i < s->count; i++) {
      const PolicyEntry& e = i == 0 ? s->head : entries_[s->first + i];
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
