#include "maglev.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define WM_MAGLEV_SIMD 1
#else
#define WM_MAGLEV_SIMD 0
#endif

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
// bitmap, and the table. The bitmap is one bit a slot (8 KiB at M = 65537, in
// L1, where the slot table itself would be 256 KiB); the vector walks reduce
// their lanes mod M with two vector operations. Only the scalar walk keeps
// every slot twice (bit c and bit c + M, from double_bitmap on), so that its
// candidates c + (k * skip mod M) < 2M need no reduction. A claim of the
// doubled bitmap writes two words: keeping the copy from the start cost the
// vector builds 3-9 % (one more read-modify-write a turn, and twice the L1
// footprint, which costs most under load: A/B in docs/benchmarks.md). The
// fill count is kept by the caller, not here: a table store (uint32_t) could
// alias a uint32_t member, and a counter reloaded and stored on every turn
// would chain the turns through memory.
class Fill {
 public:
  // `doubles`: the scalar walk will run (double_bitmap), so room for 2M bits; else M bits.
  Fill(uint32_t m, size_t n, const std::vector<uint32_t>& offset, const std::vector<uint32_t>& skip, uint32_t* table,
       bool doubles)
      : m_(m), perm_(n), used_(((doubles ? 2 : 1) * size_t(m) + 31) / 32, 0), table_(table) {
    for (size_t i = 0; i < n; i++) perm_[i] = {offset[i], skip[i]};
  }
  uint32_t m() const { return m_; }
  bool taken(uint32_t c) const { return (used_[c >> 5] >> (c & 31)) & 1; }  // c < M, or < 2M once doubled
  const std::vector<uint32_t>& used() const { return used_; }
  // From here on every slot is kept twice, bit c and bit c + M (for the scalar
  // walk, whose candidates c + k * skip mod M < 2M are then tested unreduced):
  // copies the taken slots so far once, by words.
  void double_bitmap() {
    if (doubled_) return;
    doubled_ = true;
    const uint32_t words = (m_ + 31) / 32, q = m_ >> 5, sh = m_ & 31;
    for (uint32_t w = 0; w < words; w++) {
      // the last word holds slots below M only in its low bits; the copy's first bits land in it
      const uint32_t x = w == q ? used_[w] & ((uint32_t(1) << sh) - 1) : used_[w];
      used_[w + q] |= x << sh;
      if (sh && w + q + 1 < used_.size()) used_[w + q + 1] |= x >> (32 - sh);
    }
  }
  Perm& perm(uint32_t i) { return perm_[i]; }
  // (a + b) mod M for a, b < M
  uint32_t add(uint32_t a, uint32_t b) const {
    uint32_t r = a + b;
    return r >= m_ ? r - m_ : r;
  }
  void claim(uint32_t i, uint32_t c) {  // c < M
    used_[c >> 5] |= uint32_t(1) << (c & 31);
    if (doubled_) {
      const uint32_t d = c + m_;
      used_[d >> 5] |= uint32_t(1) << (d & 31);
    }
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
      c = add(c, p.skip);
      while (taken(c)) c = add(c, p.skip);
    }
    claim(i, c);
  }

  // A W-wide walk's candidates are c + s[k], s[k] = k * skip mod M for k < W
  // (W a power of two); returns W * skip mod M, the walk's step.
  template <int W>
  uint32_t lanes(uint32_t i, uint32_t* s) const {
    s[0] = 0;
    s[1] = perm_[i].skip;
    for (int k = 2; k < W; k++) s[k] = add(s[k >> 1], s[k - (k >> 1)]);
    return add(s[W / 2], s[W / 2]);
  }

  // The first free slot of backend i's permutation from slot c (< M) on,
  // without claiming it. 8 candidates per step, loaded independently and
  // tested without a branch each, so the exit is the only unpredictable branch.
  uint32_t find_scalar(uint32_t i, uint32_t c) const {
    constexpr int W = 8;  // 16 and 32 were slower (the extra candidates cost more than the branches)
    uint32_t s[W];
    const uint32_t sw = lanes<W>(i, s);
    const uint32_t* used = used_.data();
    for (;;) {
      uint32_t free_mask = 0;
      for (int k = 0; k < W; k++) {
        const uint32_t x = c + s[k];
        free_mask |= (~(used[x >> 5] >> (x & 31)) & 1) << k;
      }
      if (free_mask) return add(c, s[__builtin_ctz(free_mask)]);
      c = add(c, sw);
    }
  }
#if WM_MAGLEV_SIMD
  uint32_t find_avx2(uint32_t i, uint32_t c) const;
  uint32_t find_avx512(uint32_t i, uint32_t c) const;
#endif

  // Four turns of distinct backends (one round's) walked against the same
  // bitmap, then claimed in order. The four walks are independent, so the CPU
  // overlaps them, where each walk would otherwise wait for the previous
  // turn's claim (one after another: ~1.1x the vector build). The table is
  // the one-at-a-time table: a walk's slot is the first free one of its
  // permutation unless an earlier of the four took it, and then the walk goes
  // on from it (the slots before it were taken already).
  template <uint32_t (Fill::*Find)(uint32_t, uint32_t) const>
  void walk4(const uint32_t* r) {
    uint32_t c[4];
    for (int j = 0; j < 4; j++) c[j] = (this->*Find)(r[j], perm_[r[j]].next);
    for (int j = 0; j < 4; j++) claim(r[j], taken(c[j]) ? (this->*Find)(r[j], c[j]) : c[j]);
  }

 private:
  uint32_t m_;
  bool doubled_ = false;
  std::vector<Perm> perm_;
  std::vector<uint32_t> used_;
  uint32_t* table_;
};

#if WM_MAGLEV_SIMD
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12's AVX-512 intrinsics (_mm512_undefined_epi32)
// The same walk with 8 (AVX2) or 16 (AVX-512) candidates per step in one
// gather of bitmap words: lane k tests (c + (k * skip mod M)) mod M. The lane
// offsets are computed in registers (k * skip < 8M, reduced by conditional
// subtractions: min(s, s - qM) keeps s when the subtraction wraps); built in
// memory and loaded, they cost a failed store forwarding per walk, ~1.7x the build.
__attribute__((target("avx2"))) __m256i lanes8(uint32_t skip, uint32_t m) {
  __m256i s = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(skip)));
  for (uint32_t q = 4; q; q >>= 1) s = _mm256_min_epu32(s, _mm256_sub_epi32(s, _mm256_set1_epi32(int(q * m))));
  return s;
}

__attribute__((target("avx2"))) uint32_t Fill::find_avx2(uint32_t i, uint32_t c) const {
  const __m256i s = lanes8(perm_[i].skip, m_), low = _mm256_set1_epi32(31), vm = _mm256_set1_epi32(int(m_));
  uint32_t step = perm_[i].skip;  // 8 * skip mod M
  for (int k = 0; k < 3; k++) step = add(step, step);
  const int* used = reinterpret_cast<const int*>(used_.data());
  int taken;
  __m256i x;
  do {  // bit x & 31 of each gathered word moved to the sign bit: one mask bit per lane
    x = _mm256_add_epi32(_mm256_set1_epi32(int(c)), s);
    x = _mm256_min_epu32(x, _mm256_sub_epi32(x, vm));  // mod M
    const __m256i g = _mm256_i32gather_epi32(used, _mm256_srli_epi32(x, 5), 4);
    taken = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_sllv_epi32(g, _mm256_sub_epi32(low, _mm256_and_si256(x, low)))));
    c = add(c, step);
  } while (taken == 0xFF);
  alignas(32) uint32_t lane[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lane), x);
  return lane[__builtin_ctz(~unsigned(taken))];
}

__attribute__((target("avx512f"))) uint32_t Fill::find_avx512(uint32_t i, uint32_t c) const {
  // lanes 8..15 are lanes 0..7 plus 8 * skip mod M
  uint32_t step = perm_[i].skip;
  for (int k = 0; k < 3; k++) step = add(step, step);
  const __m256i lo = lanes8(perm_[i].skip, m_), m = _mm256_set1_epi32(int(m_));
  __m256i hi = _mm256_add_epi32(lo, _mm256_set1_epi32(int(step)));
  hi = _mm256_min_epu32(hi, _mm256_sub_epi32(hi, m));
  const __m512i s = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), one = _mm512_set1_epi32(1);
  const __m512i vm = _mm512_set1_epi32(int(m_));
  step = add(step, step);
  for (const int* used = reinterpret_cast<const int*>(used_.data());; c = add(c, step)) {
    __m512i x = _mm512_add_epi32(_mm512_set1_epi32(int(c)), s);
    x = _mm512_min_epu32(x, _mm512_sub_epi32(x, vm));  // mod M
    // rotate bit x & 31 of each gathered word to bit 0; a zero bit is a free slot
    const __mmask16 free = _mm512_testn_epi32_mask(_mm512_rorv_epi32(_mm512_i32gather_epi32(_mm512_srli_epi32(x, 5), used, 4), x), one);
    if (!free) continue;
    alignas(64) uint32_t lane[16];
    _mm512_store_si512(lane, x);
    return lane[__builtin_ctz(unsigned(free))];
  }
}
#pragma GCC diagnostic pop
#endif

// The last few free slots: walking a permutation costs M / F probes per turn
// when F slots are free, so each turn instead takes the free slot with the
// fewest steps from the backend's position, steps = (slot - next) * skip^-1
// mod M: O(F) per turn. The slot taken is the same one the walk finds.
class Tail {
 public:
  Tail(Fill* f, size_t n) : f_(f), inv_(n, 0), inv_m_(1.0 / double(f->m())) {
    const std::vector<uint32_t>& used = f->used();  // by bitmap words: 2,049 of them for slots < M = 65537
    for (uint32_t w = 0; w < (f->m() + 31) / 32; w++)
      for (uint32_t x = ~used[w]; x; x &= x - 1) {
        const uint32_t c = w * 32 + uint32_t(__builtin_ctz(x));
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
// expected M / F probes per turn exceed the tail's F candidates near F = sqrt(M)
// for the scalar walk; vector walks test 8 or 16 candidates a step, so they
// stay cheaper down to sqrt(M) / 2 (A/B in docs/benchmarks.md).
uint32_t tail_start(uint32_t m, MaglevWalk walk) {
  uint32_t f = 1;
  while (uint64_t(f) * f < m) f++;
  return walk == MaglevWalk::kScalar ? f : (f + 1) / 2;
}

using Find = uint32_t (Fill::*)(uint32_t, uint32_t) const;

// Turns r[*k..rn) while *filled < until: four at a time (Fill::walk4), the
// rest one by one.
template <Find F>
void walk_turns(Fill* f, const uint32_t* r, size_t rn, size_t* k, uint32_t* filled, uint32_t until) {
  for (; *k + 4 <= rn && *filled + 4 <= until; *k += 4, *filled += 4) f->walk4<F>(r + *k);
  for (; *k < rn && *filled < until; ++*k, ++*filled) f->claim(r[*k], (f->*F)(r[*k], f->perm(r[*k]).next));
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

MaglevWalk maglev_walk_supported(MaglevWalk widest) {
#if WM_MAGLEV_SIMD
  static const MaglevWalk cpu = __builtin_cpu_supports("avx512f") ? MaglevWalk::kAvx512
                                : __builtin_cpu_supports("avx2")  ? MaglevWalk::kAvx2
                                                                  : MaglevWalk::kScalar;
  return std::min(widest, cpu);
#else
  (void)widest;
  return MaglevWalk::kScalar;
#endif
}

std::vector<uint32_t> maglev_build(const std::vector<BackendKey>& backends, const std::vector<uint32_t>& weights,
                                   uint32_t m, MaglevWalk walk) {
  size_t n = backends.size();
  uint32_t wmax = 0;
  std::vector<uint32_t> offset, skip;
  if (!maglev_permutations(backends, weights, m, &offset, &skip, &wmax)) return {};
  std::vector<uint32_t> table(m);
  walk = m < (1u << 27) ? maglev_walk_supported(walk) : MaglevWalk::kScalar;  // vector lanes hold up to 8 M
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
  const uint32_t tail_at = m - std::min(m, tail_start(m, walk));
  // below ~45 % full the first or second candidate is nearly always free, and
  // a scalar probe is cheaper than a vector gather; the scalar walk of 8
  // candidates only pays from ~70 %
  const uint32_t wide_at = std::min(tail_at, uint32_t(uint64_t(m) * (walk == MaglevWalk::kScalar ? 70 : 45) / 100));
  Fill f(m, n, offset, skip, table.data(), walk == MaglevWalk::kScalar && wide_at < tail_at);
  std::unique_ptr<Tail> tail;
  uint32_t filled = 0;  // one slot a turn (kept here, not in Fill, so no table store can alias it)
  while (filled < m) {
    const std::vector<uint32_t>* round = &turns;
    if (!weighted.empty()) {
      order.clear();
      for (uint32_t i = 0; i < n; i++) {  // every backend with a turn, in backend order
        if (weights[i] == 0) continue;
        if (weights[i] != wmax) {
          // rem < wmax, so rem + w < wmax is tested as rem < wmax - w: rem + w wrapped in 32 bits for weights
          // near 2^32 (a u32 row field; the product's weights are 1..1000) and the backend lost its turns
          const uint32_t gap = wmax - weights[i];
          if (rem[i] < gap) {
            rem[i] += weights[i];
            continue;
          }
          rem[i] -= gap;
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
    switch (walk) {
#if WM_MAGLEV_SIMD
      case MaglevWalk::kAvx512: walk_turns<&Fill::find_avx512>(&f, r, rn, &k, &filled, tail_at); break;
      case MaglevWalk::kAvx2: walk_turns<&Fill::find_avx2>(&f, r, rn, &k, &filled, tail_at); break;
#endif
      default:
        if (k < rn && filled < tail_at) f.double_bitmap();
        walk_turns<&Fill::find_scalar>(&f, r, rn, &k, &filled, tail_at);
    }
    for (; k < rn && filled < m; k++, filled++) {
      if (!tail) tail = std::make_unique<Tail>(&f, n);
      tail->turn(r[k]);
    }
  }
  return table;
}

}  // namespace wm
