// One peer's list of prefixes in AllowedIPs (allowedips.h: what the list means, its order and its bound), in 12
// bytes: up to kInline IPv4 prefixes inline, else a heap vector.
//
// Why: an agent holds a list for every peer (16,000 at 16 x 1000), nearly each a node's pod CIDR and its address:
// two IPv4 prefixes. As a std::vector<Prefix> in an unordered_map node that was a 48-byte node chunk and a 48-byte
// chunk for the vector's two 18-byte entries; with this value type the map's node is 24 bytes (a 32-byte chunk)
// and such a list allocates nothing more: 64 B per peer less (issue 16: docs/benchmarks.md s38).
//
// Inline: n_ (0..kInline) entries of 5 bytes, the address big-endian then the length. A list grows out of that
// (a third prefix, or any IPv6 one) into a std::vector<ListedPrefix> whose pointer is kept in the same bytes, and
// stays on the heap until the list goes (its peer removed, or set again by a replacing set, which removes it
// first). Such a list costs 16 B more than before s38: the vector object's own 32-byte chunk, where it sat in a
// 48-byte node (now 32). So a peer with an IPv6 prefix or more than two prefixes pays 16 B more, one with up to
// two IPv4 prefixes 64 B less (the reviews of s38 measured both). Not copyable or movable: it lives in its map node.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace wm {

// A prefix in its peer's list: the address masked to cidr, big-endian (IPv4 in addr[0..3]).
struct ListedPrefix {
  uint8_t addr[16];
  uint8_t cidr;
  uint8_t bytes;  // 4 or 16
};

class PrefixList {
 public:
  static constexpr uint8_t kInline = 2;

  PrefixList() = default;
  PrefixList(const PrefixList&) = delete;
  PrefixList& operator=(const PrefixList&) = delete;
  ~PrefixList() { delete heap(); }

  // The vector once the list is on the heap, else null (inline).
  std::vector<ListedPrefix>* heap() const {
    if (n_ != kHeap) return nullptr;
    std::vector<ListedPrefix>* v;
    std::memcpy(&v, b_, sizeof v);
    return v;
  }

  size_t size() const { return n_ == kHeap ? heap()->size() : n_; }

  ListedPrefix at(size_t i) const {
    if (n_ == kHeap) return (*heap())[i];
    ListedPrefix p{};
    std::memcpy(p.addr, b_ + kEntry * i, 4);
    p.cidr = b_[kEntry * i + 4];
    p.bytes = 4;
    return p;
  }

  // Room for p, so that push_back(p) then allocates nothing and cannot throw: a spill to the heap, or a heap
  // vector's growth (doubling, as std::vector's own), happens here, before the caller changes anything else
  // (AllowedIPs::insert: a throw leaves the index and the list as they were).
  void make_room(const ListedPrefix& p) {
    if (n_ != kHeap) {
      if (p.bytes == 4 && n_ < kInline) return;
      spill();
    }
    std::vector<ListedPrefix>* v = heap();
    if (v->size() == v->capacity()) v->reserve(2 * v->capacity());
  }

  // Appends p: after make_room(p), no allocation.
  void push_back(const ListedPrefix& p) {
    make_room(p);
    if (n_ != kHeap) {
      std::memcpy(b_ + kEntry * n_, p.addr, 4);
      b_[kEntry * n_ + 4] = p.cidr;
      n_++;
      return;
    }
    heap()->push_back(p);
  }

  // Every entry in order, as a new vector: for the few readers that need one (peer_prefixes: UAPI get).
  std::vector<ListedPrefix> copy() const {
    if (n_ == kHeap) return *heap();
    std::vector<ListedPrefix> out;
    for (size_t i = 0; i < n_; i++) out.push_back(at(i));
    return out;
  }

 private:
  static constexpr uint8_t kHeap = 0xFF;
  static constexpr size_t kEntry = 5;

  // Moves the inline entries into a heap vector, whose pointer takes their bytes, with room for one more: the
  // capacity the vector before s38 had at that size (1, 2, 4; it doubles from there in make_room), so AllowedIPs
  // compacts a list at the same sizes as before. A throw (bad_alloc) leaves the list inline and unchanged.
  void spill() {
    auto v = std::make_unique<std::vector<ListedPrefix>>();
    v->reserve(n_ < 2 ? n_ + 1u : 2u * n_);
    for (size_t i = 0; i < n_; i++) v->push_back(at(i));
    std::vector<ListedPrefix>* raw = v.release();
    std::memcpy(b_, &raw, sizeof raw);
    n_ = kHeap;
  }

  uint8_t n_ = 0;
  uint8_t b_[kEntry * kInline + 1] = {};  // kInline entries, or a pointer (8 of the 11 bytes)
};

static_assert(sizeof(PrefixList) == 12, "the map's node stays 24 bytes");
static_assert(sizeof(void*) <= PrefixList::kInline * 5 + 1, "a heap pointer fits the inline bytes");

}  // namespace wm
