// Allowed-IPs lookups and per-peer churn at the mesh's shape (bench/allowedips-lookup.sh builds it against two
// trees): P peers, each a node address 100.64.x.y/32 and a pod CIDR 100.(65..127).z.0/24, as the agent programs
// them. Prints per P: ns per lookup of a pod address (the TX path's common case: inside a /24), of a node address
// (a /32), of an address no peer holds, and µs per peer churn (remove_peer + its two inserts, set_allowed_ips's
// work). Each figure is the best of REPS runs of N operations over pseudo-random peers (a fixed LCG: both trees
// see the same sequence).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "wireguard/allowedips.h"

using namespace wm;

namespace {
struct Lcg {
  uint32_t x = 12345;
  uint32_t next(uint32_t n) { return (x = x * 1664525u + 1013904223u) % n; }
};
void node_addr(uint32_t i, uint8_t* a) { a[0] = 100, a[1] = 64, a[2] = uint8_t(i >> 8), a[3] = uint8_t(i); }
void pod_cidr(uint32_t i, uint8_t* a) { a[0] = 100, a[1] = uint8_t(65 + (i >> 8)), a[2] = uint8_t(i), a[3] = 0; }
double now_ns() {
  return double(std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count());
}
volatile uint32_t sink;
}  // namespace

int main(int argc, char** argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  const int kOps = 2000000;
  for (uint32_t peers : {1000u, 16000u}) {
    AllowedIPs t;
    uint8_t a[16] = {0};
    for (uint32_t i = 0; i < peers; i++) {
      node_addr(i, a), t.insert(a, 4, 32, i);
      pod_cidr(i, a), t.insert(a, 4, 24, i);
    }
    auto best = [&](auto op, int n) {
      double b = 1e18;
      for (int r = 0; r < reps; r++) {
        Lcg g;
        double t0 = now_ns();
        for (int k = 0; k < n; k++) op(g);
        double per = (now_ns() - t0) / n;
        if (per < b) b = per;
      }
      return b;
    };
    double pod = best([&](Lcg& g) {
      uint32_t i = g.next(peers);
      pod_cidr(i, a), a[3] = uint8_t(1 + (i & 127));
      sink = t.lookup(a, 4);
    }, kOps);
    double node = best([&](Lcg& g) {
      node_addr(g.next(peers), a);
      sink = t.lookup(a, 4);
    }, kOps);
    double miss = best([&](Lcg& g) {
      uint32_t i = g.next(1u << 24);
      a[0] = 198, a[1] = 18, a[2] = uint8_t(i >> 8), a[3] = uint8_t(i);
      sink = t.lookup(a, 4);
    }, kOps);
    double churn = best([&](Lcg& g) {
      uint32_t i = g.next(peers);
      t.remove_peer(i);
      node_addr(i, a), t.insert(a, 4, 32, i);
      pod_cidr(i, a), t.insert(a, 4, 24, i);
    }, 20000) / 1000;
    if (t.size() != 2 * peers) return 1;
    printf("%u %.1f %.1f %.1f %.3f\n", peers, pod, node, miss, churn);
  }
  return 0;
}
