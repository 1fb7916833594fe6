// Fuzzes the service path: any packet a pod can send to a VIP (or any reply
// a peer can deliver) goes through LoadBalancer::forward / reverse and, when
// rejected, build_reject; rewritten packets must keep valid checksums. Also a
// Maglev build over fuzzer-chosen backends and weights: every slot must name
// a backend with a positive weight.
#include <cstdint>
#include <cstring>
#include <vector>

#include "net/checksum.h"
#include "net/ip.h"
#include "net/reject.h"
#include "services/lb.h"
#include "services/maglev.h"

using namespace wm;

static LoadBalancer* balancer() {
  static LoadBalancer* lb = [] {
    auto* l = new LoadBalancer(4096);
    for (uint32_t id = 1; id <= 2; id++) {
      auto s = std::make_shared<LbService>();
      s->id = id;
      s->m = 251;
      Frontend fe;
      std::memset(&fe, 0, sizeof fe);
      fe.addr[0] = 100, fe.addr[1] = 127, fe.addr[2] = 1, fe.addr[3] = uint8_t(id);
      fe.port = 80;
      fe.proto = id == 1 ? 6 : 17;
      fe.family = 4;
      s->frontends.push_back(fe);
      for (int i = 0; i < (id == 1 ? 5 : 0); i++) {  // service 2 has no backend: rejects
        BackendKey k;
        std::memset(&k, 0, sizeof k);
        k.addr[0] = 100, k.addr[1] = 65, k.addr[2] = 1, k.addr[3] = uint8_t(10 + i);
        k.port = 8080;
        k.family = 4;
        s->backends.push_back(k);
        s->weights.push_back(uint32_t(i % 3));
      }
      l->upsert(s);
    }
    return l;
  }();
  return lb;
}

static bool l4_checksum_ok(const uint8_t* p, const IpInfo& ip) {
  if (ip.fragment || (ip.proto != kProtoTCP && ip.proto != kProtoUDP)) return true;
  size_t l4 = ip.total_len - ip.header_len;
  if (l4 < (ip.proto == kProtoTCP ? 20u : 8u)) return true;
  if (ip.proto == kProtoUDP && load_be16(p + ip.header_len + 6) == 0) return true;
  uint64_t sum = pseudo_header_sum(ip.src, ip.dst, ip.addr_len, ip.proto, uint32_t(l4));
  return csum_fold(csum_partial(p + ip.header_len, l4, sum)) == 0xFFFF;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  if (data[0] == 0xFF) {
    // Maglev over up to 64 backends with fuzzer weights
    size_t n = std::min<size_t>((size - 1) / 2, 64);
    std::vector<BackendKey> keys(n);
    std::vector<uint32_t> w(n);
    for (size_t i = 0; i < n; i++) {
      std::memset(&keys[i], 0, sizeof keys[i]);
      keys[i].addr[3] = data[1 + 2 * i];
      keys[i].family = 4;
      keys[i].port = 1;
      w[i] = data[2 + 2 * i] % 5;
    }
    sort_backends(&keys, &w);
    std::vector<uint32_t> t = maglev_build(keys, w, 251);
    for (uint32_t b : t)
      if (b >= keys.size() || w[b] == 0) __builtin_trap();
    return 0;
  }
  std::vector<uint8_t> pkt(data + 1, data + size);
  IpInfo ip;
  if (!parse_ip(pkt.data(), pkt.size(), &ip)) return 0;
  if (ip.proto != kProtoTCP && ip.proto != kProtoUDP) {
    uint8_t out[kRejectMax];
    build_reject(pkt.data(), ip, out);
    return 0;
  }
  if (ip.total_len - ip.header_len < 4) return 0;  // the device passes only packets with ports
  bool ok_before = l4_checksum_ok(pkt.data(), ip);
  uint16_t sport = load_be16(pkt.data() + ip.header_len), dport = load_be16(pkt.data() + ip.header_len + 2);
  uint8_t flags = ip.proto == kProtoTCP && ip.total_len - ip.header_len > 13 ? pkt[ip.header_len + 13] : 0;
  LoadBalancer* lb = balancer();
  std::shared_lock<std::shared_mutex> lock(lb->mu);
  LbResult r = (data[0] & 1) ? lb->forward(pkt.data(), ip, sport, &dport, flags, data[0] >> 1)
                             : (lb->reverse(pkt.data(), ip, &sport, dport, flags, data[0] >> 1) ? kLbTranslated : kLbNone);
  if (r == kLbReject) {
    uint8_t out[kRejectMax];
    size_t n = build_reject(pkt.data(), ip, out);
    IpInfo rip;
    if (n && !parse_ip(out, n, &rip)) __builtin_trap();
  }
  if (r == kLbTranslated && ok_before && !ip.fragment && !l4_checksum_ok(pkt.data(), ip)) __builtin_trap();
  if (data[0] == 0x80) lb->gc(1000);
  return 0;
}
