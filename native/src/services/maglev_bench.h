// Maglev microbenchmarks (npm run bench:maglev) and the reference they are
// measured against in the same run: the previous implementation, kept as the
// paper's algorithm written plainly (walk each permutation over the slot
// table; frontend FlatMap with the generic byte hash; a 38-byte flow key
// hashed byte-wise; slot = hash % M). The unit tests also check that
// maglev_build gives the reference's table slot for slot.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "maglev.h"

namespace wm {

// The reference build: same inputs, same table as maglev_build.
std::vector<uint32_t> maglev_build_reference(const std::vector<BackendKey>& backends,
                                             const std::vector<uint32_t>& weights, uint32_t m);

struct MaglevBenchResult {
  double ns_per_op = 0;  // one build, or one lookup
  double setup_ms = 0;   // not measured: RunBench (testhooks.cc) answers it for every bench
  size_t ops = 0;
  size_t hits = 0;  // lookups that found a backend
};

// kind: "build" | "build-avx2" | "build-scalar" | "build-ref" (one table of n
// unweighted backends, ops builds; -avx2 and -scalar cap the build's walk),
// "lookup" | "lookup-ref" (one service of n backends in a table of m slots,
// ops new-flow lookups over 1M distinct flows: frontend, flow hash, slot).
// m must be prime; false with *err on bad arguments.
bool run_maglev_bench(const std::string& kind, size_t n, uint32_t m, size_t ops, MaglevBenchResult* out,
                      std::string* err);

}  // namespace wm
