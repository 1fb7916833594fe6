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
#include <cstdint>
#include <cstring>

#include "../net/endpoint.h"

namespace wm {

struct RoamSet {
  // A node record holds up to 16 addresses, nearly always 1 or 2: the first
  // kMax are roam targets, the rest are not (fail closed; their packets are
  // still received). Fixed and inline: no allocation per peer.
  static constexpr int kMax = 4;
  struct Addr {
    uint8_t len;  // 4 or 16
    uint8_t ip[16];
  };
  bool pinned = false;  // a policy is set (mesh peer)
  uint8_t n = 0;
  Addr addrs[kMax];

  // Whether the endpoint may move to from's address. Called only when from
  // differs from the current endpoint: the common case never gets here.
  bool allows(const Endpoint& from) const {
    if (!pinned) return true;
    int len;
    const uint8_t* ip = from.ip_bytes(&len);
    for (int i = 0; i < n; i++)
      if (addrs[i].len == len && std::memcmp(addrs[i].ip, ip, size_t(len)) == 0) return true;
    return false;
  }
};

}  // namespace wm
