// A mesh peer's roaming policy: the underlay addresses its endpoint may move to
// (docs/security.md, "A peer's endpoint roams only among its node's addresses").
//
// WireGuard moves a peer's endpoint to the source of every authenticated
// datagram (whitepaper §2.1). A mesh peer is a node with a record naming its
// underlay addresses; a compromised node that spoofs its source could point our
// traffic for it (its pods' answers, keepalives, handshake responses) at any
// address. With a policy set the endpoint moves only to a source whose address
// is one of these (any port); without one (plain WireGuard, wiremesh-wg) it
// roams as in WireGuard. Guarded by Peer::mu.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "../net/endpoint.h"

namespace wm {

struct RoamSet {
  // A node record holds up to 16 addresses, nearly always 1 or 2: the first
  // kMax are roam targets, the rest are not (fail closed; their packets are
  // still received). The first is inline, the others (if any) in one block
  // made by assign(): a peer of a one-address node allocates nothing here,
  // and an idle Peer fits a 160-byte malloc chunk, not a 224-byte one (s35; 128 since s38,
  // issue 16: when all four were inline the set was 70 B of every peer). Per
  // peer of a node with one address 64 B less, two 32 B (the block: 17 B in a
  // 32-byte chunk), three 16 B, four none.
  static constexpr int kMax = 4;
  struct Addr {
    uint8_t len;  // 4 or 16
    uint8_t ip[16];
  };
  Addr first{};
  bool pinned = false;  // a policy is set (mesh peer)
  uint8_t n = 0;
  std::unique_ptr<Addr[]> rest;  // addresses 2..n (n - 1 of them), null when n <= 1

  RoamSet() = default;
  // Not movable: a moved-from set would keep n > 1 beside a null `rest` (review of s35; Peer is neither).
  RoamSet(const RoamSet&) = delete;
  RoamSet& operator=(const RoamSet&) = delete;

  // Pins the set to the first kMax of addrs (pinned false: roams anywhere; addrs then ignored).
  void assign(const std::vector<Endpoint>& addrs, bool pin) {
    pinned = pin;
    n = 0;
    rest.reset();
    if (!pin) return;
    const int count = int(std::min<size_t>(addrs.size(), kMax));
    if (count > 1) rest.reset(new Addr[count - 1]());
    for (int i = 0; i < count; i++) {
      Addr& a = i == 0 ? first : rest[i - 1];
      int len;
      const uint8_t* ip = addrs[i].ip_bytes(&len);
      a.len = uint8_t(len);
      std::memcpy(a.ip, ip, size_t(len));
    }
    n = uint8_t(count);
  }

  // Whether the endpoint may move to from's address. Called only when from
  // differs from the current endpoint: the common case never gets here.
  bool allows(const Endpoint& from) const {
    if (!pinned) return true;
    int len;
    const uint8_t* ip = from.ip_bytes(&len);
    for (int i = 0; i < n; i++) {
      const Addr& a = i == 0 ? first : rest[i - 1];
      if (a.len == len && std::memcmp(a.ip, ip, size_t(len)) == 0) return true;
    }
    return false;
  }
};

}  // namespace wm
