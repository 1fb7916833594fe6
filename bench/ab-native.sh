# Sourced by the native A/B benchmarks (policymap-hold.sh, allowedips-lookup.sh): sets here (this tree), anchor
# (ANCHOR, default /work/main: give a checkout of the baseline commit), rounds (ROUNDS, default 3), reps (REPS,
# default 5) and out (a temporary directory removed on exit). ab_native BUILD ARGS...: builds the anchor tree and
# this one with `BUILD TREE BINARY` (in parallel; under the callers' `set -e` a failed build stops the script, the
# other build may then still be running), then runs the two binaries with ARGS alternating, anchor first,
# for $rounds rounds, appending each run's rows to $out/anchor.txt and $out/this.txt.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
anchor=${ANCHOR:-/work/main}
rounds=${ROUNDS:-3}
reps=${REPS:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ab_native() {
  local build=$1 pid
  shift
  "$build" "$anchor" "$out/anchor" &
  pid=$!
  "$build" "$here" "$out/this"
  wait "$pid"
  for r in $(seq 1 "$rounds"); do
    for b in anchor this; do
      echo "round $r $b (load $(cut -d' ' -f1-3 /proc/loadavg))"
      "$out/$b" "$@" | tee -a "$out/$b.txt"
    done
  done
}
