#!/usr/bin/env bash
# The whole test suite, as CI runs it (README's test command calls this):
#   0. structure checks (all three run, then any failure stops here): no TS file in src/ or
#      C++ file in native/src/ of 450 lines or more (scripts/check-structure.mjs); no block
#      of 6+ lines repeated in src/ or native/src/ (jscpd, .jscpd.json); no import cycle
#      in src/ and no import of src/cli/ by the daemon (dependency-cruiser, .dependency-cruiser.cjs)
#   1. every vitest test under the machine's Node (20): unit + network-namespace tests
#   2. the unit tests again under the current LTS, Node 24, with the same addon build
#   3. the libFuzzer targets under AddressSanitizer, FUZZ_SECONDS each (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== tests under $(node --version)"
npm run typecheck
echo "== structure checks"
structure_failed=0
node scripts/check-structure.mjs || structure_failed=1
npx --no-install jscpd || structure_failed=1
npx --no-install depcruise src --config .dependency-cruiser.cjs || structure_failed=1
if [ "$structure_failed" = 1 ]; then
  echo "structure checks failed (see above)" >&2
  exit 1
fi
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
npx vitest run --reporter=default --reporter=json --outputFile.json="$results/node20.json"
node24_dir=${NODE24_DIR:-/tmp/wiremesh-node24}
if [ ! -x "$node24_dir/node_modules/.bin/node" ]; then
  mkdir -p "$node24_dir"
  npm install --prefix "$node24_dir" --no-save --no-audit --no-fund node@24 >/dev/null
fi
node24="$node24_dir/node_modules/.bin/node"
echo "== unit tests under $($node24 --version)"
"$node24" node_modules/vitest/vitest.mjs run test/unit --reporter=default --reporter=json --outputFile.json="$results/node24.json"
echo "== fuzzing"
fuzz_failed=0
fuzz_targets=$(sed -n 's/^for target in \(.*\); do$/\1/p' native/fuzz/run.sh | wc -w)
bash native/fuzz/run.sh || fuzz_failed=1
# One plain summary line: vitest results of both Node versions plus the fuzz targets.
node -e '
  const fs = require("fs");
  let passed = 0, failed = 0;
  for (const f of process.argv.slice(1, 3)) {
    const r = JSON.parse(fs.readFileSync(f, "utf8"));
    passed += r.numPassedTests; failed += r.numFailedTests;
  }
  const fuzzFailed = Number(process.argv[3]), fuzzTargets = Number(process.argv[4]);
  passed += fuzzFailed ? 0 : fuzzTargets; failed += fuzzFailed ? 1 : 0;
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
' "$results/node20.json" "$results/node24.json" "$fuzz_failed" "$fuzz_targets"
