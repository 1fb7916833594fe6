#include "maglev.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

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

namespace {

// Modular inverse of a in Z/m (m prime, 0 < a < m), by the extended Euclidean algorithm.
uint32_t inverse_mod(uint32_t a, uint32_t m) {
  int64_t t = 0, nt = 1, r = m, nr = a;
  while (nr != 0) {
    int64_t q = r / nr;
    std::swap(t, nt);
    nt -= q * t;
    std::swap(r, nr);
    nr -= q * r;
  }
  return uint32_t(t < 0 ? t + m : t);
}

// The fill state: next slot of every backend's permutation to try, its skip,
// and which slots are taken, as a bitmap (M / 8 bytes: 8 KiB at M = 65537, in
// L1, where the slot table itself would be 256 KiB).
struct Fill {
  uint32_t m;
  std::vector<uint32_t> next, skip;
  std::vector<uint64_t> used;
  std::vector<uint32_t>* table;
  uint32_t filled = 0;

  bool taken(uint32_t c) const { return (used[c >> 6] >> (c & 63)) & 1; }
  void claim(uint32_t i, uint32_t c) {
    used[c >> 6] |= uint64_t(1) << (c & 63);
    (*table)[c] = i;
    c += skip[i];
    next[i] = c >= m ? c - m : c;
    filled++;
  }
  // Backend i's turn while the table is mostly free: walk its permutation to the first free slot.
  void probe(uint32_t i) {
    uint32_t c = next[i];
    const uint32_t s = skip[i];
    while (taken(c)) {
      c += s;
      if (c >= m) c -= m;
    }
    claim(i, c);
  }
  // The same walk once most slots are taken: eight candidates per step, loaded
  // independently and tested without a branch each, so the exit is the only
  // unpredictable branch (a walk then takes several probes anyway).
  void probe8(uint32_t i) {
    uint32_t c = next[i];
    const uint32_t s1 = skip[i], s2 = add(s1, s1), s4 = add(s2, s2), s8 = add(s4, s4);
    for (;;) {
      // c + k * skip for k = 0..7 in three levels of additions, not a chain of seven
      uint32_t cs[8];
      cs[0] = c;
      cs[1] = add(c, s1);
      cs[2] = add(c, s2);
      cs[3] = add(cs[1], s2);
      for (int k = 0; k < 4; k++) cs[4 + k] = add(cs[k], s4);
      uint32_t free_mask = 0;
      for (int k = 0; k < 8; k++) free_mask |= uint32_t(!taken(cs[k])) << k;
      if (free_mask) return claim(i, cs[__builtin_ctz(free_mask)]);
      c = add(c, s8);
    }
  }
  // Four consecutive turns (four different backends) at once: the walks run
  // in lockstep against the table as it was before the four, without a
  // branch per walk, then claim in turn order. A walk whose slot an earlier
  // one of the four has just taken continues from there (probe), so the
  // result is the one-at-a-time fill's: the slots a walk passed over were
  // taken before the four, and stay taken.
  void turns4(const uint32_t* b) {
    uint32_t c[4], s[4];
    for (int j = 0; j < 4; j++) {
      c[j] = next[b[j]];
      s[j] = skip[b[j]];
    }
    for (;;) {
      uint32_t busy = 0;
      for (int j = 0; j < 4; j++) {
        uint32_t t = taken(c[j]);
        busy |= t << j;
        uint32_t a = add(c[j], s[j]);
        c[j] = t ? a : c[j];
      }
      if (!busy) break;
    }
    for (int j = 0; j < 4; j++) {
      next[b[j]] = c[j];
      probe(b[j]);
    }
  }
  // (a + b) mod M for a, b < M
  uint32_t add(uint32_t a, uint32_t b) const {
    uint32_t r = a + b;
    return r >= m ? r - m : r;
  }
};

// The last few free slots: walking a permutation costs M / F probes per turn
// when F slots are free, so each turn instead takes the free slot with the
// fewest steps from the backend's position, steps = (slot - next) * skip^-1
// mod M: O(F) per turn. The slot taken is the same one the walk finds.
class Tail {
 public:
  Tail(Fill* f, size_t n) : f_(f), inv_(n, 0), inv_m_(1.0 / double(f->m)) {
    for (uint32_t c = 0; c < f->m; c++)
      if (!f->taken(c)) free_.push_back(c);
  }
  void turn(uint32_t i) {
    const uint32_t m = f_->m, c = f_->next[i];
    if (inv_[i] == 0) inv_[i] = inverse_mod(f_->skip[i], m);
    const uint64_t inv = inv_[i];
    size_t best = 0;
    uint32_t best_steps = m;
    for (size_t k = 0; k < free_.size(); k++) {
      uint32_t d = free_[k] >= c ? free_[k] - c : free_[k] + m - c;
      uint32_t steps = mod(d * inv, m);
      if (steps < best_steps) {
        best_steps = steps;
        best = k;
      }
    }
    f_->claim(i, free_[best]);
    free_[best] = free_.back();
    free_.pop_back();
  }

 private:
  // x mod m for x < 2^41 through a double reciprocal, corrected by one step either way.
  uint32_t mod(uint64_t x, uint32_t m) const {
    int64_t r = int64_t(x) - int64_t(double(x) * inv_m_) * int64_t(m);
    if (r < 0) r += m;
    if (r >= int64_t(m)) r -= m;
    return uint32_t(r);
  }
  Fill* f_;
  std::vector<uint32_t> inv_;  // skip^-1 mod M, computed on a backend's first tail turn
  std::vector<uint32_t> free_;
  double inv_m_;
};

// Free slots left when the build switches from walking to the tail: the walk's
// expected M / F probes per turn exceed the tail's F candidates near F = sqrt(M).
uint32_t tail_start(uint32_t m) {
  uint32_t f = 1;
  while (uint64_t(f) * f < m) f++;
  return f;
}

}  // namespace

bool maglev_permutations(const std::vector<BackendKey>& backends, const std::vector<uint32_t>& weights, uint32_t m,
                         std::vector<uint32_t>* offset, std::vector<uint32_t>* skip, uint32_t* wmax) {
  size_t n = backends.size();
  *wmax = 0;
  for (size_t i = 0; i < n; i++) *wmax = std::max(*wmax, weights[i]);
  if (n == 0 || *wmax == 0 || m < 2) return false;
  offset->resize(n);
  skip->resize(n);
  for (size_t i = 0; i < n; i++) {
    uint64_t h1 = hash_bytes(&backends[i], sizeof(BackendKey), kMaglevSeed);
    uint64_t h2 = hash_bytes(&backends[i], sizeof(BackendKey), kMaglevSeed ^ 0x9E3779B97F4A7C15ull);
    (*offset)[i] = uint32_t(h1 % m);
    (*skip)[i] = uint32_t(h2 % (m - 1) + 1);
  }
  return true;
}

std::vector<uint32_t> maglev_build(const std::vector<BackendKey>& backends, const std::vector<uint32_t>& weights,
                                   uint32_t m) {
  size_t n = backends.size();
  uint32_t wmax = 0;
  std::vector<uint32_t> offset, skip;
  if (!maglev_permutations(backends, weights, m, &offset, &skip, &wmax)) return {};
  std::vector<uint32_t> table(m);
  Fill f{m, std::move(offset), std::move(skip), std::vector<uint64_t>((m + 63) / 64, 0), &table};
  // The backends that take a turn, in order; weighted backends by rounds:
  // backend i takes a turn in round r when floor((r + 1) * w / wmax) steps up,
  // i.e. when r * w mod wmax plus w reaches wmax (kept as a running remainder).
  std::vector<uint32_t> turns, weighted, rem;
  for (uint32_t i = 0; i < n; i++) {
    if (weights[i] == wmax) turns.push_back(i);
    else if (weights[i] != 0) weighted.push_back(i);
  }
  rem.assign(n, 0);
  std::vector<uint32_t> order;
  const uint32_t tail_at = m - std::min(m, tail_start(m));
  const uint32_t half = m / 2;
  // Lockstep groups of four until 90 % full; beyond, walks are long and
  // uneven (four in lockstep wait for the longest), so one at a time, 8-wide.
  const uint32_t lockstep_until = uint32_t(uint64_t(m) * 9 / 10);
  std::unique_ptr<Tail> tail;
  while (f.filled < m) {
    const std::vector<uint32_t>* round = &turns;
    if (!weighted.empty()) {
      order.clear();
      for (uint32_t i = 0; i < n; i++) {  // every backend with a turn, in backend order
        if (weights[i] == 0) continue;
        if (weights[i] != wmax) {
          rem[i] += weights[i];
          if (rem[i] < wmax) continue;
          rem[i] -= wmax;
        }
        order.push_back(i);
      }
      round = &order;
    }
    const std::vector<uint32_t>& r = *round;
    for (size_t k = 0; k < r.size(); k++) {
      if (f.filled == m) break;
      const uint32_t i = r[k];
      if (k + 4 <= r.size() && f.filled + 4 <= lockstep_until) {
        f.turns4(&r[k]);
        k += 3;
      } else if (f.filled < half) {
        f.probe(i);
      } else if (f.filled < tail_at) {
        f.probe8(i);
      } else {
        if (!tail) tail = std::make_unique<Tail>(&f, n);
        tail->turn(i);
      }
    }
  }
  return table;
}

}  // namespace wm
