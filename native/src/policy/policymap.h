// A compiled per-endpoint, per-direction policy map, the native counterpart of
// Cilium's policy map: (remote identity, protocol, port range) -> allow, deny
// or redirect (to the agent's L7 proxy), with the policy rule that produced
// the entry.
//
// Lookup (at most two hash probes, as Cilium's): the entries of the remote
// identity and the wildcard entries (identity 0 = any). Any matching deny
// wins; then a matching redirect (an L7 rule covers the port: the proxy
// decides per request); then the first matching allow; otherwise the packet is
// denied (a map exists only for an endpoint some policy selects in that
// direction).
//
// Maps are immutable once built; PolicyEngine swaps whole maps in.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "flatmap.h"

namespace wm {

struct PolicyEntry {
  uint32_t identity;  // 0 = any
  uint8_t proto;      // 0 = any
  uint8_t action;     // kActionAllow, kActionDeny, kActionRedirect
  uint16_t port_lo;   // [port_lo, port_hi]; 0..65535 = any port (and protocols without ports)
  uint16_t port_hi;
  uint32_t rule;      // id the agent maps back to the policy and rule
};

enum PolicyAction : uint8_t { kActionAllow = 0, kActionDeny = 1, kActionRedirect = 2 };
enum PolicyVerdict : uint8_t { kPolicyAllow = 1, kPolicyDeny = 2, kPolicyDefaultDeny = 3, kPolicyRedirect = 4 };

struct PolicyResult {
  PolicyVerdict verdict;
  uint32_t rule;
};

class PolicyMap {
 public:
  explicit PolicyMap(std::vector<PolicyEntry> entries);
  // has_ports: TCP/UDP/SCTP (a port-restricted entry matches only those).
  PolicyResult lookup(uint32_t identity, uint8_t proto, uint16_t port, bool has_ports) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Span {
    uint32_t first, count;
  };
  FlatMap<uint32_t, Span> by_identity_;
  std::vector<PolicyEntry> entries_;  // grouped by identity; denies, then redirects, then allows
};

}  // namespace wm
