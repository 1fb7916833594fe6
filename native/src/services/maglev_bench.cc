#include "maglev_bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

#include "../net/checksum.h"
#include "../policy/flatmap.h"
#include "lb.h"

namespace wm {

std::vector<uint32_t> maglev_build_reference(const std::vector<BackendKey>& backends,
                                             const std::vector<uint32_t>& weights, uint32_t m) {
  size_t n = backends.size();
  uint32_t wmax = 0;
  std::vector<uint32_t> next, skip;
  if (!maglev_permutations(backends, weights, m, &next, &skip, &wmax)) return {};
  constexpr uint32_t kFree = 0xFFFFFFFFu;
  std::vector<uint32_t> table(m, kFree);
  uint32_t filled = 0;
  for (uint64_t round = 0; filled < m; round++) {
    for (size_t i = 0; i < n && filled < m; i++) {
      uint32_t w = weights[i];
      if (w == 0) continue;
      if (w != wmax && (round + 1) * w / wmax == round * w / wmax) continue;
      uint32_t c = next[i];
      while (table[c] != kFree) {
        c += skip[i];
        if (c >= m) c -= m;
      }
      table[c] = uint32_t(i);
      c += skip[i];
      next[i] = c >= m ? c - m : c;
      filled++;
    }
  }
  return table;
}

namespace {

using Clock = std::chrono::steady_clock;

double ns_since(Clock::time_point t) { return std::chrono::duration<double, std::nano>(Clock::now() - t).count(); }

std::vector<BackendKey> bench_backends(size_t n) {
  std::vector<BackendKey> keys(n);
  for (size_t i = 0; i < n; i++) {
    std::memset(&keys[i], 0, sizeof keys[i]);
    store_be32(keys[i].addr, (100u << 24) | (66u << 16) | uint32_t(i + 1));
    keys[i].port = 8080;
    keys[i].family = 4;
  }
  return keys;
}

// The previous new-flow path, for the same-run ratio.
struct ReferenceSelect {
  FlatMap<Frontend, const LbService*> frontends;
  std::vector<uint32_t> table;  // the service's table, 32-bit as it was
  const BackendKey* select(const Frontend& fe, const uint8_t* src, uint16_t sport) const {
    const LbService* const* s = frontends.find(fe);
    if (!s || (*s)->table.empty()) return nullptr;
    uint8_t b[38] = {0};
    int alen = fe.family == 4 ? 4 : 16;
    std::memcpy(b, src, size_t(alen));
    std::memcpy(b + 16, fe.addr, size_t(alen));
    std::memcpy(b + 32, &sport, 2);
    std::memcpy(b + 34, &fe.port, 2);
    b[36] = fe.proto;
    b[37] = uint8_t(alen);
    uint64_t h = hash_bytes(b, sizeof b, 0x666C6F7773656564ull);
    return &(*s)->backends[table[h % (*s)->m]];
  }
};

bool run_lookup(bool reference, size_t n, uint32_t m, size_t ops, MaglevBenchResult* out) {
  LoadBalancer lb(16);
  auto svc = std::make_shared<LbService>();
  svc->id = 1;
  svc->m = m;
  Frontend fe;
  std::memset(&fe, 0, sizeof fe);
  store_be32(fe.addr, (100u << 24) | (127u << 16) | 1);  // 100.127.0.1:80/TCP
  fe.port = 80;
  fe.proto = 6;
  fe.family = 4;
  svc->frontends.push_back(fe);
  svc->backends = bench_backends(n);
  svc->weights.assign(n, 1);
  const LbService* raw = svc.get();
  lb.upsert(svc);
  ReferenceSelect ref;
  ref.frontends.put(fe, raw);
  ref.table = maglev_build(raw->backends, raw->weights, m);
  // 1M flows: client 100.64.0.0/10 address and port from the flow number,
  // visited in a stride order (computed, not stored: a real packet's tuple is
  // in cache already).
  constexpr uint32_t kFlows = 1u << 20, kStride = 0x9E3779u | 1;
  std::shared_lock<std::shared_mutex> lock(lb.mu);
  volatile uint32_t sink = 0;
  uint32_t acc = 0, f = 0;
  size_t hits = 0;
  auto t = Clock::now();
  for (size_t i = 0; i < ops; i++) {
    f = (f + kStride) & (kFlows - 1);
    uint8_t src[4];
    uint32_t a = __builtin_bswap32((100u << 24) | (64u << 16) | (f & 0x3FFFFF));
    std::memcpy(src, &a, 4);  // one store: the lookup's load of it is forwarded, as a parsed header's would be
    uint16_t sport = uint16_t(10000 + (f & 0x7FFF));
    const BackendKey* b = nullptr;
    if (reference)
      b = ref.select(fe, src, sport);
    else
      lb.select(fe, src, sport, &b);
    if (b) {
      hits++;
      acc += b->addr[3];
    }
  }
  out->ns_per_op = ns_since(t) / double(ops);
  sink = acc;
  (void)sink;
  out->hits = hits;
  return true;
}

}  // namespace

bool run_maglev_bench(const std::string& kind, size_t n, uint32_t m, size_t ops, MaglevBenchResult* out,
                      std::string* err) {
  if (!is_prime(m) || m < 3 || m > 1048573 || n == 0 || n > 65536 || ops == 0) {
    *err = "maglevBench(kind, n: 1..65536, m: a prime in 3..1048573, ops > 0)";
    return false;
  }
  out->ops = ops;
  if (kind == "lookup" || kind == "lookup-ref") return run_lookup(kind == "lookup-ref", n, m, ops, out);
  MaglevWalk walk = MaglevWalk::kAvx512;
  if (kind == "build-avx2") walk = MaglevWalk::kAvx2;
  else if (kind == "build-scalar") walk = MaglevWalk::kScalar;
  else if (kind != "build" && kind != "build-ref") {
    *err = "unknown Maglev benchmark " + kind;
    return false;
  }
  std::vector<BackendKey> keys = bench_backends(n);
  std::vector<uint32_t> weights(n, 1);
  sort_backends(&keys, &weights);
  bool reference = kind == "build-ref";
  volatile uint32_t sink = 0;
  auto t = Clock::now();
  for (size_t i = 0; i < ops; i++)
    sink = sink + (reference ? maglev_build_reference(keys, weights, m) : maglev_build(keys, weights, m, walk))[0];
  out->ns_per_op = ns_since(t) / double(ops);
  out->hits = ops;
  return true;
}

}  // namespace wm
