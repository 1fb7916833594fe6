// Allowed-IPs lookups and per-peer churn at the mesh's shape (bench/allowedips-lookup.sh builds it against two
// trees): P peers, each a node address 100.64.x.y/32 and a pod CIDR 100.(65..127).z.0/24, as the agent programs
// them. Prints per P: ns per lookup of a pod address (the TX path's common case: inside a /24), of a node address
// (a /32), of an address no peer holds, and µs per peer churn (remove_peer + its two inserts, set_allowed_ips's
// work). Each figure is the best of REPS runs of 2,000,000 lookups or 20,000 churns over pseudo-random peers (a
// fixed LCG: both trees see the same sequence). Rows 16001 and 16081 are labels, not peer counts. 16001: 16,000
// honest peers and a hostile one holding prefixes of 14 more lengths (/17../31 but /24, nested at 100.127.255.255,
// outside every honest prefix: what a cluster pinned to 100.127.128.0/17 may claim): the table checks each
// length's range (two compares) and probes only the lengths whose range holds the address (before s31's ranges:
// every length in use); the trie looked only at the lengths on an address's path. 16081, IPv6: the 16,000 peers as
// above, one more holding fd00:1::/64, and a hostile peer holding 81 nested prefixes (/48../128 at
// fd00:0:0:ffff::1, a /48 pin's every length); its three lookup columns are IPv6 lookups: of addresses in
// fd00:1::/64 (an honest prefix), of the hostile chain's end, the same address every time (the trie's worst, 81
// nodes walked cache-warm; the table's best, a hit at its first probe), and of addresses outside every prefix.
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
  for (uint32_t rows : {1000u, 16000u, 16001u, 16081u}) {
    const uint32_t peers = rows > 16000u ? 16000u : rows;
    const bool v6 = rows == 16081u;
    AllowedIPs t;
    uint8_t a[16] = {0};
    for (uint32_t i = 0; i < peers; i++) {
      node_addr(i, a), t.insert(a, 4, 32, i);
      pod_cidr(i, a), t.insert(a, 4, 24, i);
    }
    if (rows == 16001u)
      for (int len = 17; len <= 31; len++)
        if (len != 24) a[0] = 100, a[1] = 127, a[2] = 255, a[3] = 255, t.insert(a, 4, len, peers);
    uint8_t six[16] = {0xfd, 0, 0, 1};  // fd00:1::/64
    if (v6) {
      t.insert(six, 16, 64, peers + 1);  // (not an honest peer: the churn below does not take it away)
      uint8_t h[16] = {0xfd, 0, 0, 0, 0, 0, 0xff, 0xff};
      h[15] = 1;
      for (int len = 48; len <= 128; len++) t.insert(h, 16, len, peers);
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
    double pod = v6 ? best([&](Lcg& g) {
      uint32_t i = g.next(1u << 24);
      six[13] = uint8_t(i >> 16), six[14] = uint8_t(i >> 8), six[15] = uint8_t(i);
      sink = t.lookup(six, 16);
    }, kOps) : best([&](Lcg& g) {
      uint32_t i = g.next(peers);
      pod_cidr(i, a), a[3] = uint8_t(1 + (i & 127));
      sink = t.lookup(a, 4);
    }, kOps);
    uint8_t end[16] = {0xfd, 0, 0, 0, 0, 0, 0xff, 0xff};
    end[15] = 1;
    double node = v6 ? best([&](Lcg& g) {
      sink = t.lookup(end, 16) + g.next(2);
    }, kOps) : best([&](Lcg& g) {
      node_addr(g.next(peers), a);
      sink = t.lookup(a, 4);
    }, kOps);
    uint8_t out6[16] = {0xfd, 0x7f};
    double miss = v6 ? best([&](Lcg& g) {
      uint32_t i = g.next(1u << 24);
      out6[13] = uint8_t(i >> 16), out6[14] = uint8_t(i >> 8), out6[15] = uint8_t(i);
      sink = t.lookup(out6, 16);
    }, kOps) : best([&](Lcg& g) {
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
    if (t.size() != 2 * peers + (rows == 16001u ? 14 : 0) + (v6 ? 82 : 0)) return 1;
    printf("%u %.1f %.1f %.1f %.3f\n", rows, pod, node, miss, churn);
  }
  return 0;
}
