// Internet checksum (RFC 1071) helpers shared by segmentation and coalescing.
// Sums are kept unfolded in 64 bits so partial sums can be chained cheaply.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace wm {

inline uint64_t csum_partial(const uint8_t* p, size_t len, uint64_t sum) {
  // 32-bit big-endian words into a 64-bit accumulator: no carry handling needed
  // until the fold for any packet below 2^32 words.
  while (len >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    sum += __builtin_bswap32(w);
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    sum += uint32_t(p[0]) << 8 | p[1];
    p += 2;
    len -= 2;
  }
  if (len) sum += uint32_t(p[0]) << 8;
  return sum;
}

inline uint16_t csum_fold(uint64_t sum) {
  sum = (sum & 0xFFFFFFFFull) + (sum >> 32);
  sum = (sum & 0xFFFFFFFFull) + (sum >> 32);
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  return uint16_t(sum);
}

// Sum of the TCP/UDP pseudo-header; addr_len is 4 or 16, src and dst adjacent or not.
inline uint64_t pseudo_header_sum(const uint8_t* src, const uint8_t* dst, int addr_len, uint8_t proto,
                                  uint32_t l4_len) {
  uint64_t sum = csum_partial(src, addr_len, 0);
  sum = csum_partial(dst, addr_len, sum);
  return sum + proto + l4_len;
}

inline uint16_t load_be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t load_be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline void store_be16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void store_be32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24); p[1] = uint8_t(v >> 16); p[2] = uint8_t(v >> 8); p[3] = uint8_t(v);
}

}  // namespace wm
