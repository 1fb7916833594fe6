// Which identities a mesh peer may send: those of the clusters it speaks for
// (its own, plus those it relays for). Cluster ids are 1..255, or 1..511 when
// the mesh is configured for 511 clusters (identity_cluster, engine.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "../policy/engine.h"

namespace wm {

constexpr uint32_t kMaxClustersDefault = 255, kMaxClustersExtended = 511;

inline bool valid_max_clusters(uint32_t n) { return n == kMaxClustersDefault || n == kMaxClustersExtended; }

// A peer's cluster ids: nearly always one (its own), a hub's a few more. Up to kInline held in place, more on the
// heap: no malloc for nearly every peer (a std::vector of one id was a 32-byte malloc chunk per peer, issue 16).
class PeerClusters {
 public:
  static constexpr size_t kInline = 4;
  PeerClusters() = default;
  PeerClusters(const PeerClusters&) = delete;  // hence not movable: a defaulted move would leave n_ beside a null heap_
  PeerClusters& operator=(const PeerClusters&) = delete;
  void assign(const std::vector<uint16_t>& ids) {
    heap_.reset(ids.size() > kInline ? new uint16_t[ids.size()] : nullptr);
    n_ = uint32_t(ids.size());
    std::copy(ids.begin(), ids.end(), heap_ ? heap_.get() : in_);
  }
  const uint16_t* begin() const { return heap_ ? heap_.get() : in_; }
  const uint16_t* end() const { return begin() + n_; }

 private:
  uint16_t in_[kInline] = {0};
  uint32_t n_ = 0;
  std::unique_ptr<uint16_t[]> heap_;
};

// True when id's cluster bits, read with the mesh's layout, name one of clusters (a vector or PeerClusters).
template <class Ids>
bool peer_speaks_for(const Ids& clusters, uint32_t max_clusters, uint32_t id) {
  uint32_t c = identity_cluster(id, max_clusters);
  for (uint16_t x : clusters)
    if (x == c) return true;
  return false;
}

}  // namespace wm
