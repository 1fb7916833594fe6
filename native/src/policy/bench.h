// Native microbenchmarks of the policy hot functions (npm run bench:policy):
// timed in C++ so the figure is the lookup, not a JavaScript call.
#pragma once
#include <cstddef>
#include <string>

namespace wm {

struct PolicyBenchResult {
  double ns_per_op = 0;
  double setup_ms = 0;
  size_t ops = 0;
  size_t hits = 0;
};

// kind: "ipcache" (LPM lookup), "ipcache+policy" (ipcache lookup of the peer
// then the endpoint's policy map), "conntrack" (lookup of an established
// flow), "engine" (PolicyEngine::tx for an established flow: two ipcache
// lookups, endpoint table, conntrack). size: ipcache entries or flows;
// policy_entries: entries in the endpoint's policy map.
// Services (npm run bench:maglev), policy_entries = Maglev table size M:
// "maglev-build" (one table of `size` backends), "maglev-lookup" (frontend,
// flow hash, slot), "service-nat" (forward of an established flow among `size`).
bool run_policy_bench(const std::string& kind, size_t size, size_t policy_entries, size_t ops,
                      PolicyBenchResult* out, std::string* err);

}  // namespace wm
