// Allowed-IPs table under arbitrary insert/remove/lookup sequences, checked
// against a linear longest-prefix scan; each peer's prefixes as the device
// reads them back (peer_prefixes, s35) against per-peer lists in insertion
// order (a prefix taken from another peer moves to the end of the taker's
// list, one the peer holds stays put); at the end its entries against the
// model's and every peer's list dropped with it.
#include <algorithm>
#include <cassert>
#include <cstring>
#include <vector>

#include "../src/wireguard/allowedips.h"

using namespace wm;

namespace {
struct Ref {
  uint8_t addr[16];
  int bytes, cidr;
  uint32_t peer;
};
bool same(const Ref& r, const AllowedIPs::Entry& e) {
  return r.bytes == e.family_bytes && r.cidr == e.cidr && std::memcmp(r.addr, e.addr, 16) == 0;
}
void check_list(const AllowedIPs& t, uint32_t peer, const std::vector<Ref>& want) {
  std::vector<AllowedIPs::Entry> got;
  t.peer_prefixes(peer, &got);
  assert(got.size() == want.size());
  for (size_t i = 0; i < got.size(); i++) assert(got[i].peer == peer && same(want[i], got[i]));
}
bool match(const Ref& r, const uint8_t* a, int bytes) {
  if (r.bytes != bytes) return false;
  for (int i = 0; i < r.cidr; i++) {
    int bit = 7 - (i & 7);
    if (((r.addr[i >> 3] >> bit) & 1) != ((a[i >> 3] >> bit) & 1)) return false;
  }
  return true;
}
void mask(uint8_t* a, int bytes, int cidr) {
  for (int i = 0; i < bytes; i++) {
    int keep = cidr - 8 * i;
    if (keep >= 8) continue;
    a[i] = keep <= 0 ? 0 : uint8_t(a[i] & (0xFF << (8 - keep)));
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  AllowedIPs t;
  std::vector<Ref> model;
  std::vector<Ref> lists[8];  // per peer, in the order it was given its prefixes
  size_t off = 0;
  while (off + 4 <= size) {
    uint8_t op = data[off] % 3;
    int bytes = (data[off + 1] & 1) ? 16 : 4;
    int cidr = data[off + 2] % (bytes * 8 + 1);
    uint32_t peer = data[off + 3] % 8;
    off += 4;
    uint8_t a[16] = {0};
    size_t take = std::min<size_t>(size_t(bytes), size - off);
    std::memcpy(a, data + off, take);
    off += take;
    if (op == 0) {
      t.insert(a, bytes, cidr, peer);
      Ref r;
      std::memcpy(r.addr, a, 16);
      mask(r.addr, bytes, cidr);
      r.bytes = bytes;
      r.cidr = cidr;
      r.peer = peer;
      bool replaced = false;
      uint32_t was = AllowedIPs::kNoPeer;
      for (auto& m : model)
        if (m.bytes == bytes && m.cidr == cidr && std::memcmp(m.addr, r.addr, 16) == 0) was = m.peer, m.peer = peer, replaced = true;
      if (!replaced) model.push_back(r);
      if (was != peer) {
        if (was != AllowedIPs::kNoPeer) {
          auto& l = lists[was];
          l.erase(std::remove_if(l.begin(), l.end(), [&](const Ref& x) { return x.bytes == r.bytes && x.cidr == r.cidr && std::memcmp(x.addr, r.addr, 16) == 0; }), l.end());
        }
        lists[peer].push_back(r);
      }
      check_list(t, peer, lists[peer]);
    } else if (op == 1) {
      t.remove_peer(peer);
      std::vector<Ref> kept;
      for (auto& m : model)
        if (m.peer != peer) kept.push_back(m);
      model.swap(kept);
      lists[peer].clear();
      check_list(t, peer, lists[peer]);
    } else {
      uint32_t want = AllowedIPs::kNoPeer;
      int best = -1;
      for (auto& m : model)
        if (m.cidr > best && match(m, a, bytes)) best = m.cidr, want = m.peer;
      assert(t.lookup(a, bytes) == want);
    }
  }
  assert(t.size() == model.size());
  std::vector<AllowedIPs::Entry> got;
  t.entries(&got);
  assert(got.size() == model.size());
  for (size_t i = 0; i < got.size(); i++) {
    if (i > 0) {  // IPv4 first, then by address, then by length
      const auto& a = got[i - 1];
      const auto& b = got[i];
      int c = std::memcmp(a.addr, b.addr, 16);
      assert(a.family_bytes < b.family_bytes || (a.family_bytes == b.family_bytes && (c < 0 || (c == 0 && a.cidr < b.cidr))));
    }
    bool found = false;
    for (auto& m : model)
      if (m.bytes == got[i].family_bytes && m.cidr == got[i].cidr && m.peer == got[i].peer &&
          std::memcmp(m.addr, got[i].addr, 16) == 0)
        found = true;
    assert(found);
  }
  for (uint32_t p = 0; p < 8; p++) check_list(t, p, lists[p]);
  for (uint32_t p = 0; p < 8; p++) t.remove_peer(p);
  assert(t.size() == 0 && t.listed() == 0);
  return 0;
}
