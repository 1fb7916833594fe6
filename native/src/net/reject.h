// Answers that end a flow at once instead of letting its sender time out:
// a TCP RST for TCP, an ICMP / ICMPv6 destination unreachable for the rest.
// The service load balancer sends them, as the service address, to clients
// whose backend died or whose service has no backend left.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ip.h"

namespace wm {

// Room enough for any reject: an ICMPv6 error quotes at most 1232 bytes.
constexpr size_t kRejectMax = 1280;

// Builds the reject for pkt (parsed as ip) into out (kRejectMax bytes): source
// and destination swapped, checksums complete. Returns its length, or 0 for
// packets that must not be answered (ICMP errors, fragments without header).
size_t build_reject(const uint8_t* pkt, const IpInfo& ip, uint8_t* out);

// Rewrites the destination (or source) address and port of a TCP/UDP packet in
// place, updating the IPv4 header checksum and the L4 checksum incrementally
// (RFC 1624). The packet's checksums must be complete.
void nat_rewrite(uint8_t* pkt, const IpInfo& ip, bool dst, const uint8_t* addr, uint16_t port);

}  // namespace wm
