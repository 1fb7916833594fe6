#include "icmp.h"

namespace wm {

namespace {
// The request type of a query pair `type` belongs to (0: none), and whether `type` is the answer.
uint8_t query_request(uint8_t type, int version, bool* reply) {
  static constexpr uint8_t kPairs4[][2] = {{8, 0}, {13, 14}, {15, 16}, {17, 18}};
  static constexpr uint8_t kPairs6[][2] = {{128, 129}, {139, 140}};
  const uint8_t(*pairs)[2] = version == 4 ? kPairs4 : kPairs6;
  size_t n = version == 4 ? sizeof kPairs4 / sizeof kPairs4[0] : sizeof kPairs6 / sizeof kPairs6[0];
  for (size_t i = 0; i < n; i++) {
    if (type != pairs[i][0] && type != pairs[i][1]) continue;
    *reply = type == pairs[i][1];
    return pairs[i][0];
  }
  return 0;
}

// A query's conntrack fields and "ports" (see icmp.h); false: not a query.
bool query_fields(const uint8_t* l4, int version, uint16_t* sport, uint16_t* dport, uint8_t* request, bool* reply) {
  *request = query_request(l4[0], version, reply);
  if (!*request) return false;
  uint16_t id = load_be16(l4 + 4);
  *sport = *reply ? 0 : id;
  *dport = *reply ? id : 0;
  return true;
}

// The flow of the packet an ICMP error quotes (its IP header and at least 8
// bytes after it, usually cut short: only what is there is read). A quoted
// ICMP message other than a query is no flow (valid stays false).
void parse_quoted(const uint8_t* p, size_t len, int version, PacketView::Quoted* q) {
  q->valid = false;
  IpInfo ii;
  if (version == 4) {
    if (len < 20 || (p[0] >> 4) != 4) return;
    ii.header_len = size_t(p[0] & 0x0F) * 4;
    if (ii.header_len < 20 || ii.header_len > len) return;
    ii.version = 4;
    ii.proto = p[9];
    ii.src = p + 12;
    ii.dst = p + 16;
    ii.addr_len = 4;
  } else {
    if (len < 40 || (p[0] >> 4) != 6) return;
    ii.version = 6;
    ii.header_len = 40;
    ii.proto = p[6];
    ii.src = p + 8;
    ii.dst = p + 24;
    ii.addr_len = 16;
  }
  ii.total_len = len;
  UpperLayer ul;
  if (!find_upper_layer(p, ii, &ul) || ul.kind != UpperLayer::kFound) return;
  q->src = ii.src;
  q->dst = ii.dst;
  q->proto = ul.proto;
  q->sport = q->dport = 0;
  const uint8_t* l4 = p + ul.offset;
  size_t l4len = len - ul.offset;
  if (ul.proto == kProtoTCP || ul.proto == kProtoUDP || ul.proto == kProtoSCTP) {
    if (l4len < 4) return;
    q->sport = load_be16(l4);
    q->dport = load_be16(l4 + 2);
  } else if (ul.proto == kProtoICMP || ul.proto == kProtoICMPv6) {
    if (ul.proto != (version == 4 ? kProtoICMP : kProtoICMPv6) || l4len < 8) return;
    if (!query_fields(l4, version, &q->sport, &q->dport, &q->icmp_request, &q->icmp_reply)) return;
  }
  q->valid = true;
}
}  // namespace

void parse_icmp(const uint8_t* l4, size_t l4len, int version, PacketView* out) {
  if (query_fields(l4, version, &out->sport, &out->dport, &out->icmp_request, &out->icmp_reply)) return;
  out->stateless = true;
  uint8_t type = l4[0];
  out->icmp_error = version == 4 ? (type == 3 || type == 11 || type == 12) : (type >= 1 && type <= 4);
  if (out->icmp_error) parse_quoted(l4 + 8, l4len - 8, version, &out->quoted);
}

}  // namespace wm
