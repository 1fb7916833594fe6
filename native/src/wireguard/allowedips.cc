#include "allowedips.h"

#include <cstring>

namespace wm {

// A node owns a prefix (bits [0, cidr) of key); children split on bit `cidr`.
// has_peer distinguishes real prefixes from the branch nodes that path
// compression creates where two prefixes diverge. parent (null at a root)
// lets a peer's removal climb from its own nodes instead of walking the trie.
// 56 bytes, a 64-byte malloc chunk (the header's 8 bytes included): a trie of
// n prefixes holds about 2n nodes (n - 1 branch points), so every byte past 56
// is a whole 16 more per node. The fields ordered widest first and cidr (0..128)
// and owner_pos (a peer's prefixes are far fewer than 2^32) narrowed: the
// layout they replaced (int cidr, size_t owner_pos, in declaration order) was
// 64 bytes, an 80-byte chunk: 205 -> 173 B of malloc per prefix (bench/native-malloc.ts).
struct AllowedIPs::Node {
  uint8_t key[16] = {0};
  Node* parent = nullptr;
  std::unique_ptr<Node> child[2];
  uint32_t peer = kNoPeer;
  uint32_t owner_pos = 0;  // index in owned_[peer] while has_peer
  uint8_t cidr = 0;
  bool has_peer = false;
};
static_assert(sizeof(AllowedIPs::Node) <= 56, "a node fits a 64-byte malloc chunk");

namespace {

inline int bit_at(const uint8_t* key, int i) { return (key[i >> 3] >> (7 - (i & 7))) & 1; }

void mask(uint8_t* key, int bytes, int cidr) {
  for (int i = 0; i < bytes; i++) {
    int keep = cidr - 8 * i;
    if (keep >= 8) continue;
    key[i] = keep <= 0 ? 0 : uint8_t(key[i] & (0xFF << (8 - keep)));
  }
}

// Number of leading bits on which a and b agree, capped at limit.
int common_bits(const uint8_t* a, const uint8_t* b, int limit) {
  int n = 0;
  for (int i = 0; n < limit; i++) {
    uint8_t x = a[i] ^ b[i];
    if (x == 0) {
      n += 8;
      continue;
    }
    n += __builtin_clz(uint32_t(x)) - 24;
    break;
  }
  return n < limit ? n : limit;
}

}  // namespace

AllowedIPs::AllowedIPs() = default;
AllowedIPs::~AllowedIPs() = default;

std::unique_ptr<AllowedIPs::Node>& AllowedIPs::slot_of(Node* n) {
  if (n->parent) return n->parent->child[0].get() == n ? n->parent->child[0] : n->parent->child[1];
  return root4_.get() == n ? root4_ : root6_;
}

void AllowedIPs::own(Node* n, uint32_t peer) {
  std::vector<Node*>& list = owned_[peer];
  n->has_peer = true;
  n->peer = peer;
  n->owner_pos = uint32_t(list.size());
  list.push_back(n);
}

// Takes n out of its peer's list (swap with the last: O(1)).
void AllowedIPs::disown(Node* n) {
  auto it = owned_.find(n->peer);
  std::vector<Node*>& list = it->second;
  Node* last = list.back();
  list[n->owner_pos] = last;
  last->owner_pos = n->owner_pos;
  list.pop_back();
  if (list.empty()) owned_.erase(it);
  n->has_peer = false;
  n->peer = kNoPeer;
}

// n just lost its prefix: compress away the nodes that no longer branch,
// climbing while a parent without a prefix loses its last-but-one child.
void AllowedIPs::release(Node* n) {
  while (n && !n->has_peer) {
    if (n->child[0] && n->child[1]) return;  // still a branch point
    Node* parent = n->parent;
    std::unique_ptr<Node>& slot = slot_of(n);
    if (n->child[0] || n->child[1]) {  // one child takes n's place; the parent's fan-out is unchanged
      std::unique_ptr<Node> only = std::move(n->child[0] ? n->child[0] : n->child[1]);
      only->parent = parent;
      slot = std::move(only);
      return;
    }
    slot.reset();  // a leaf: gone, and the parent may now have one child
    n = parent;
  }
}

void AllowedIPs::insert(const uint8_t* addr, int bytes, int cidr, uint32_t peer) {
  uint8_t key[16] = {0};
  std::memcpy(key, addr, bytes);
  if (cidr < 0) cidr = 0;
  if (cidr > bytes * 8) cidr = bytes * 8;
  mask(key, bytes, cidr);
  std::unique_ptr<Node>* slot = bytes == 4 ? &root4_ : &root6_;
  Node* parent = nullptr;
  for (;;) {
    Node* n = slot->get();
    if (!n) {
      auto fresh = std::make_unique<Node>();
      std::memcpy(fresh->key, key, 16);
      fresh->cidr = uint8_t(cidr);
      fresh->parent = parent;
      own(fresh.get(), peer);
      *slot = std::move(fresh);
      count_++;
      return;
    }
    int common = common_bits(n->key, key, cidr < n->cidr ? cidr : n->cidr);
    if (common == n->cidr && common == cidr) {  // same prefix: the new peer takes it
      if (n->has_peer && n->peer == peer) return;
      if (n->has_peer)
        disown(n);
      else
        count_++;
      own(n, peer);
      return;
    }
    if (common == n->cidr) {  // n is a prefix of the new key: descend
      parent = n;
      slot = &n->child[bit_at(key, n->cidr)];
      continue;
    }
    // Diverge: a new node at `common` bits takes n's place. Either it is the new
    // prefix itself (common == cidr) or a branch node with the two as children.
    auto split = std::make_unique<Node>();
    std::memcpy(split->key, key, 16);
    mask(split->key, 16, common);
    split->cidr = uint8_t(common);
    split->parent = parent;
    std::unique_ptr<Node> old = std::move(*slot);
    old->parent = split.get();
    int old_bit = bit_at(old->key, common);
    split->child[old_bit] = std::move(old);
    if (common == cidr) {
      own(split.get(), peer);
    } else {
      auto leaf = std::make_unique<Node>();
      std::memcpy(leaf->key, key, 16);
      leaf->cidr = uint8_t(cidr);
      leaf->parent = split.get();
      own(leaf.get(), peer);
      split->child[!old_bit] = std::move(leaf);
    }
    *slot = std::move(split);
    count_++;
    return;
  }
}

void AllowedIPs::remove_peer(uint32_t peer) {
  auto it = owned_.find(peer);
  if (it == owned_.end()) return;
  std::vector<Node*> nodes = std::move(it->second);
  owned_.erase(it);
  // Nodes still in `nodes` keep has_peer until their turn, so release() never frees one of them early.
  for (Node* n : nodes) {
    n->has_peer = false;
    n->peer = kNoPeer;
    count_--;
    release(n);
  }
}

uint32_t AllowedIPs::lookup(const uint8_t* addr, int bytes) const {
  const Node* n = bytes == 4 ? root4_.get() : root6_.get();
  uint32_t found = kNoPeer;
  const int maxbits = bytes * 8;
  while (n) {
    if (common_bits(n->key, addr, n->cidr) < n->cidr) break;
    if (n->has_peer) found = n->peer;
    if (n->cidr >= maxbits) break;
    n = n->child[bit_at(addr, n->cidr)].get();
  }
  return found;
}

static void walk(const AllowedIPs::Node* n, int bytes, std::vector<AllowedIPs::Entry>* out) {
  if (!n) return;
  if (n->has_peer) {
    AllowedIPs::Entry e;
    std::memcpy(e.addr, n->key, 16);
    e.family_bytes = bytes;
    e.cidr = n->cidr;
    e.peer = n->peer;
    out->push_back(e);
  }
  walk(n->child[0].get(), bytes, out);
  walk(n->child[1].get(), bytes, out);
}

void AllowedIPs::entries(std::vector<Entry>* out) const {
  walk(root4_.get(), 4, out);
  walk(root6_.get(), 16, out);
}

}  // namespace wm
