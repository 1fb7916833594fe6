#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 under AddressSanitizer (which also
# reports leaks) and runs each for FUZZ_SECONDS (default 30); FUZZ_TARGETS
# picks some. Fails if any target crashes, trips an assertion or leaks. Then
# tsan_seqmap.cc (SeqShardedMap's readers against its writer), tsan_policymap.cc
# (policy map lookups against compacting delta writers), tsan_conntrack.cc (conntrack's
# accounts under concurrent creates, lookups and gc) and tsan_peermutex.cc (the peers' futex lock) under
# ThreadSanitizer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
secs=${FUZZ_SECONDS:-30}
mkdir -p "$out"
CXX=${CXX:-clang++-14}
common=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$here/../src")
src="$here/../src"
declare -A deps=(
  [fuzz_wire]="$src/wireguard/cookie.cc $src/crypto/aead.cc $src/crypto/blake2s.cc $src/crypto/chacha.cc"
  [fuzz_offload]="$src/net/offload.cc"
  [fuzz_allowedips]="$src/wireguard/allowedips.cc $src/policy/flatmap.cc"
  [fuzz_policy]="$src/policy/engine.cc $src/policy/icmp.cc $src/policy/conntrack.cc $src/policy/ipcache.cc $src/policy/policymap.cc $src/policy/flatmap.cc $src/wireguard/allowedips.cc"
  [fuzz_lb]="$src/services/lb.cc $src/services/lb_nat.cc $src/services/maglev.cc $src/net/reject.cc $src/policy/flatmap.cc"
  [fuzz_http1]="$src/proxy/http1.cc $src/proxy/l7rules.cc -lre2"
  [fuzz_l7]="$src/proxy/http1.cc $src/proxy/l7rules.cc -lre2"
  [fuzz_noise]="$src/crypto/noise.cc $src/crypto/x25519.cc $src/wireguard/cookie.cc $src/crypto/aead.cc $src/crypto/blake2s.cc $src/crypto/chacha.cc -lsodium"
)
status=0
# The default list stays on the for line: scripts/test-all.sh counts the targets from it.
for target in ${FUZZ_TARGETS:-fuzz_wire fuzz_offload fuzz_allowedips fuzz_policy fuzz_lb fuzz_http1 fuzz_l7 fuzz_noise}; do
  echo "== $target: build"
  # shellcheck disable=SC2086
  "$CXX" "${common[@]}" "$here/$target.cc" ${deps[$target]} -lcrypto -o "$out/$target"
  mkdir -p "$out/corpus/$target"
  echo "== $target: run ${secs}s"
  if ! ASAN_OPTIONS=detect_leaks=1 "$out/$target" -max_total_time="$secs" -max_len=70000 -print_final_stats=1 \
      -artifact_prefix="$out/$target-" "$out/corpus/$target" 2> "$out/$target.log"; then
    echo "!! $target failed:"; tail -40 "$out/$target.log"; status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/$target.log" | sed "s/^/   /"
  fi
done
# Not fuzz targets: under ThreadSanitizer, the lock-free conntrack table's readers against its writer
# (tsan_seqmap), and policy map lookups against delta writers that compact the map while another thread replaces
# it (tsan_policymap: copy under
# the engine's lock held shared, swap under it exclusive), and conntrack's per-source and per-destination counts
# under racing creates, sweeps and gc (tsan_conntrack: bounds within one entry per racing thread,
# every count back to zero), and the peers' futex lock (tsan_peermutex: more threads than cores, holders preempted,
# no two inside at once, no increment lost). A data race, a torn copy, a lost entry, a broken bound or a leak fails them;
# a few seconds each.
declare -A tsan_deps=(
  [tsan_seqmap]=""
  [tsan_peermutex]=""
  [tsan_conntrack]="$src/policy/conntrack.cc $src/policy/flatmap.cc"
  [tsan_policymap]="$src/policy/engine.cc $src/policy/icmp.cc $src/policy/conntrack.cc $src/policy/ipcache.cc $src/policy/policymap.cc $src/policy/flatmap.cc $src/wireguard/allowedips.cc"
)
for t in tsan_seqmap tsan_policymap tsan_conntrack tsan_peermutex; do
  echo "== $t: build and run"
  # shellcheck disable=SC2086
  "$CXX" -std=c++17 -g -O1 -fsanitize=thread -I"$src" "$here/$t.cc" ${tsan_deps[$t]} -o "$out/$t"
  if ! "$out/$t" > "$out/$t.log" 2>&1; then
    echo "!! $t failed:"; tail -40 "$out/$t.log"; status=1
  else
    sed "s/^/   /" "$out/$t.log"
  fi
done
[ $status -eq 0 ] && echo "fuzz: every target ran ${secs}s with no crash or leak"
exit $status
