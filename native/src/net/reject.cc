#include "reject.h"

#include <algorithm>
#include <cstring>

namespace wm {

namespace {

constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

// Writes an IP header for a reply to ip (addresses swapped) and returns its length.
size_t reply_ip_header(const IpInfo& ip, uint8_t proto, size_t l4_len, uint8_t* out) {
  if (ip.version == 4) {
    std::memset(out, 0, 20);
    out[0] = 0x45;
    store_be16(out + 2, uint16_t(20 + l4_len));
    out[6] = 0x40;  // DF
    out[8] = 64;
    out[9] = proto;
    std::memcpy(out + 12, ip.dst, 4);
    std::memcpy(out + 16, ip.src, 4);
    ipv4_set_checksum(out, 20);
    return 20;
  }
  std::memset(out, 0, 40);
  out[0] = 0x60;
  store_be16(out + 4, uint16_t(l4_len));
  out[6] = proto;
  out[7] = 64;
  std::memcpy(out + 8, ip.dst, 16);
  std::memcpy(out + 24, ip.src, 16);
  return 40;
}

uint16_t l4_checksum(const IpInfo& ip, uint8_t proto, const uint8_t* l4, size_t len) {
  // The reply's addresses are the request's, swapped.
  uint64_t sum = pseudo_header_sum(ip.dst, ip.src, ip.addr_len, proto, uint32_t(len));
  return uint16_t(~csum_fold(csum_partial(l4, len, sum)));
}

uint16_t fold_update(uint16_t check, uint64_t old_sum, uint64_t new_sum) {
  // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), with the old words' sum m.
  uint64_t s = uint16_t(~check);
  s += uint16_t(~csum_fold(old_sum));
  s += csum_fold(new_sum);
  return uint16_t(~csum_fold(s));
}

}  // namespace

size_t build_reject(const uint8_t* pkt, const IpInfo& ip, uint8_t* out) {
  const uint8_t* l4 = pkt + ip.header_len;
  size_t l4len = ip.total_len - ip.header_len;
  if (ip.fragment && ip.version == 4 && (load_be16(pkt + 6) & 0x1FFF) != 0) return 0;
  if (ip.proto == kProtoTCP) {
    if (l4len < 20) return 0;
    uint8_t flags = l4[13];
    if (flags & kTcpRst) return 0;  // never answer a reset
    size_t off = reply_ip_header(ip, kProtoTCP, 20, out);
    uint8_t* t = out + off;
    std::memset(t, 0, 20);
    std::memcpy(t, l4 + 2, 2);  // ports swapped
    std::memcpy(t + 2, l4, 2);
    if (flags & kTcpAck) {
      std::memcpy(t + 4, l4 + 8, 4);  // seq = their ack
      t[13] = kTcpRst;
    } else {
      size_t doff = size_t(l4[12] >> 4) * 4;
      uint32_t seg = uint32_t(l4len > doff ? l4len - doff : 0) + ((flags & kTcpSyn) ? 1 : 0) + ((flags & kTcpFin) ? 1 : 0);
      store_be32(t + 8, load_be32(l4 + 4) + seg);
      t[13] = kTcpRst | kTcpAck;
    }
    t[12] = 5 << 4;
    store_be16(t + 16, l4_checksum(ip, kProtoTCP, t, 20));
    return off + 20;
  }
  bool v4 = ip.version == 4;
  if (ip.proto == (v4 ? kProtoICMP : kProtoICMPv6)) {
    // Only echo requests get an answer; never answer an error with an error.
    if (l4len < 1 || l4[0] != (v4 ? 8 : 128)) return 0;
  }
  // RFC 792: the header and at least 8 bytes; RFC 4443: as much as fits in 1280.
  size_t quote = v4 ? std::min<size_t>(ip.total_len, 548) : std::min<size_t>(ip.total_len, kRejectMax - 48);
  size_t off = reply_ip_header(ip, v4 ? kProtoICMP : kProtoICMPv6, 8 + quote, out);
  uint8_t* m = out + off;
  std::memset(m, 0, 8);
  m[0] = v4 ? 3 : 1;  // destination unreachable
  m[1] = v4 ? 1 : 3;  // host unreachable / address unreachable
  std::memcpy(m + 8, pkt, quote);
  uint16_t c = v4 ? uint16_t(~csum_fold(csum_partial(m, 8 + quote, 0))) : l4_checksum(ip, kProtoICMPv6, m, 8 + quote);
  store_be16(m + 2, c);
  return off + 8 + quote;
}

void nat_rewrite(uint8_t* pkt, const IpInfo& ip, bool dst, const uint8_t* addr, uint16_t port) {
  uint8_t* a = const_cast<uint8_t*>(dst ? ip.dst : ip.src);
  uint8_t* l4 = pkt + ip.header_len;
  uint8_t* p = l4 + (dst ? 2 : 0);
  size_t n = size_t(ip.addr_len);
  uint64_t old_sum = csum_partial(a, n, load_be16(p));
  uint64_t new_sum = csum_partial(addr, n, port);
  std::memcpy(a, addr, n);
  store_be16(p, port);
  if (ip.version == 4) ipv4_set_checksum(pkt, ip.header_len);
  uint8_t* check = nullptr;
  if (ip.proto == kProtoTCP) check = l4 + 16;
  else if (ip.proto == kProtoUDP) check = l4 + 6;
  if (!check) return;
  uint16_t c = load_be16(check);
  if (ip.proto == kProtoUDP && c == 0 && ip.version == 4) return;  // no checksum in use
  uint16_t nc = fold_update(c, old_sum, new_sum);
  if (ip.proto == kProtoUDP && nc == 0) nc = 0xFFFF;
  store_be16(check, nc);
}

}  // namespace wm
