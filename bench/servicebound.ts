/**
 * What the per-cluster backend bound (src/services/tables.ts) saves per change of a shared global service when one
 * cluster (a hostile one) has N healthy backends in it next to the local cluster's few: `PortTables.install` with
 * the bound (services.maxBackendsPerCluster, default 4095 at M = 16381) beside the same install without it
 * (max = N), same run, same inputs, on the real native device (serviceUpsert builds the Maglev table in the addon).
 * Also what the bound leaves: `portViews`, the rebuild of a port's candidates (every member sorted), timed alone.
 *
 *   node dist/bench/servicebound.js [--hostile 200000] [--rounds 15]
 *
 * Medians of rounds, each changing one hostile backend's address (a new table each time); ms on a shared 2-vCPU
 * host: compare within a run.
 */
import { silentLogger } from '../src/log.js';
import { native } from '../src/native/binding.js';
import { portViews, type Backend, type ClusterService, type ServiceEndpoint, type ServicePortView } from '../src/services/service.js';
import { maxBackendsPerClusterDefault, PortTables } from '../src/services/tables.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const median = (l: number[]): number => [...l].sort((a, b) => a - b)[l.length >> 1]!;
const M = 16381;
const N = arg('hostile', 200_000);
const ROUNDS = arg('rounds', 15);

const dev = new native.Device({ createTun: false, port: 0 });
dev.start(() => undefined);
dev.enablePolicy();
const def = (cluster: string): ClusterService =>
  ({ cluster, namespace: 'shop', name: 'web', vip: '100.127.0.1', global: true, shared: true, affinity: 'none', weight: 1, selector: { app: 'web' }, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] }) as unknown as ClusterService;
const addr = (i: number) => `100.${66 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const members = new Map<string, ServiceEndpoint[]>([
  ['c1', [0, 1, 2].map((i) => ({ cluster: 'c1', node: 'n1', namespace: 'shop', name: `own-${i}`, ip: `100.65.1.${10 + i}`, labels: { app: 'web' } }))],
  ['c2', Array.from({ length: N }, (_, i) => ({ cluster: 'c2', node: `n${i >> 6}`, namespace: 'shop', name: `h-${i}`, ip: addr(i), labels: { app: 'web' } }))],
]);
const defs = [def('c1'), def('c2')];

// the candidates' rebuild (what the bound leaves): portViews over every member, timed per round
const viewsMs: number[] = [];
let view: ServicePortView | undefined;
for (let r = 0; r < 5; r++) {
  const t0 = performance.now();
  view = portViews('c1', defs, (d) => members.get(d.cluster)!)[0]!;
  viewsMs.push(performance.now() - t0);
}

/** Median ms of one install after one hostile backend moved, with the bound `max`; the rows installed. */
function installs(max: number, id: string): { ms: number; rows: number } {
  const tables = new PortTables(dev, `c1-${id}`, M, silentLogger, max);
  const backends: Backend[] = [...view!.backends];
  const ms: number[] = [];
  let rows = 0;
  for (let r = 0; r <= ROUNDS; r++) {
    // a hostile backend moves: the first one (kept under the bound), to an address that sorts first again
    backends[0] = { ...backends[0]!, ip: `100.66.0.${r % 2}` };
    const t0 = performance.now();
    tables.install({ ...view!, backends }, backends, new Map());
    if (r > 0) ms.push(performance.now() - t0); // (the first builds the table)
    rows = tables.status(view!.key)!.backends.filter((b) => b.state === 'selected').length;
  }
  tables.uninstall(view!.key);
  return { ms: median(ms), rows };
}

const bounded = installs(maxBackendsPerClusterDefault(M), 'b');
const unbounded = installs(N + 3, 'u');
console.log(`servicebound: one cluster with ${N} healthy backends of a shared global service beside 3 local ones, M = ${M}`);
console.log(`  install per change, bounded (${maxBackendsPerClusterDefault(M)}): ${bounded.ms.toFixed(2)} ms, ${bounded.rows} rows in the table`);
console.log(`  install per change, unbounded (reference): ${unbounded.ms.toFixed(2)} ms, ${unbounded.rows} rows in the table`);
console.log(`  ratio bounded / unbounded: ${(bounded.ms / unbounded.ms).toFixed(3)}`);
console.log(`  left by the bound: the candidates' rebuild (portViews, every member sorted) ${median(viewsMs).toFixed(2)} ms per change of the service's members`);
dev.close();
