/**
 * Agent churn costs (npm run bench:churn): what one change costs the agent.
 *   - allowed-IPs: replacing one peer's prefixes at 1,000 and 16,000 peers
 *     (bench/allowedips.ts) beside a listing of every prefix in the same run;
 *   - services: one endpoint change and the 1 s "nearest" round at 160k
 *     endpoints and 100 services, incremental beside the full recompute in
 *     the same run (bench/services.ts). CHURN_SCALE=0.1 for a quick run.
 * Single-thread figures on a shared 2-vCPU machine: compare within a run.
 */
import { benchAllowedIPs } from './allowedips.js';
import { benchServices } from './services.js';

const results: Record<string, unknown> = {};
const r2 = (v: number): number => Math.round(v * 100) / 100;
console.log('Allowed-IPs: set_allowed_ips for one peer (remove its prefixes + insert 2), µs per call');
for (const peers of [1000, 16000]) {
  const f = benchAllowedIPs(peers);
  results[`allowed-ips set at ${peers} peers (us)`] = r2(f.setUs);
  results[`allowed-ips full walk at ${peers} peers (us)`] = r2(f.walkUs);
  console.log(`  ${String(peers).padStart(6)} peers  set ${f.setUs.toFixed(2).padStart(9)} µs   full-trie walk (anchor) ${f.walkUs.toFixed(2).padStart(9)} µs   ratio ${(f.setUs / f.walkUs).toFixed(4)}`);
}

const scale = Number(process.env.CHURN_SCALE ?? 1);
const s = benchServices(16, Math.max(10, Math.round(1000 * scale)));
console.log(`Services: ${s.endpoints} endpoints, ${s.services} services x 16 clusters (loaded in ${s.loadMs.toFixed(0)} ms), ms`);
console.log(`  one endpoint change   incremental ${s.incrementalChangeMs.toFixed(3).padStart(9)}   full recompute (before) ${s.fullChangeMs.toFixed(1).padStart(8)}   ratio ${(s.incrementalChangeMs / s.fullChangeMs).toFixed(4)}`);
console.log(`  1 s timer round       incremental ${s.incrementalTimerMs.toFixed(3).padStart(9)}   full recompute (before) ${s.fullChangeMs.toFixed(1).padStart(8)}   = idle CPU ${(s.incrementalTimerMs / 10).toFixed(3)} % vs ${(s.fullChangeMs / 10).toFixed(1)} % of a core`);
if (s.indexBytes !== undefined) console.log(`  services index + tables: ${s.indexBytes.toFixed(0)} B of heap per endpoint`);
console.log(`  health round (every 200 ms) at ${s.healthWatched} watched nodes, agent thread: at rest ${(s.healthRestMs * 1000).toFixed(1)} µs   full scan (before, anchor) ${s.healthFullScanMs.toFixed(2)} ms   ratio ${(s.healthRestMs / s.healthFullScanMs).toFixed(5)}   every RTT moved ${s.healthTickMs.toFixed(2)} ms`);
Object.assign(results, {
  'services endpoints': s.endpoints,
  'services change incremental (ms)': r2(s.incrementalChangeMs * 10) / 10,
  'services change full (ms)': r2(s.fullChangeMs),
  'services timer incremental (ms)': r2(s.incrementalTimerMs * 10) / 10,
  'health round at rest (us)': r2(s.healthRestMs * 1000),
  'health full scan, before (ms)': r2(s.healthFullScanMs),
  'health round every RTT moved (ms)': r2(s.healthTickMs),
  ...(s.indexBytes !== undefined ? { 'services index heap per endpoint (B)': Math.round(s.indexBytes) } : {}),
});
console.log(JSON.stringify(results));
