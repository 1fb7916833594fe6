#include "maglev.h"

#include <algorithm>
#include <cstring>

#include "../policy/flatmap.h"

namespace wm {

bool operator<(const BackendKey& a, const BackendKey& b) { return std::memcmp(&a, &b, sizeof a) < 0; }
bool operator==(const BackendKey& a, const BackendKey& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; uint64_t(d) * d <= n; d++)
    if (n % d == 0) return false;
  return true;
}

std::vector<uint32_t> sort_backends(std::vector<BackendKey>* keys, std::vector<uint32_t>* weights) {
  std::vector<uint32_t> order(keys->size());
  for (uint32_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return (*keys)[a] < (*keys)[b]; });
  std::vector<BackendKey> k;
  std::vector<uint32_t> w, kept;
  for (uint32_t i : order) {
    if (!k.empty() && k.back() == (*keys)[i]) continue;
    k.push_back((*keys)[i]);
    w.push_back((*weights)[i]);
    kept.push_back(i);
  }
  *keys = std::move(k);
  *weights = std::move(w);
  return kept;
}

std::vector<uint32_t> maglev_build(const std::vector<BackendKey>& backends, const std::vector<uint32_t>& weights,
                                   uint32_t m) {
  size_t n = backends.size();
  uint32_t wmax = 0;
  for (size_t i = 0; i < n; i++) wmax = std::max(wmax, weights[i]);
  if (n == 0 || wmax == 0 || m < 2) return {};
  std::vector<uint32_t> next(n), skip(n);
  for (size_t i = 0; i < n; i++) {
    uint64_t h1 = hash_bytes(&backends[i], sizeof(BackendKey), kMaglevSeed);
    uint64_t h2 = hash_bytes(&backends[i], sizeof(BackendKey), kMaglevSeed ^ 0x9E3779B97F4A7C15ull);
    next[i] = uint32_t(h1 % m);           // the next slot of i's permutation to try
    skip[i] = uint32_t(h2 % (m - 1) + 1);
  }
  constexpr uint32_t kFree = 0xFFFFFFFFu;
  std::vector<uint32_t> table(m, kFree);
  uint32_t filled = 0;
  for (uint64_t round = 0; filled < m; round++) {
    for (size_t i = 0; i < n && filled < m; i++) {
      uint32_t w = weights[i];
      if (w == 0) continue;
      // A turn in this round when floor(round * w / wmax) steps up.
      if (w != wmax && (round + 1) * w / wmax == round * w / wmax) continue;
      uint32_t c = next[i];
      while (table[c] != kFree) {
        c += skip[i];
        if (c >= m) c -= m;
      }
      table[c] = uint32_t(i);
      c += skip[i];
      next[i] = c >= m ? c - m : c;
      filled++;
    }
  }
  return table;
}

}  // namespace wm
