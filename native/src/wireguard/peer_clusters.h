// Which identities a mesh peer may send: those of the clusters it speaks for
// (its own, plus those it relays for). Cluster ids are 1..255, or 1..511 when
// the mesh is configured for 511 clusters (identity_cluster, engine.h).
#pragma once
#include <cstdint>
#include <vector>

#include "../policy/engine.h"

namespace wm {

constexpr uint32_t kMaxClustersDefault = 255, kMaxClustersExtended = 511;

inline bool valid_max_clusters(uint32_t n) { return n == kMaxClustersDefault || n == kMaxClustersExtended; }

// True when id's cluster bits, read with the mesh's layout, name one of clusters.
inline bool peer_speaks_for(const std::vector<uint16_t>& clusters, uint32_t max_clusters, uint32_t id) {
  uint32_t c = identity_cluster(id, max_clusters);
  for (uint16_t x : clusters)
    if (x == c) return true;
  return false;
}

}  // namespace wm
