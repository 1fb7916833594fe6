/**
 * Agent churn costs (npm run bench:churn): what one change costs the agent.
 *   - allowed-IPs: replacing one peer's prefixes at 16,000 peers (bench/allowedips.ts)
 *     beside a full walk of the trie in the same run.
 * Single-thread figures on a shared 2-vCPU machine: compare within a run.
 */
import { benchAllowedIPs } from './allowedips.js';

const results: Record<string, unknown> = {};
console.log('Allowed-IPs: set_allowed_ips for one peer (remove its prefixes + insert 2), µs per call');
for (const peers of [1000, 16000]) {
  const f = benchAllowedIPs(peers);
  results[`allowed-ips set at ${peers} peers (us)`] = Math.round(f.setUs * 100) / 100;
  results[`allowed-ips full walk at ${peers} peers (us)`] = Math.round(f.walkUs * 100) / 100;
  console.log(`  ${String(peers).padStart(6)} peers  set ${f.setUs.toFixed(2).padStart(9)} µs   full-trie walk (anchor) ${f.walkUs.toFixed(2).padStart(9)} µs   ratio ${(f.setUs / f.walkUs).toFixed(3)}`);
}
console.log(JSON.stringify(results));
