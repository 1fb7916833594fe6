// The new-flow path of the load balancer: frontend (VIP, port, protocol) ->
// service, and the flow hash that picks the Maglev slot.
//
// One fixed-key hash of the frontend serves both the frontend table and, mixed
// with the client's address and port, the flow hash: a new flow costs two
// 64x64->128-bit multiplies (wyhash's "mum" mixing), one probe of a small
// table, and one read of the Maglev table. The keys are fixed (not per
// process) because every node must send a flow to the same backend; the
// frontend table holds only control-plane keys, so fixed keys cannot be used
// to flood it with collisions.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace wm {

struct LbService;

struct Frontend {
  uint8_t addr[16];  // IPv4 in the first 4 bytes, the rest zero
  uint16_t port;     // host order
  uint8_t proto;
  uint8_t family;  // 4 or 6
};

namespace flowhash {

constexpr uint64_t kA = 0xa0761d6478bd642full, kB = 0xe7037ed1a0b428dbull, kC = 0x8ebc6af09c88c6e3ull,
                   kD = 0x589965cc75374cc3ull;

inline uint64_t mum(uint64_t a, uint64_t b) {
  unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return uint64_t(r) ^ uint64_t(r >> 64);
}
inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// The frontend's hash: the table index and the flow hash's key.
inline uint64_t frontend(const Frontend& fe) {
  uint64_t tail = uint64_t(fe.port) | uint64_t(fe.proto) << 16 | uint64_t(fe.family) << 24;
  return mum(mum(load64(fe.addr) ^ kA, load64(fe.addr + 8) ^ kB) ^ tail, kC);
}

// A flow's hash from its frontend's hash, client address (4 bytes for IPv4,
// 16 for IPv6) and client port. Both multiplicands depend on the client, so
// sequential ports or addresses do not map to an arithmetic series of slots.
inline uint64_t flow(uint64_t fe_hash, const uint8_t* src, uint8_t family, uint16_t sport) {
  uint64_t x;
  if (family == 4) {
    uint32_t a;
    std::memcpy(&a, src, 4);
    x = uint64_t(a) | uint64_t(sport) << 32;
  } else {
    x = mum(load64(src) ^ kA, load64(src + 8) ^ kD) ^ sport;
  }
  return mum(x ^ fe_hash, ((x << 32) | (x >> 32)) ^ kD);
}

// Slot of a hash in a table of m slots: the high half of the hash's upper 32
// bits times m (Lemire's multiply-shift reduction; no division).
inline uint32_t slot(uint64_t h, uint32_t m) { return uint32_t(((h >> 32) * uint64_t(m)) >> 32); }

}  // namespace flowhash

// Frontend -> service: open addressing with linear probing at load <= 1/2,
// rebuilt whole by the control thread under the load balancer's exclusive
// lock, read by packet threads under its shared lock.
class FrontendTable {
 public:
  FrontendTable() { clear(); }
  size_t size() const { return size_; }
  void clear() {
    slots_.assign(16, Slot{});
    mask_ = 15;
    size_ = 0;
  }
  // Inserts or replaces.
  void put(const Frontend& fe, const LbService* svc) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    Slot* s = probe(fe, flowhash::frontend(fe));
    if (!s->svc) size_++;
    s->fe = fe;
    s->svc = svc;
  }
  // fe's service or null; h: flowhash::frontend(fe).
  const LbService* find(const Frontend& fe, uint64_t h) const { return const_cast<FrontendTable*>(this)->probe(fe, h)->svc; }
  // The shape FlatMap::find has, for callers that do not need the hash.
  const LbService* const* find(const Frontend& fe) const {
    const Slot* s = const_cast<FrontendTable*>(this)->probe(fe, flowhash::frontend(fe));
    return s->svc ? &s->svc : nullptr;
  }

 private:
  struct Slot {
    Frontend fe{};
    const LbService* svc = nullptr;
  };
  // The slot holding fe, or the empty slot where it would go.
  Slot* probe(const Frontend& fe, uint64_t h) {
    for (size_t i = size_t(h) & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (!s.svc || std::memcmp(&s.fe, &fe, sizeof fe) == 0) return &s;
    }
  }
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    size_ = 0;
    for (const Slot& s : old)
      if (s.svc) put(s.fe, s.svc);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace wm
