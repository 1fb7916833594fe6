#!/usr/bin/env bash
# Allowed-IPs lookups and churn (bench/native/allowedips_lookup.cc) built (g++ -O3, as binding.gyp) against this
# tree and an anchor tree (ANCHOR, default /work/main), run alternating for ROUNDS rounds (default 3) of REPS
# repetitions (default 5, best of). Prints each run's rows and, per row and column, the ratio of the medians over
# the rounds (this's median / the anchor's). ANCHOR must be a checkout of the baseline commit, built or not (only
# its sources are compiled): the default is main's worktree, the tree itself when run there. Columns: the row
# (peers; 16001 and 16081 are the hostile shapes allowedips_lookup.cc describes, 16081's lookups IPv6), ns per
# pod-address lookup, per node-address lookup, per miss, µs per peer churn. Timing on a shared machine: read the
# ratios, not the figures.
set -euo pipefail
# shellcheck source=bench/ab-native.sh
. "$(dirname "$0")/ab-native.sh"  # here, anchor, rounds, reps, out; ab_native
build() {  # tree, binary (flatmap.cc: the hash seeds, linked by allowedips.cc since s31, unused by the trie)
  local s="$1/native/src"
  g++ -std=c++17 -O3 -I"$s" "$here/bench/native/allowedips_lookup.cc" "$s/wireguard/allowedips.cc" \
    "$s/policy/flatmap.cc" -o "$2"
}
echo "anchor: $anchor ($(git -C "$anchor" rev-parse --short HEAD)); this: $here ($(git -C "$here" rev-parse --short HEAD))"
echo "columns: peers, ns per pod-address lookup, ns per node-address lookup, ns per miss, us per peer churn"
ab_native build "$reps"
node -e '
  const fs = require("fs");
  const read = (f) => fs.readFileSync(f, "utf8").trim().split("\n").map((l) => l.split(" ").map(Number));
  const a = read(process.argv[1]), t = read(process.argv[2]);
  const med = (xs) => { const s = [...xs].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
  const sizes = [...new Set(a.map((r) => r[0]))];
  for (const n of sizes) {
    const ra = a.filter((r) => r[0] === n), rt = t.filter((r) => r[0] === n);
    const cols = [1, 2, 3, 4].map((c) => (med(rt.map((r) => r[c])) / med(ra.map((r) => r[c]))).toFixed(2));
    const names = n === 16081 ? ['honest /64', 'hostile chain end', 'miss'] : ['pod', 'node', 'miss'];
    console.log(`this/anchor, row ${n}: ${names[0]} ${cols[0]}, ${names[1]} ${cols[1]}, ${names[2]} ${cols[2]}, churn ${cols[3]}`);
  }
' "$out/anchor.txt" "$out/this.txt"
