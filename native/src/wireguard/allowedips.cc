#include "allowedips.h"

#include <algorithm>
#include <cstring>

namespace wm {

namespace {

void mask(uint8_t* key, int bytes, int cidr) {
  for (int i = 0; i < bytes; i++) {
    int keep = cidr - 8 * i;
    if (keep >= 8) continue;
    key[i] = keep <= 0 ? 0 : uint8_t(key[i] & (0xFF << (8 - keep)));
  }
}

}  // namespace

uint32_t* AllowedIPs::owner(const Prefix& p) {
  return p.bytes == 4 ? v4_.find(v4_key(p.addr), p.cidr) : v6_.find(v6_key(p.addr), p.cidr);
}

bool AllowedIPs::erase(const Prefix& p) {
  return p.bytes == 4 ? v4_.erase(v4_key(p.addr), p.cidr) : v6_.erase(v6_key(p.addr), p.cidr);
}

void AllowedIPs::insert(const uint8_t* addr, int bytes, int cidr, uint32_t peer) {
  if (peer == kNoPeer) return;
  Prefix p{};
  p.bytes = uint8_t(bytes == 4 ? 4 : 16);
  std::memcpy(p.addr, addr, p.bytes);
  p.cidr = uint8_t(std::min(std::max(cidr, 0), p.bytes * 8));
  mask(p.addr, p.bytes, p.cidr);
  uint32_t* held = owner(p);
  if (held && *held == peer) return;  // in its list already
  PrefixList& list = owned_[peer];
  // before p is the peer's: a stale copy of it in the list (taken by another since) goes with the compaction, not
  // kept as live beside the copy pushed below (review of s35: one entry past the bound). The index is not changed
  // by a compaction, so `held` still points at p's owner.
  std::vector<Prefix>* v = list.heap();
  if (v && v->size() >= kCompactFrom && v->size() == v->capacity()) compact(peer, v);
  // what may allocate comes before the index changes: a throw (bad_alloc) leaves no prefix in the index that its
  // list lacks (which remove_peer could never erase)
  list.make_room(p);
  if (held) {
    *held = peer;  // taken over: the former owner's copy is stale (see the header)
  } else if (p.bytes == 4) {
    v4_.put(v4_key(p.addr), p.cidr, peer);
  } else {
    v6_.put(v6_key(p.addr), p.cidr, peer);
  }
  list.push_back(p);
}

void AllowedIPs::live(uint32_t peer, const std::vector<Prefix>& list, std::vector<bool>* keep) const {
  auto less = [&](size_t a, size_t b) {
    const Prefix &x = list[a], &y = list[b];
    if (x.bytes != y.bytes) return x.bytes < y.bytes;
    if (x.cidr != y.cidr) return x.cidr < y.cidr;
    return std::memcmp(x.addr, y.addr, 16) < 0;
  };
  std::vector<size_t> by(list.size());
  for (size_t i = 0; i < by.size(); i++) by[i] = i;
  // stable: equal prefixes stay in list order, and the last of them is the one kept (a prefix is listed again
  // only when the peer takes it back from another, A -> B -> A: the earlier copy went stale when B took it)
  std::stable_sort(by.begin(), by.end(), less);
  keep->assign(list.size(), false);
  for (size_t j = 0; j < by.size(); j++) {
    if (j + 1 < by.size() && !less(by[j], by[j + 1])) continue;  // an earlier copy of the one after
    const uint32_t* held = owner(list[by[j]]);
    (*keep)[by[j]] = held && *held == peer;
  }
}

// Drops the prefixes another peer took over and the stale copies of one taken back (A -> B -> A); the rest keep
// their order (peer_prefixes gives the order they were given in).
void AllowedIPs::compact(uint32_t peer, std::vector<Prefix>* list) {
  std::vector<bool> keep;
  live(peer, *list, &keep);
  size_t n = 0;
  for (size_t i = 0; i < list->size(); i++)
    if (keep[i]) (*list)[n++] = (*list)[i];
  list->resize(n);
  // room for as many again: a compaction that freed little is not repeated at the next insert (O(n log n) each)
  if (list->size() > list->capacity() / 2) list->reserve(2 * list->capacity());
}

void AllowedIPs::peer_prefixes(uint32_t peer, std::vector<Entry>* out) const {
  auto it = owned_.find(peer);
  if (it == owned_.end()) return;
  const std::vector<Prefix> list = it->second.copy();
  std::vector<bool> keep;
  live(peer, list, &keep);
  for (size_t i = 0; i < list.size(); i++) {
    if (!keep[i]) continue;
    const Prefix& p = list[i];
    Entry e{};
    std::memcpy(e.addr, p.addr, p.bytes);
    e.family_bytes = p.bytes;
    e.cidr = p.cidr;
    e.peer = peer;
    out->push_back(e);
  }
}

void AllowedIPs::remove_peer(uint32_t peer) {
  auto it = owned_.find(peer);
  if (it == owned_.end()) return;
  for (size_t i = 0; i < it->second.size(); i++) {
    const Prefix p = it->second.at(i);
    const uint32_t* held = owner(p);
    if (held && *held == peer) erase(p);  // (a stale or repeated copy finds another owner or none)
  }
  owned_.erase(it);
}

size_t AllowedIPs::listed() const {
  size_t n = 0;
  for (const auto& kv : owned_) n += kv.second.size();
  return n;
}

void AllowedIPs::entries(std::vector<Entry>* out) const {
  size_t first = out->size();
  auto add = [&](int bytes, const uint8_t* be, int cidr, uint32_t peer) {
    Entry e{};
    std::memcpy(e.addr, be, bytes);
    e.family_bytes = bytes;
    e.cidr = cidr;
    e.peer = peer;
    out->push_back(e);
  };
  v4_.for_each([&](uint32_t k, int len, uint32_t peer) {
    uint8_t be[4] = {uint8_t(k >> 24), uint8_t(k >> 16), uint8_t(k >> 8), uint8_t(k)};
    add(4, be, len, peer);
  });
  v6_.for_each([&](const Ip6Key& k, int len, uint32_t peer) {
    uint8_t be[16];
    for (int i = 0; i < 8; i++) be[i] = uint8_t(k.hi >> (56 - 8 * i)), be[8 + i] = uint8_t(k.lo >> (56 - 8 * i));
    add(16, be, len, peer);
  });
  std::sort(out->begin() + first, out->end(), [](const Entry& a, const Entry& b) {
    if (a.family_bytes != b.family_bytes) return a.family_bytes < b.family_bytes;
    int c = std::memcmp(a.addr, b.addr, 16);
    return c != 0 ? c < 0 : a.cidr < b.cidr;
  });
}

}  // namespace wm
