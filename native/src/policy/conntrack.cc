#include "conntrack.h"

#include <cstring>

namespace wm {

namespace {
constexpr uint8_t kTcpFin = 0x01, kTcpRst = 0x04;
}

Conntrack::Key Conntrack::make_key(CtScope scope, const FlowTuple& t, bool* src_is_a) {
  Key k;
  std::memset(&k, 0, sizeof k);
  int c = std::memcmp(t.src, t.dst, size_t(t.addr_len));
  bool a_is_src = c < 0 || (c == 0 && t.sport <= t.dport);
  const uint8_t* a = a_is_src ? t.src : t.dst;
  const uint8_t* b = a_is_src ? t.dst : t.src;
  std::memcpy(k.a, a, size_t(t.addr_len));
  std::memcpy(k.b, b, size_t(t.addr_len));
  k.pa = a_is_src ? t.sport : t.dport;
  k.pb = a_is_src ? t.dport : t.sport;
  k.proto = t.proto;
  k.scope = scope;
  k.family = uint8_t(t.addr_len);
  *src_is_a = a_is_src;
  return k;
}

CtResult Conntrack::lookup(CtScope scope, const FlowTuple& t, uint32_t now_s) {
  bool src_is_a;
  Key k = make_key(scope, t, &src_is_a);
  bool closing = (t.tcp_flags & (kTcpFin | kTcpRst)) != 0;
  for (int pass = 0; pass < 2; pass++) {
    // pass 0: our scope, same orientation; pass 1: the other scope, reversed
    bool want_orig_a = pass == 0 ? src_is_a : !src_is_a;
    bool hit = map_.with(k, [&](Entry* e) {
      if (!e || bool(e->orig_is_a) != want_orig_a) return false;
      e->last_s = now_s;
      if (closing) e->closing = 1;
      return true;
    });
    if (hit) return pass == 0 ? kCtEstablished : kCtReply;
    k.scope = scope == kCtEgress ? kCtIngress : kCtEgress;
  }
  return kCtMiss;
}

bool Conntrack::create(CtScope scope, const FlowTuple& t, uint32_t now_s, uint32_t rule) {
  bool src_is_a;
  Key k = make_key(scope, t, &src_is_a);
  Entry e{now_s, rule, uint8_t(src_is_a), uint8_t((t.tcp_flags & (kTcpFin | kTcpRst)) != 0), uint8_t(t.proto == 6), 0};
  return map_.put(k, e);
}

size_t Conntrack::gc(uint32_t now_s) {
  return map_.erase_if([now_s](const Key&, const Entry& e) {
    uint32_t timeout = e.closing ? kClosingTimeout : e.tcp ? kTcpTimeout : kOtherTimeout;
    return now_s - e.last_s > timeout;
  });
}

}  // namespace wm
