// Fuzzes the policy data path: (1) the FlatMap against std::map under a
// random sequence of puts, erases and finds (backward-shift deletion is easy
// to get subtly wrong); (2) an identity-tagged plaintext through tag parsing,
// IP/L4 parsing and the engine's TX and RX decisions with a populated
// ipcache, policy maps and conntrack.
#include <cstdint>
#include <cstring>
#include <map>

#include "net/ip.h"
#include "policy/engine.h"
#include "policy/flatmap.h"

using namespace wm;

static PolicyEngine* engine() {
  static PolicyEngine* e = [] {
    auto* pe = new PolicyEngine();
    uint8_t a[16] = {100, 64, 0, 0};
    pe->ipcache_upsert(a, 4, 10, IpcacheValue{kIdentityLocalScope + 1, 0});
    for (int i = 0; i < 64; i++) {
      a[3] = uint8_t(i);
      pe->ipcache_upsert(a, 4, 32, IpcacheValue{uint32_t(0x10000 + 256 + i), uint32_t(i % 4)});
    }
    std::vector<PolicyEntry> in = {{0x10100, 6, kActionAllow, 80, 90, 1}, {0, 17, kActionDeny, 53, 53, 2},
                                   {0x10101, 6, kActionRedirect, 8080, 8080, 6}, {0, 0, kActionAllow, 0, 65535, 3}};
    std::vector<PolicyEntry> eg = {{0x10101, 0, 1, 0, 65535, 4}, {kIdentityLocalScope + 1, 6, 0, 443, 443, 5}};
    for (uint32_t ep = 1; ep < 4; ep++)
      pe->set_endpoint(ep, 0x10100 + ep, std::make_shared<const PolicyMap>(in), std::make_shared<const PolicyMap>(eg));
    return pe;
  }();
  return e;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1) {
    struct K {
      uint32_t a, b;
    };
    FlatMap<K, uint32_t> m(16);
    std::map<uint64_t, uint32_t> model;
    for (size_t i = 1; i + 3 <= size; i += 3) {
      K k{uint32_t(data[i] & 0x3F), uint32_t(data[i + 1] & 3)};
      uint64_t mk = (uint64_t(k.a) << 32) | k.b;
      switch (data[i + 2] % 3) {
        case 0:
          m.put(k, uint32_t(i));
          model[mk] = uint32_t(i);
          break;
        case 1:
          if (m.erase(k) != (model.erase(mk) == 1)) __builtin_trap();
          break;
        default: {
          const uint32_t* v = m.find(k);
          auto it = model.find(mk);
          if ((v == nullptr) != (it == model.end()) || (v && *v != it->second)) __builtin_trap();
        }
      }
      if (m.size() != model.size()) __builtin_trap();
    }
    for (auto& [mk, v] : model) {
      K k{uint32_t(mk >> 32), uint32_t(mk)};
      const uint32_t* got = m.find(k);
      if (!got || *got != v) __builtin_trap();
    }
    return 0;
  }
  const uint8_t* pkt = data + 1;
  size_t len = size - 1;
  uint32_t identity = 0;
  if (len >= 8 && (pkt[0] >> 4) == 1) {
    identity = load_be32(pkt + 4);
    pkt += 8;
    len -= 8;
  }
  IpInfo ip;
  if (!parse_ip(pkt, len, &ip)) return 0;
  PacketView pv;
  if (!parse_l4(pkt, ip, &pv)) return 0;
  PolicyEngine* pe = engine();
  std::shared_lock<std::shared_mutex> lock(pe->mu);
  uint32_t wire = 0;
  pe->tx(pv, 0, &wire);
  pe->rx(pv, identity, 1, 0);
  pe->untagged_identity(pv, kIdentityWorld);
  std::vector<FlowRecord> flows;
  if (data[0] & 2) pe->drain_flows(&flows);
  return 0;
}
