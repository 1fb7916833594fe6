// Fuzzes the policy data path: (1) the FlatMap against std::map under a
// random sequence of puts, erases and finds (backward-shift deletion is easy
// to get subtly wrong), both the default table and the ipcache's (filled to
// 3/4); (2) an identity-tagged plaintext through tag parsing, IP/L4 parsing
// and the engine's TX and RX decisions with a populated
// ipcache, policy maps and conntrack; (3) an IPv6 packet built from the input
// with a chain of extension headers (hop-by-hop, routing, fragment, AH,
// destination options, unknown ones) in front of an upper-layer header: the
// walk must find the same protocol and ports a plain packet has, or say why
// it could not (later fragment, unknown header, chain too long); (4) a small
// conntrack (64 entries, 16 per endpoint or source) driven by a random
// sequence of inbound and outbound flows to four pods from eight sources,
// replies, time and gc: its accounts must keep every bound (the inbound half,
// a destination's quarter), sum up (the destinations' counts to the half's,
// the half and the pods' own to the table's size) and return to zero; (5)
// IPv4 ICMP queries, answers and errors quoting a flow (see fuzz_ipv4_icmp),
// on (2)'s path behind an IP version nibble of 2.
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "net/ip.h"
#include "policy/conntrack.h"
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
      pe->set_endpoint(ep, 0x10100 + ep, std::make_shared<PolicyMap>(in), std::make_shared<PolicyMap>(eg));
    return pe;
  }();
  return e;
}

// (3): data = [count, then per header: type selector, length byte, fragment
// offset byte] then the upper-layer protocol selector and 20 L4 bytes.
static void fuzz_ipv6_chain(const uint8_t* data, size_t size) {
  static const uint8_t kTypes[] = {0, 43, 44, 51, 60, 60, 253, 50};
  static const uint8_t kUpper[] = {kProtoTCP, kProtoUDP, kProtoICMPv6, kProtoSCTP, kProtoNoNext};
  if (size < 2) return;
  size_t n = data[0] % 12, i = 1;
  static uint8_t pkt[40 + 12 * 2048 + 20];  // 12 headers of at most (255 + 1) * 8 bytes
  std::memset(pkt, 0, sizeof pkt);
  size_t off = 40;
  uint8_t* next = pkt + 6;
  int walked = 0;
  bool later = false, unknown = false;
  for (size_t h = 0; h < n && i + 3 <= size; h++, i += 3) {
    uint8_t type = kTypes[data[i] % sizeof kTypes];
    size_t len = type == 44 ? 8 : type == 51 ? (size_t(data[i + 1]) + 2) * 4 : (size_t(data[i + 1]) + 1) * 8;
    *next = type;
    if (type == 253 || type == 50) {  // unknown to the walk: nothing after it is read
      unknown = unknown || (!later && walked <= kMaxIpv6ExtHeaders);
      next = pkt + off;  // its "next header" byte is never read; keep writing past it harmlessly
      off += 8;
      continue;
    }
    if (!unknown && !later) walked++;
    if (type == 44) {
      store_be16(pkt + off + 2, uint16_t((data[i + 2] & 3) << 3));
      if ((data[i + 2] & 3) && !unknown && walked <= kMaxIpv6ExtHeaders) later = true;
    } else {
      pkt[off + 1] = data[i + 1];
    }
    next = pkt + off;
    off += len;
  }
  uint8_t upper = kUpper[(i < size ? data[i] : 0) % sizeof kUpper];
  *next = upper;
  i++;
  for (size_t b = 0; b < 20; b++) pkt[off + b] = i + b < size ? data[i + b] : 0;
  pkt[off + 12] = 0x50;
  off += 20;
  store_be16(pkt + 4, uint16_t(off - 40));
  pkt[0] = 0x60;
  IpInfo ip;
  if (!parse_ip(pkt, off, &ip)) __builtin_trap();
  PacketView pv;
  if (!parse_l4(pkt, ip, &pv)) __builtin_trap();  // every header fits: never malformed
  bool too_long = walked > kMaxIpv6ExtHeaders;
  UpperLayer::Kind want = unknown ? UpperLayer::kUnknownHeader
                          : later ? UpperLayer::kLaterFragment
                          : too_long ? UpperLayer::kChainTooLong
                                     : UpperLayer::kFound;
  // the first reason met along the chain wins; only check what is unambiguous
  if (!unknown && !later && pv.l4 != want) __builtin_trap();
  if (pv.l4 == UpperLayer::kFound) {
    if (pv.proto != upper || pv.has_ports != (upper == kProtoTCP || upper == kProtoUDP || upper == kProtoSCTP)) __builtin_trap();
    if (pv.has_ports && pv.dport != load_be16(pkt + off - 20 + 2)) __builtin_trap();
  } else if (pv.has_ports) {
    __builtin_trap();  // no ports without a found upper-layer header
  }
  // and through the engine, truncated at every length the walk may stop at
  PolicyEngine* pe = engine();
  std::shared_lock<std::shared_mutex> lock(pe->mu);
  uint32_t wire = 0;
  pe->tx(pv, 0, &wire);
  pe->rx(pv, 0x10100, 1, 0);
  for (size_t cut = 40; cut < off; cut += 1 + cut / 8) {
    store_be16(pkt + 4, uint16_t(cut - 40));
    if (parse_ip(pkt, cut, &ip) && parse_l4(pkt, ip, &pv)) pe->rx(pv, 0x10100, 1, 0);
  }
}

// (5): an IPv4 ICMP message built from the input, through parse_l4 and the
// engine. data = [src, dst, type selector, code, id (2), quoted protocol,
// quoted IHL, quoted cut, flags], then the quoted packet's L4 bytes. The
// oracle (RFC 792; the pairs Linux conntrack tracks): a query or its answer
// carries its request type and identifier, an error (3, 11, 12) quotes a flow
// that is valid exactly when its IPv4 header and the L4 bytes its protocol
// needs are there, anything else is stateless. An error may follow the quoted
// flow itself (sent first, so related() finds it tracked). Then the record
// gate (icmprecord.h): the same packet again at once never counts a new flow
// when no conntrack entry tracks it.
static void fuzz_ipv4_icmp(const uint8_t* data, size_t size) {
  static const uint8_t kTypes[] = {8, 0, 13, 14, 15, 16, 17, 18, 3, 11, 12, 5, 9, 10, 4, 255};
  static const uint8_t kQuoted[] = {kProtoTCP, kProtoUDP, kProtoSCTP, kProtoICMP, kProtoICMPv6, 47};
  if (size < 10) return;
  static uint8_t pkt[20 + 8 + 60 + 64];
  std::memset(pkt, 0, sizeof pkt);
  auto addr = [](uint8_t* p, uint8_t sel) {  // a pod of the engine's ipcache, or the world
    const uint8_t a[4] = {uint8_t(sel & 0x80 ? 198 : 100), uint8_t(sel & 0x80 ? 18 : 64), 0, uint8_t(sel % 64)};
    std::memcpy(p, a, 4);
  };
  uint8_t type = kTypes[data[2] % sizeof kTypes], flags = data[9];
  if (type == 255) type = data[3];  // any type, code doubling as it
  uint16_t id = load_be16(data + 4);
  pkt[0] = 0x45;
  pkt[8] = 64;
  pkt[9] = kProtoICMP;
  addr(pkt + 12, data[0]);
  addr(pkt + 16, data[1]);
  uint8_t* icmp = pkt + 20;
  icmp[0] = type;
  icmp[1] = data[3];
  store_be16(icmp + 4, id);
  // the quoted packet: an IPv4 header (with options), as the error's destination sent it, then its L4 bytes
  uint8_t* q = icmp + 8;
  size_t qihl = 20 + size_t(data[7] % 4) * 4;
  uint8_t qproto = kQuoted[data[6] % sizeof kQuoted];
  q[0] = uint8_t(0x40 | (qihl / 4));
  q[8] = 64;
  q[9] = qproto;
  std::memcpy(q + 12, pkt + 16, 4);  // from the error's destination ...
  addr(q + 16, flags & 1 ? data[0] : uint8_t(data[0] ^ 1));  // ... to its sender, or to a third party
  for (size_t b = 0; b < 64; b++) q[qihl + b] = 10 + b < size ? data[10 + b] : 0;
  size_t qlen = qihl + 64;
  store_be16(q + 2, uint16_t(qlen));
  size_t cut = size_t(data[8]) % (qlen + 1);  // the error quotes the first `cut` bytes
  size_t total = 20 + 8 + cut;
  store_be16(pkt + 2, uint16_t(total));

  PolicyEngine* pe = engine();
  std::shared_lock<std::shared_mutex> lock(pe->mu);
  uint32_t wire = 0;
  bool error = type == 3 || type == 11 || type == 12;
  if (error && (flags & 2)) {  // the quoted flow itself first: a conntrack entry for related()
    IpInfo qi;
    PacketView qv;
    if (parse_ip(q, qlen, &qi) && parse_l4(q, qi, &qv)) pe->tx(qv, 0, &wire);
  }
  IpInfo ip;
  PacketView pv;
  if (!parse_ip(pkt, total, &ip) || !parse_l4(pkt, ip, &pv)) __builtin_trap();  // 8 ICMP bytes: never malformed
  bool reply = false;
  uint8_t request = 0;
  for (const auto& pair : {std::pair<uint8_t, uint8_t>{8, 0}, {13, 14}, {15, 16}, {17, 18}})
    if (type == pair.first || type == pair.second) request = pair.first, reply = type == pair.second;
  if (pv.icmp_request != request || pv.icmp_reply != reply || pv.stateless != !request || pv.icmp_error != error)
    __builtin_trap();
  if (request && (pv.sport != (reply ? 0 : id) || pv.dport != (reply ? id : 0))) __builtin_trap();
  if (error) {
    size_t need = qproto == kProtoICMP ? 8 : qproto == kProtoICMPv6 || qproto == 47 ? 0 : 4;
    uint8_t qtype = q[qihl];
    bool query = qtype == 8 || qtype == 0 || (qtype >= 13 && qtype <= 18);
    bool valid = cut >= qihl && cut - qihl >= need && qproto != kProtoICMPv6 && (qproto != kProtoICMP || query);
    if (pv.quoted.valid != valid) __builtin_trap();
    if (valid && need == 4 && (pv.quoted.sport != load_be16(q + qihl) || pv.quoted.dport != load_be16(q + qihl + 2)))
      __builtin_trap();
  }
  pe->tx(pv, 0, &wire);
  // RX: one check, one tuple (a hairpin's two may share a slot of the gate and push each other out)
  uint32_t from = 0x10100 + (flags >> 4);
  uint64_t over = pe->counter(kPolIcmpUnrecorded);
  pe->rx(pv, from, 1, 0);
  uint64_t before = pe->counter(kPolForwardedNew);
  bool marked = pe->counter(kPolIcmpUnrecorded) == over;  // recorded or seen, not held back by its sender's budget
  pe->rx(pv, from, 1, 0);
  if (marked && (pv.stateless || pv.icmp_reply) && pe->counter(kPolForwardedNew) != before) __builtin_trap();
  std::vector<FlowRecord> flows;
  if (flags & 4) pe->drain_flows(&flows);
}

// (4): data = 4 bytes per step: [op, a, b, c].
static void fuzz_conntrack_accounts(const uint8_t* data, size_t size) {
  constexpr size_t kMax = 64, kPer = 16;
  Conntrack ct(kMax, kPer);
  uint32_t now = 100;
  auto flow = [](uint8_t* s, uint8_t* d, int src, int dst, uint16_t sport, bool reply) {
    uint8_t a[4] = {100, 64, 9, uint8_t(src)}, b[4] = {100, 64, 3, uint8_t(dst)};
    std::memcpy(reply ? d : s, a, 4);
    std::memcpy(reply ? s : d, b, 4);
    return FlowTuple{s, d, 4, reply ? uint16_t(53) : sport, reply ? sport : uint16_t(53), kProtoUDP, 0};
  };
  for (size_t i = 0; i + 4 <= size; i += 4) {
    uint8_t op = data[i], a = data[i + 1], b = data[i + 2], c = data[i + 3];
    uint8_t s[4], d[4];
    int src = a % 8, ep = 1 + b % 4;
    switch (op % 5) {
      case 0:  // a source's new flow to a pod
        ct.create(kCtIngress, flow(s, d, src, ep, c, false), now, 1, uint32_t(ep));
        break;
      case 1:  // the pod answers it (or starts one of its own, charged to it, if there is none)
        if (ct.lookup(kCtEgress, flow(s, d, src, ep, c, true), now) == kCtMiss)
          ct.create(kCtEgress, flow(s, d, src, ep, c, true), now, 1, uint32_t(ep));
        break;
      case 2:  // the source's next packet
        ct.lookup(kCtIngress, flow(s, d, src, ep, c, false), now);
        break;
      case 3:
        now += a % 8;
        break;
      default:
        now += a % 80;
        ct.gc(now);
    }
    int64_t dests = 0;
    size_t own = 0;
    for (uint32_t e = 1; e <= 4; e++) {
      Conntrack::Accounting acc = ct.accounting(e);
      if (acc.destination > kMax / 4) __builtin_trap();
      dests += int64_t(acc.destination);
      own += ct.endpoint_entries(e);
      if (ct.endpoint_entries(e) > kPer) __builtin_trap();
    }
    Conntrack::Accounting acc = ct.accounting(0);
    if (acc.inbound < 0 || size_t(acc.inbound) > kMax / 2 || acc.inbound_evictable > acc.inbound) __builtin_trap();
    if (dests != acc.inbound || ct.size() > kMax || ct.size() != size_t(acc.inbound) + own) __builtin_trap();
  }
  ct.gc(now + 10000);
  Conntrack::Accounting acc = ct.accounting(1);
  if (ct.size() != 0 || acc.inbound != 0 || acc.inbound_evictable != 0 || acc.accounts != 0) __builtin_trap();
}

// FlatMap against std::map: put, erase, find from 3-byte steps of the input, sizes checked after each and
// every entry at the end. key(a, b) makes the table's key from a (6 bits) and b (2 bits).
struct FlatKey {
  uint32_t a, b;
};
template <typename K, typename M, typename F>
void fuzz_flatmap(const uint8_t* data, size_t size, F key) {
  M m(16);
  std::map<uint64_t, uint32_t> model;
  for (size_t i = 1; i + 3 <= size; i += 3) {
    uint32_t a = data[i] & 0x3F, b = data[i + 1] & 3;
    K k = key(a, b);
    uint64_t mk = (uint64_t(a) << 32) | b;
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
    const uint32_t* got = m.find(key(uint32_t(mk >> 32), uint32_t(mk)));
    if (!got || *got != v) __builtin_trap();
  }
}

// The ipcache (both families, several prefix lengths) against a map of its rows: every lookup is the longest
// match the rows give, whatever kind of code holds the value (a remote identity in place, anything else in the
// table's local values, s30), as entries are upserted, change kind in place and are removed, tables grow, shift
// and empty; the local values held are exactly the rows that need one. 6 bytes an operation.
static void fuzz_ipcache_codes(const uint8_t* data, size_t size) {
  IPCache c;
  std::map<std::pair<int, std::vector<uint8_t>>, IpcacheValue> rows;  // (length, masked address bytes)
  static const int kLens4[] = {32, 32, 32, 24, 16, 0, 31, 8}, kLens6[] = {128, 128, 128, 64, 48, 0, 127, 96};
  auto addr_of = [](bool v6, uint8_t a, uint8_t b, std::vector<uint8_t>* out) {
    out->assign(v6 ? 16 : 4, 0);
    (*out)[0] = v6 ? 0xfd : 100;
    (*out)[1] = 64;
    (*out)[out->size() - 2] = a;
    (*out)[out->size() - 1] = b;
  };
  auto masked = [](std::vector<uint8_t> a, int len) {
    for (size_t i = 0; i < a.size(); i++) {
      int keep = len - 8 * int(i);
      a[i] = keep >= 8 ? a[i] : keep <= 0 ? 0 : uint8_t(a[i] & (0xFF << (8 - keep)));
    }
    return a;
  };
  auto reference = [&](const std::vector<uint8_t>& a, IpcacheValue* out) {
    for (int len = int(a.size()) * 8; len >= 0; len--) {
      auto it = rows.find({len, masked(a, len)});
      if (it != rows.end()) return *out = it->second, true;
    }
    return false;
  };
  auto check = [&](const std::vector<uint8_t>& a) {
    IpcacheValue got, want;
    bool g = c.lookup(a.data(), int(a.size()), &got), w = reference(a, &want);
    if (g != w || (g && (got.identity != want.identity || got.endpoint != want.endpoint))) __builtin_trap();
  };
  std::vector<uint8_t> a, q;
  for (size_t i = 0; i + 6 <= size; i += 6) {
    const uint8_t* d = data + i;
    bool v6 = d[0] & 1;
    int len = (v6 ? kLens6 : kLens4)[(d[0] >> 1) & 7];
    addr_of(v6, d[1] & 0x0F, d[2], &a);
    static const uint32_t kIds[] = {0, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu, 256, 257, 0x10000 + 300};
    IpcacheValue v{kIds[d[3] & 7], (d[3] & 8) ? uint32_t(d[3] >> 4) + 1 + ((d[3] & 0x80) ? 0xFFFFFF00u : 0) : 0};
    if ((d[0] >> 4) < 10) {
      c.upsert(a.data(), int(a.size()), len, v);
      rows[{len, masked(a, len)}] = v;
    } else if ((d[0] >> 4) < 14) {
      bool had = rows.erase({len, masked(a, len)}) == 1;
      if (c.remove(a.data(), int(a.size()), len) != had) __builtin_trap();
    }
    addr_of(v6, d[4] & 0x0F, d[5], &q);
    check(q);
    if (c.size() != rows.size()) __builtin_trap();
  }
  size_t need = 0;
  for (auto& [k, v] : rows) {
    need += v.endpoint != 0 || v.identity >= 0x80000000u;
    std::vector<uint8_t> full = k.second;
    check(full);
  }
  if (c.locals_held() != need) __builtin_trap();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if ((data[0] & 3) == 2 && (data[0] & 8) && !(data[0] & 4)) {
    fuzz_conntrack_accounts(data + 1, size - 1);
    return 0;
  }
  if ((data[0] & 3) == 2 && (data[0] & 4)) {
    fuzz_ipv6_chain(data + 1, size - 1);
    return 0;
  }
  if (data[0] & 1) {
    // bit 1: the ipcache's tables (uint32 keys, multiply-shift, filled to 3/4, a value marking free slots: its
    // values here, byte offsets, never are that mark), with bit 4 the ipcache itself against its rows; else the
    // default table
    if ((data[0] & 2) && (data[0] & 0x10))
      fuzz_ipcache_codes(data + 1, size - 1);
    else if (data[0] & 2)
      fuzz_flatmap<uint32_t, LpmTables<uint32_t, 32>::Table>(data, size, [](uint32_t a, uint32_t b) { return a << 2 | b; });
    else
      fuzz_flatmap<FlatKey, FlatMap<FlatKey, uint32_t>>(data, size, [](uint32_t a, uint32_t b) { return FlatKey{a, b}; });
    return 0;
  }
  const uint8_t* pkt = data + 1;
  size_t len = size - 1;
  // Built IPv4 ICMP: on the plain path, behind IP version 2, which parse_ip
  // refuses: inputs of the corpus before it did nothing there, so none is
  // re-routed (every first byte already picks a branch).
  if (len >= 1 && (pkt[0] >> 4) == 2) {
    fuzz_ipv4_icmp(pkt + 1, len - 1);
    return 0;
  }
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
