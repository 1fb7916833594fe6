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

struct IpInfo {
  int version = 0;       // 4 or 6
  size_t header_len = 0; // IPv4 IHL*4, or 40 for IPv6 (extension headers are payload)
  size_t total_len = 0;  // from the header; <= the buffer length
  uint8_t proto = 0;     // IPv4 protocol or IPv6 next header
  const uint8_t* src = nullptr;
  const uint8_t* dst = nullptr;
  int addr_len = 0;
  bool fragment = false; // IPv4 MF set or offset non-zero
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

inline void ipv4_set_checksum(uint8_t* ip, size_t ihl) {
  ip[10] = ip[11] = 0;
  store_be16(ip + 10, uint16_t(~csum_fold(csum_partial(ip, ihl, 0))));
}

}  // namespace wm
