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

// One backend's permutation as the fill walks it: the next slot to try and the
// step, side by side (one cache line holds eight backends' state).
struct Perm {
  uint32_t next, skip;
};

// The fill state: every backend's permutation, which slots are taken as a
// bitmap (M / 8 bytes: 8 KiB at M = 65537, in L1, where the slot table itself
// would be 256 KiB), and the table. The fill count is kept by the caller, not
// here: a table store (uint32_t) could alias a uint32_t member, and a counter
// reloaded and stored on every turn would chain the turns through memory.
class Fill {
 public:
  Fill(uint32_t m, size_t n, const std::vector<uint32_t>& offset, const std::vector<uint32_t>& skip, uint32_t* table)
      : m_(m), perm_(n), used_((m + 63) / 64, 0), table_(table) {
    for (size_t i = 0; i < n; i++) perm_[i] = {offset[i], skip[i]};
  }
  uint32_t m() const { return m_; }
  bool taken(uint32_t c) const { return (used_[c >> 6] >> (c & 63)) & 1; }
  const std::vector<uint64_t>& used() const { return used_; }
  Perm& perm(uint32_t i) { return perm_[i]; }
  // (a + b) mod M for a, b < M
  uint32_t add(uint32_t a, uint32_t b) const {
    uint32_t r = a + b;
    return r >= m_ ? r - m_ : r;
  }
  void claim(uint32_t i, uint32_t c) {
    used_[c >> 6] |= uint64_t(1) << (c & 63);
    table_[c] = i;
    perm_[i].next = add(c, perm_[i].skip);
  }
  // Backend i's turn while the table is mostly free: walk its permutation to
  // the first free slot. The first two candidates are tested without a branch
  // (a conditional move picks the free one), so the walk's branch is taken only
  // when both are taken: below 70 % full that is rarer than one taken slot,
  // whose unpredictable branch cost ~6 % of the build (A/B in docs/benchmarks.md).
  void probe2(uint32_t i) {
    const Perm p = perm_[i];
    const uint32_t c0 = p.next, c1 = add(c0, p.skip);
    const bool t0 = taken(c0), t1 = taken(c1);
    uint32_t c = t0 ? c1 : c0;
    if (t0 & t1) {
      c = add(c1, p.skip);
      while (taken(c)) c = add(c, p.skip);
    }
    claim(i, c);
  }

  // The same walk once most slots are taken: W candidates per step, loaded
  // independently and tested without a branch each, so the exit is the only
  // unpredictable branch (a walk then takes several probes anyway). W = 8:
  // 16 and 32 were slower (the extra candidates cost more than the branches).
  template <int W>
  void probe_wide(uint32_t i) {
    const Perm p = perm_[i];
    uint32_t s[W];
    s[0] = 0;
    s[1] = p.skip;
    for (int k = 2; k < W; k++) s[k] = add(s[k >> 1], s[k - (k >> 1)]);  // k * skip mod M
    const uint32_t sw = add(s[W / 2], s[W / 2]);
    const uint64_t* used = used_.data();
    for (uint32_t c = p.next;; c = add(c, sw)) {
      uint64_t free_mask = 0;
      for (int k = 0; k < W; k++) {
        const uint32_t x = add(c, s[k]);
        free_mask |= uint64_t(~(used[x >> 6] >> (x & 63)) & 1) << k;
      }
      if (free_mask) return claim(i, add(c, s[__builtin_ctzll(free_mask)]));
    }
  }

 private:
  uint32_t m_;
  std::vector<Perm> perm_;
  std::vector<uint64_t> used_;
  uint32_t* table_;
};

// The last few free slots: walking a permutation costs M / F probes per turn
// when F slots are free, so each turn instead takes the free slot with the
// fewest steps from the backend's position, steps = (slot - next) * skip^-1
// mod M: O(F) per turn. The slot taken is the same one the walk finds.
class Tail {
 public:
  Tail(Fill* f, size_t n) : f_(f), inv_(n, 0), inv_m_(1.0 / double(f->m())) {
    const std::vector<uint64_t>& used = f->used();  // by bitmap words: 1,024 of them at M = 65537
    for (uint32_t w = 0; w < used.size(); w++)
      for (uint64_t x = ~used[w]; x; x &= x - 1) {
        const uint32_t c = w * 64 + uint32_t(__builtin_ctzll(x));
        if (c < f->m()) free_.push_back(c);
      }
  }
  void turn(uint32_t i) {
    const uint32_t m = f_->m(), c = f_->perm(i).next;
    if (inv_[i] == 0) inv_[i] = inverse_mod(f_->perm(i).skip, m);
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
  Fill f(m, n, offset, skip, table.data());
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
  const uint32_t wide_at = std::min(tail_at, uint32_t(uint64_t(m) * 7 / 10));
  std::unique_ptr<Tail> tail;
  uint32_t filled = 0;  // one slot a turn (kept here, not in Fill, so no table store can alias it)
  while (filled < m) {
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
    const uint32_t* r = round->data();
    const size_t rn = round->size();
    size_t k = 0;
    // each phase runs while it is the cheaper one, over as much of the round as it can
    for (; k < rn && filled < wide_at; k++, filled++) f.probe2(r[k]);
    for (; k < rn && filled < tail_at; k++, filled++) f.probe_wide<8>(r[k]);
    for (; k < rn && filled < m; k++, filled++) {
      if (!tail) tail = std::make_unique<Tail>(&f, n);
      tail->turn(r[k]);
    }
  }
  return table;
}

}  // namespace wm
