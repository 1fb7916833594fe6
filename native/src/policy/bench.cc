#include "bench.h"

#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "../net/reject.h"
#include "../services/lb.h"
#include "engine.h"

namespace wm {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// The i-th of 4M distinct IPv4 addresses in 100.64.0.0/10: an odd stride
// through the /10 visits every address once. Computed, not stored, so the
// benchmark's own memory traffic does not count as lookup cost (a real
// packet's addresses are in cache already).
struct AddressSpace {
  uint32_t stride, start;
  explicit AddressSpace(std::mt19937_64& rng) : stride(uint32_t(rng() | 1) & 0x3FFFFF), start(uint32_t(rng()) & 0x3FFFFF) {}
  uint32_t operator[](size_t i) const { return (100u << 24) | (64u << 16) | ((start + uint32_t(i) * stride) & 0x3FFFFF); }
};

void be(uint32_t v, uint8_t* out) {
  out[0] = uint8_t(v >> 24);
  out[1] = uint8_t(v >> 16);
  out[2] = uint8_t(v >> 8);
  out[3] = uint8_t(v);
}

std::vector<PolicyEntry> policy_entries_for(size_t n) {
  std::vector<PolicyEntry> e;
  e.reserve(n);
  for (size_t i = 0; i < n; i++)
    e.push_back(PolicyEntry{uint32_t(256 + i), 6, 0, uint16_t(80 + (i % 4)), uint16_t(80 + (i % 4)), uint32_t(i + 1)});
  return e;
}

// conntrack-mt: the locking rule under load (conntrack.h). `size` stable
// flows are looked up by a TX thread (egress, established) and an RX thread
// (ingress, their replies) while a third creates and a fourth garbage-collects
// short-lived flows (table growth, backward-shift deletions: the writes a
// lock-free reader must never be misled by). hits = lookups that found their
// flow; every stable flow stays, so hits == ops unless a reader was misled.
void conntrack_stress(const AddressSpace& addrs, size_t size, size_t ops, size_t* hits) {
  Conntrack ct(4 * size + 64, 2 * size);  // the churn fills its own quota, never the table: no stable flow is evicted
  const uint32_t kNow = 1000, kOld = 900;  // churn is created "100 s ago": gc at kNow removes it (60 s)
  auto flow = [&](size_t i, uint8_t* s, bool reply) {
    be(addrs[reply ? 2 * size + 2 * i + 1 : 2 * size + 2 * i], s);
    be(addrs[reply ? 2 * size + 2 * i : 2 * size + 2 * i + 1], s + 4);
    uint16_t a = uint16_t(10000 + i % 50000), b = 5201;
    return FlowTuple{s, s + 4, 4, reply ? b : a, reply ? a : b, 6, 0x10};
  };
  uint8_t s0[8];
  for (size_t i = 0; i < size; i++) ct.create(kCtEgress, flow(i, s0, false), kNow, 0, 1);
  std::atomic<bool> stop{false};
  std::atomic<size_t> found{0};
  auto reader = [&](bool reply) {
    uint8_t s[8];
    size_t n = 0;
    for (size_t i = 0; i < ops / 2; i++) {
      CtResult r = ct.lookup(reply ? kCtIngress : kCtEgress, flow((i * 7919) % size, s, reply), kNow);
      n += r == (reply ? kCtReply : kCtEstablished);
    }
    found += n;
  };
  std::thread writer([&] {
    uint8_t s[8];
    for (size_t round = 0; !stop.load(); round++)
      for (size_t i = 0; i < size && !stop.load(); i++) {
        be(addrs[i], s);
        be(addrs[size + (i + round) % size], s + 4);
        ct.create(kCtEgress, FlowTuple{s, s + 4, 4, uint16_t(i), uint16_t(round), 17, 0}, kOld, 0, 2);
      }
  });
  std::thread collector([&] {
    while (!stop.load()) ct.gc(kNow);
  });
  std::thread tx(reader, false), rx(reader, true);
  tx.join();
  rx.join();
  stop = true;
  writer.join();
  collector.join();
  *hits = found.load();
}

}  // namespace

bool run_policy_bench(const std::string& kind, size_t size, size_t npol, size_t ops, PolicyBenchResult* out,
                      std::string* err) {
  std::mt19937_64 rng(42);
  auto t0 = Clock::now();
  AddressSpace addrs(rng);  // flows: sources 0..size-1, destinations size..2*size-1
  if (size == 0 || size > (1u << 21)) {
    *err = "size must be 1..2097152";
    return false;
  }
  // probe order: a second odd stride through 0..size-1 (cheap, no table)
  auto probe = [size](size_t i) { return size_t((uint64_t(i) * 2654435761u + 12345) % size); };
  volatile uint64_t sink = 0;
  size_t hits = 0;

  if (kind == "ipcache" || kind == "ipcache+policy") {
    IPCache ipc;
    ipc.reserve(size);
    uint8_t a[4];
    for (size_t i = 0; i < size; i++) {
      be(addrs[i], a);
      ipc.upsert(a, 4, 32, IpcacheValue{uint32_t(256 + i % (npol ? npol : 1)), 0});
    }
    // a few real prefixes too (CIDR identities), so misses walk the trie
    for (uint32_t i = 0; i < 64; i++) {
      be((100u << 24) | (64u << 16) | (i << 10), a);
      ipc.upsert(a, 4, 22, IpcacheValue{kIdentityLocalScope + i, 0});
    }
    PolicyMap map(policy_entries_for(npol));
    out->setup_ms = ms_since(t0);
    bool with_policy = kind == "ipcache+policy";
    auto t1 = Clock::now();
    size_t f = probe(0), step = size_t(2654435761u % size);  // probe(i) without a division (see conntrack)
    for (size_t i = 0; i < ops; i++) {
      uint32_t addr = __builtin_bswap32(addrs[f]);
      std::memcpy(a, &addr, 4);
      f += step;
      if (f >= size) f -= size;
      IpcacheValue v;
      if (ipc.lookup(a, 4, &v)) {
        hits++;
        if (with_policy) {
          PolicyResult r = map.lookup(v.identity, 6, 80, true);
          sink = sink + r.rule;
        } else {
          sink = sink + v.identity;
        }
      }
    }
    out->ns_per_op = ms_since(t1) * 1e6 / double(ops);
  } else if (kind == "conntrack" || kind == "engine") {
    // flows between random pod pairs; the engine variant also has every
    // source address in the ipcache as a local endpoint with a policy map
    PolicyEngine eng;
    Conntrack ct(size + 16, size + 16);
    auto packet = [&](size_t i, uint8_t* s, PacketView* pv) {
      be(addrs[i], s);
      be(addrs[size + i], s + 4);
      pv->ip.version = 4;
      pv->ip.proto = pv->proto = 6;
      pv->ip.src = s;
      pv->ip.dst = s + 4;
      pv->ip.addr_len = 4;
      pv->sport = uint16_t(10000 + i % 50000);
      pv->dport = 5201;
      pv->has_ports = true;
      pv->tcp_flags = 0x10;
    };
    if (kind == "engine") {
      // every flow here is endpoint 1's: lift its conntrack quota (node.yaml's default 65 536) above them, so
      // this measures what it always has, an established flow's decision, not the quota's no-entry path
      eng.ct_set_limits(size + 16, size + 16);
      eng.ipcache_reserve(size * 2);
      std::vector<PolicyEntry> entries = policy_entries_for(npol);
      entries.push_back(PolicyEntry{0, 6, 0, 5201, 5201, 99999});
      eng.set_endpoint(1, 300, std::make_shared<PolicyMap>(entries), std::make_shared<PolicyMap>(entries));
    }
    uint8_t s[8];
    PacketView pv;
    for (size_t i = 0; i < size; i++) {
      packet(i, s, &pv);
      if (kind == "engine") {
        eng.ipcache_upsert(s, 4, 32, IpcacheValue{300, 1});
        eng.ipcache_upsert(s + 4, 4, 32, IpcacheValue{uint32_t(256 + i % 16384), 0});
      }
    }
    uint64_t wall = 0;
    for (size_t i = 0; i < size; i++) {
      packet(i, s, &pv);
      if (kind == "conntrack") {
        FlowTuple t{pv.ip.src, pv.ip.dst, 4, pv.sport, pv.dport, 6, 0x10};
        ct.create(kCtEgress, t, 1, 0, 0);
      } else {
        uint32_t id;
        std::shared_lock<std::shared_mutex> lock(eng.mu);
        eng.tx(pv, wall, &id);
      }
    }
    std::vector<FlowRecord> drained;
    eng.drain_flows(&drained);
    out->setup_ms = ms_since(t0);
    auto t1 = Clock::now();
    if (kind == "conntrack") {
      // The tuple straight from the two computed addresses, and probe(i) stepped
      // without a division (the same sequence): the harness puts as few
      // instructions as it can between two lookups, so their cache misses
      // overlap as a batch's would (a PacketView per lookup kept them apart).
      size_t f = probe(0), step = size_t(2654435761u % size);
      for (size_t i = 0; i < ops; i++) {
        uint32_t a[2] = {__builtin_bswap32(addrs[f]), __builtin_bswap32(addrs[size + f])};
        std::memcpy(s, a, 8);
        FlowTuple t{s, s + 4, 4, uint16_t(10000 + f % 50000), 5201, 6, 0x10};
        if (ct.lookup(kCtEgress, t, 1) != kCtMiss) hits++;
        f += step;
        if (f >= size) f -= size;
      }
    } else {
      std::shared_lock<std::shared_mutex> lock(eng.mu);
      for (size_t i = 0; i < ops; i++) {
        uint32_t id;
        packet(probe(i), s, &pv);
        if (eng.tx(pv, wall, &id) != PolicyEngine::kTxDrop) hits++;
      }
    }
    out->ns_per_op = ms_since(t1) * 1e6 / double(ops);
  } else if (kind == "conntrack-mt") {
    out->setup_ms = ms_since(t0);
    auto t1 = Clock::now();
    conntrack_stress(addrs, size, ops, &hits);
    ops = ops / 2 * 2;
    out->ns_per_op = ms_since(t1) * 1e6 / double(ops);
  } else if (kind == "maglev-build") {
    // size backends, npol = M; ops builds, ns_per_op = one build
    if (!is_prime(uint32_t(npol))) {
      *err = "M must be prime";
      return false;
    }
    std::vector<BackendKey> keys(size);
    std::vector<uint32_t> weights(size, 1);
    for (size_t i = 0; i < size; i++) {
      std::memset(&keys[i], 0, sizeof keys[i]);
      be(addrs[i], keys[i].addr);
      keys[i].port = 8080;
      keys[i].family = 4;
    }
    sort_backends(&keys, &weights);
    out->setup_ms = ms_since(t0);
    auto t1 = Clock::now();
    for (size_t i = 0; i < ops; i++) sink = sink + maglev_build(keys, weights, uint32_t(npol))[0];
    out->ns_per_op = ms_since(t1) * 1e6 / double(ops);
    hits = ops;
  } else if (kind == "maglev-lookup" || kind == "service-nat") {
    // One service (VIP 100.127.0.1:80/TCP) with 100 backends in a table of
    // npol slots. maglev-lookup: frontend lookup, flow hash and table slot of
    // a new flow. service-nat: LoadBalancer::forward of an established flow
    // among `size` (NAT table lookup, liveness check, DNAT rewrite).
    if (!is_prime(uint32_t(npol))) {
      *err = "M must be prime";
      return false;
    }
    LoadBalancer lb(size * 2 + 16);
    auto svc = std::make_shared<LbService>();
    svc->id = 1;
    svc->m = uint32_t(npol);
    Frontend fe;
    std::memset(&fe, 0, sizeof fe);
    be((100u << 24) | (127u << 16) | 1, fe.addr);
    fe.port = 80;
    fe.proto = 6;
    fe.family = 4;
    svc->frontends.push_back(fe);
    for (size_t i = 0; i < 100; i++) {
      BackendKey k;
      std::memset(&k, 0, sizeof k);
      be((100u << 24) | (66u << 16) | uint32_t(i + 1), k.addr);
      k.port = 8080;
      k.family = 4;
      svc->backends.push_back(k);
      svc->weights.push_back(1);
    }
    lb.upsert(svc);
    // a TCP ACK from address i, port 10000 + i % 50000, to the VIP
    uint8_t pkt[40];
    auto packet = [&](size_t i) {
      std::memset(pkt, 0, sizeof pkt);
      pkt[0] = 0x45;
      store_be16(pkt + 2, 40);
      pkt[8] = 64;
      pkt[9] = 6;
      be(addrs[i], pkt + 12);
      std::memcpy(pkt + 16, fe.addr, 4);
      store_be16(pkt + 20, uint16_t(10000 + i % 50000));
      store_be16(pkt + 22, 80);
      pkt[32] = 5 << 4;
      pkt[33] = 0x10;
    };
    IpInfo ip;
    std::shared_lock<std::shared_mutex> lock(lb.mu);
    if (kind == "service-nat") {
      for (size_t i = 0; i < size; i++) {
        packet(i);
        parse_ip(pkt, sizeof pkt, &ip);
        uint16_t dport = 80;
        lb.forward(pkt, ip, load_be16(pkt + 20), &dport, 0x10, 1);
      }
    }
    out->setup_ms = ms_since(t0);
    auto t1 = Clock::now();
    for (size_t i = 0; i < ops; i++) {
      size_t f = probe(i);
      if (kind == "maglev-lookup") {
        uint8_t src[4];
        be(addrs[f], src);
        const BackendKey* b = nullptr;
        if (lb.select(fe, src, uint16_t(10000 + f % 50000), &b) && b) {
          hits++;
          sink = sink + b->addr[3];
        }
      } else {
        packet(f);
        parse_ip(pkt, sizeof pkt, &ip);
        uint16_t dport = 80;
        if (lb.forward(pkt, ip, load_be16(pkt + 20), &dport, 0x10, 1) == kLbTranslated) hits++;
      }
    }
    out->ns_per_op = ms_since(t1) * 1e6 / double(ops);
  } else {
    *err = "unknown benchmark kind " + kind;
    return false;
  }
  (void)sink;
  out->ops = ops;
  out->hits = hits;
  return true;
}

}  // namespace wm
