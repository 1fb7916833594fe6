// ICMP and ICMPv6 as policy and conntrack see them.
//
// Three kinds of message (RFC 792, RFC 4443, RFC 4620; the pairs are the ones
// Linux conntrack tracks):
//  - a query and its answer: echo 8/0 (ICMPv6 128/129), timestamp 13/14,
//    information 15/16, address mask 17/18, ICMPv6 node information 139/140.
//    "Ports": the identifier on the asking end, 0 on the other (a request
//    identifier/0, a reply 0/identifier), and the conntrack key also carries
//    the request type and which end asked (FlowTuple::icmp_request), so a
//    request never matches as a reply and one kind never answers another. A
//    request may create a conntrack entry; an answer only finds one (an
//    unsolicited answer is for policy alone).
//  - an error (IPv4 3, 11, 12; ICMPv6 1-4): passes as related to the flow it
//    quotes (PolicyEngine::related) or by policy; never a conntrack lookup or
//    entry.
//  - anything else (a redirect, a router advertisement, ICMP in IPv6, ...):
//    no conntrack at all, policy decides each packet.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine.h"

namespace wm {

// Fills `out`'s ICMP fields (ports, icmp_request/icmp_reply, icmp_error,
// stateless, quoted) from an ICMP message of at least 8 bytes (l4) of an IP
// packet of `version`.
void parse_icmp(const uint8_t* l4, size_t l4len, int version, PacketView* out);

}  // namespace wm
