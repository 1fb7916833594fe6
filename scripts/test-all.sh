#!/usr/bin/env bash
# The whole test suite, as CI runs it (README's test command calls this):
#   1. every vitest test under the machine's Node (20): unit + network-namespace tests
#   2. the unit tests again under the current LTS, Node 24, with the same addon build
#   3. the libFuzzer targets under AddressSanitizer, FUZZ_SECONDS each (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== tests under $(node --version)"
npx vitest run
node24_dir=${NODE24_DIR:-/tmp/wiremesh-node24}
if [ ! -x "$node24_dir/node_modules/.bin/node" ]; then
  mkdir -p "$node24_dir"
  npm install --prefix "$node24_dir" --no-save --no-audit --no-fund node@24 >/dev/null
fi
node24="$node24_dir/node_modules/.bin/node"
echo "== unit tests under $($node24 --version)"
"$node24" node_modules/vitest/vitest.mjs run test/unit
echo "== fuzzing"
bash native/fuzz/run.sh
