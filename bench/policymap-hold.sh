#!/usr/bin/env bash
# The longest wait of a packet thread for PolicyEngine::mu while a policy map
# update compacts the map, at 10k / 100k / 1M entries (bench/native/policymap_hold.cc):
# built (g++ -O3, as binding.gyp) against this tree and against an anchor tree
# (ANCHOR, default /work/main: main's sources), then run alternating, ROUNDS
# rounds (default 3) of REPS repetitions per size (default 5, medians). Prints
# each run's medians and the ratio this / anchor per size, with the load average.
# Then the lookups (bench:policy's ipcache + policy map and whole TX decision, testhooks
# policyBench, best of 3) with each tree's built addon (build/Release), alternating, ROUNDS rounds.
# LOOKUPS_ONLY=1: only the lookups. Timing on a shared machine: run it under the heavy-run lock, read the ratios.
set -euo pipefail
# shellcheck source=bench/ab-native.sh
. "$(dirname "$0")/ab-native.sh"  # here, anchor, rounds, reps, out; ab_native
build() {  # tree, binary
  local s="$1/native/src"
  g++ -std=c++17 -O3 -pthread -I"$s" "$here/bench/native/policymap_hold.cc" "$s/policy/engine.cc" \
    "$s/policy/conntrack.cc" "$s/policy/ipcache.cc" "$s/policy/policymap.cc" "$s/policy/flatmap.cc" \
    "$s/wireguard/allowedips.cc" $(ls "$s/policy/icmp.cc" 2>/dev/null) -o "$2"  # (icmp.cc: trees since s14)
}
echo "anchor: $anchor ($(git -C "$anchor" rev-parse --short HEAD)); this: $here ($(git -C "$here" rev-parse --short HEAD))"
if [ "${LOOKUPS_ONLY:-0}" != 1 ]; then
  echo "columns: entries, median longest wait of a reader for mu (us), median update call (us), repetitions"
  ab_native build "$reps"
  # ratio per size: median over the rounds of this' wait / median of the anchor's
  node -e '
    const fs = require("fs");
    const read = (f) => fs.readFileSync(f, "utf8").trim().split("\n").map((l) => l.split(" ").map(Number));
    const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
    const a = read(process.argv[1]), t = read(process.argv[2]);
    for (const n of [...new Set(a.map((r) => r[0]))]) {
      const wa = med(a.filter((r) => r[0] === n).map((r) => r[1])), wt = med(t.filter((r) => r[0] === n).map((r) => r[1]));
      const ca = med(a.filter((r) => r[0] === n).map((r) => r[2])), ct = med(t.filter((r) => r[0] === n).map((r) => r[2]));
      console.log(`${String(n).padStart(8)} entries: longest reader wait ${wa.toFixed(1)} -> ${wt.toFixed(1)} us (ratio ${(wt / wa).toFixed(3)}); update call ${ca.toFixed(1)} -> ${ct.toFixed(1)} us (ratio ${(ct / ca).toFixed(3)})`);
    }
  ' "$out/anchor.txt" "$out/this.txt"
fi
# the lookups, each tree's addon in its own process, alternating
for r in $(seq 1 "$rounds"); do
  for b in anchor this; do
    tree=$here
    [ "$b" = anchor ] && tree=$anchor
    node -e '
      const h = require(process.argv[1]);
      const best = (k) => Math.min(...[0, 1, 2].map(() => h.policyBench(k, 100000, 16384, 3000000).nsPerOp));
      console.log(`${process.argv[2]} ${best("ipcache+policy").toFixed(1)} ${best("engine").toFixed(1)}`);
    ' "$tree/build/Release/wiremesh_testhooks.node" "$b" | tee -a "$out/lookups.txt"
  done
done
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" "));
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  const col = (b, i) => med(rows.filter((r) => r[0] === b).map((r) => Number(r[i])));
  for (const [i, name] of [[1, "ipcache + policy map @ 100k (map 16,384)"], [2, "whole TX decision @ 100k (map 16,384)"]])
    console.log(`${name}: ${col("anchor", i).toFixed(1)} -> ${col("this", i).toFixed(1)} ns (ratio ${(col("this", i) / col("anchor", i)).toFixed(3)}, median over the rounds of the best of 3)`);
' "$out/lookups.txt"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
