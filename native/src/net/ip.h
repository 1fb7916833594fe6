// Minimal IPv4/IPv6 header parsing for the data path: just what cryptokey routing,
// segmentation and coalescing need. Every accessor is bounds-checked by parse_ip.
#pragma once
#include <cstddef>
#include <cstdint>

#include "checksum.h"

namespace wm {

constexpr uint8_t kProtoTCP = 6;
constexpr uint8_t kProtoUDP = 17;
constexpr uint8_t kProtoICMP = 1;
constexpr uint8_t kProtoICMPv6 = 58;
constexpr uint8_t kProtoSCTP = 132;
constexpr uint8_t kProtoNoNext = 59;  // IPv6 "no next header"

struct IpInfo {
  int version = 0;       // 4 or 6
  size_t header_len = 0; // IPv4 IHL*4, or 40 for IPv6 (extension headers are payload)
  size_t total_len = 0;  // from the header; <= the buffer length
  uint8_t proto = 0;     // IPv4 protocol or IPv6 next header
  const uint8_t* src = nullptr;
  const uint8_t* dst = nullptr;
  int addr_len = 0;
  bool fragment = false; // IPv4 MF set or offset non-zero (IPv6: see find_upper_layer)
};

// Parses the IP header at p. Fails (returns false) on anything malformed: bad
// version, short buffer, header length out of range, total length beyond len.
inline bool parse_ip(const uint8_t* p, size_t len, IpInfo* out) {
  if (len < 1) return false;
  int v = p[0] >> 4;
  if (v == 4) {
    if (len < 20) return false;
    size_t ihl = size_t(p[0] & 0x0F) * 4;
    size_t total = load_be16(p + 2);
    if (ihl < 20 || total < ihl || total > len) return false;
    out->version = 4;
    out->header_len = ihl;
    out->total_len = total;
    out->proto = p[9];
    out->src = p + 12;
    out->dst = p + 16;
    out->addr_len = 4;
    out->fragment = (load_be16(p + 6) & 0x3FFF) != 0;
    return true;
  }
  if (v == 6) {
    if (len < 40) return false;
    size_t total = 40 + size_t(load_be16(p + 4));
    if (total > len) return false;
    out->version = 6;
    out->header_len = 40;
    out->total_len = total;
    out->proto = p[6];
    out->src = p + 8;
    out->dst = p + 24;
    out->addr_len = 16;
    out->fragment = false;
    return true;
  }
  return false;
}

// Where the upper-layer (L4) header starts: after the IPv4 options, or after
// the IPv6 extension-header chain. Policy must decide on the protocol the
// receiving kernel will deliver to, so a SYN behind a destination-options
// header is judged as TCP, not as "protocol 60".
struct UpperLayer {
  enum Kind : uint8_t {
    kFound,          // proto/offset name the upper-layer header (may be 59: nothing follows)
    kLaterFragment,  // fragment offset > 0: proto is the fragment's protocol, no L4 header here
    kUnknownHeader,  // IPv6: a next header that is neither a known extension nor TCP/UDP/ICMPv6/SCTP/59
    kChainTooLong,   // IPv6: more than kMaxIpv6ExtHeaders extension headers; the protocol is unknown
  };
  Kind kind = kFound;
  uint8_t proto = 0;
  size_t offset = 0;  // from the start of the IP header
};

// A legitimate packet carries two or three (hop-by-hop, routing, fragment,
// destination options); a longer chain only serves to hide the protocol.
constexpr int kMaxIpv6ExtHeaders = 8;

// Walks IPv4 options / the IPv6 extension headers of a packet parse_ip
// accepted. false: malformed (an extension header runs past the packet).
inline bool find_upper_layer(const uint8_t* p, const IpInfo& ip, UpperLayer* out) {
  out->kind = UpperLayer::kFound;
  out->proto = ip.proto;
  out->offset = ip.header_len;
  if (ip.version == 4) {
    if ((load_be16(p + 6) & 0x1FFF) != 0) out->kind = UpperLayer::kLaterFragment;
    return true;
  }
  uint8_t next = ip.proto;
  size_t off = ip.header_len;
  for (int n = 0;; n++) {
    switch (next) {
      case kProtoTCP: case kProtoUDP: case kProtoICMPv6: case kProtoSCTP: case kProtoNoNext:
        out->proto = next;
        out->offset = off;
        return true;
      case 0: case 43: case 44: case 51: case 60:  // hop-by-hop, routing, fragment, AH, destination options
        break;
      default:
        out->kind = UpperLayer::kUnknownHeader;
        out->proto = next;
        out->offset = off;
        return true;
    }
    if (n == kMaxIpv6ExtHeaders) {
      out->kind = UpperLayer::kChainTooLong;
      out->proto = next;
      out->offset = off;
      return true;
    }
    if (off + 8 > ip.total_len) return false;  // every extension header is at least 8 bytes
    const uint8_t* h = p + off;
    size_t len = next == 44 ? 8 : next == 51 ? (size_t(h[1]) + 2) * 4 : (size_t(h[1]) + 1) * 8;
    if (off + len > ip.total_len) return false;
    if (next == 44 && (load_be16(h + 2) >> 3) != 0) {
      out->kind = UpperLayer::kLaterFragment;
      out->proto = h[0];
      out->offset = off + len;
      return true;
    }
    next = h[0];
    off += len;
  }
}

inline void ipv4_set_checksum(uint8_t* ip, size_t ihl) {
  ip[10] = ip[11] = 0;
  store_be16(ip + 10, uint16_t(~csum_fold(csum_partial(ip, ihl, 0))));
}

}  // namespace wm
