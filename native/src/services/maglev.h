// Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights.
//
// Every backend gets a permutation of the M table slots from two hashes of its
// key (offset = h1 % M, skip = h2 % (M - 1) + 1). Backends take turns claiming
// the next free slot of their permutation until the table is full. With equal
// weights every backend gets floor(M/N) or ceil(M/N) slots; with weights a
// backend takes a turn in round r only when floor(r * w / w_max) grows, so its
// share follows its weight. Zero-weight backends take no slots.
//
// Nodes agree on tables because the permutation depends only on the backend
// key bytes and a fixed seed, and backends are sorted by key before the build:
// the input order never matters. Removing a backend changes only the slots it
// held plus a few that cascaded (well under 1 % of the others' slots).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace wm {

// The 18-byte identity of a backend: address (IPv4 in the first 4 bytes),
// port, address family (4 or 6), padding.
struct BackendKey {
  uint8_t addr[16];
  uint16_t port;  // host order
  uint8_t family;
  uint8_t pad;
};
bool operator<(const BackendKey& a, const BackendKey& b);
bool operator==(const BackendKey& a, const BackendKey& b);

constexpr uint64_t kMaglevSeed = 0x6D61676C65763031ull;  // same on every node
constexpr uint32_t kMaglevDefaultSize = 16381;

bool is_prime(uint32_t n);

// The paper's permutation of every backend: offset = h1 % m, skip = h2 % (m - 1) + 1,
// hashes of the backend key with fixed seeds (every node agrees). False (nothing
// to build) when there is no backend, no positive weight or m < 2; else *wmax is
// the largest weight. Shared by maglev_build and the bench's reference build.
bool maglev_permutations(const std::vector<BackendKey>& backends, const std::vector<uint32_t>& weights, uint32_t m,
                         std::vector<uint32_t>* offset, std::vector<uint32_t>* skip, uint32_t* wmax);

// Sorts backends by key (weights alongside) and drops duplicate keys; returns
// the input index of every backend kept, in the new order.
std::vector<uint32_t> sort_backends(std::vector<BackendKey>* keys, std::vector<uint32_t>* weights);

// How the build walks a permutation to its next free slot once the table is
// ~45 % full: 8 candidates a step in scalar code, or one vector gather of 8
// (AVX2) or 16 (AVX-512) bitmap words. Every walk gives the same table.
enum class MaglevWalk { kScalar, kAvx2, kAvx512 };

// The widest walk up to `widest` that this CPU runs (x86-64: by CPUID, once).
MaglevWalk maglev_walk_supported(MaglevWalk widest);

// backends must be sorted by key (callers sort once and keep the order);
// weights has one entry per backend; m < 2^27 (callers allow primes up to
// 1048573). Returns table[slot] = backend index, or an empty table when no
// backend has a positive weight. walk: the widest walk to use (tests and the
// benchmark pick narrower ones; the table is the same).
std::vector<uint32_t> maglev_build(const std::vector<BackendKey>& backends, const std::vector<uint32_t>& weights,
                                   uint32_t m, MaglevWalk walk = MaglevWalk::kAvx512);

// A built table as the data path reads it: 16-bit backend indices when the
// backends fit (128 KiB at M = 65537, which stays in L2 where 32-bit entries
// take 256 KiB), 32-bit otherwise. Empty: no selectable backend.
class MaglevTable {
 public:
  void assign(const std::vector<uint32_t>& t, size_t backends) {
    narrow_.clear();
    wide_.clear();
    if (backends <= 0x10000)
      narrow_.assign(t.begin(), t.end());
    else
      wide_ = t;
  }
  bool empty() const { return narrow_.empty() && wide_.empty(); }
  uint32_t operator[](uint32_t slot) const { return narrow_.empty() ? wide_[slot] : narrow_[slot]; }

 private:
  std::vector<uint16_t> narrow_;
  std::vector<uint32_t> wide_;
};

}  // namespace wm
