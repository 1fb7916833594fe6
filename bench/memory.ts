/**
 * Agent memory per remote endpoint (issue 16), measured as RSS and heap growth:
 *
 *   node --expose-gc dist/bench/memory.js [--clusters 16] [--nodes 1000] [--eps 10] [--base DIR] [--semi-space MB]
 *   (MEMORY_UNDERLAY6=1: dual-stack nodes, an IPv6 underlay address each with a spread interface id;
 *   MEMORY_NO_PORTS=1: endpoint records without named container ports)
 *
 * Feeds K remote clusters × N nodes × E endpoints (and 50 identities per
 * cluster) through the agent's real path: ListWatcher (kvstore.ts) → the
 * decoding sinks (sinks.ts, records/ codecs) → admission (admission.ts, with
 * trust.ts pins) → what the agent does with admitted records (its endpoint map,
 * PolicyDatapath's ipcache and identity universe; node records kept as the
 * peer reconciler's input). The store hands out fresh strings per key and
 * value, as etcd3's Buffer.toString() does. The native ipcache is a stub that
 * counts rows (the addon's own table is native memory, outside this figure).
 *
 * The full stage ends with the one compacting GC the agent runs once a sync is
 * over (src/agent/heapcompaction.ts, when the build has it; MEMORY_NO_COMPACTION=1
 * skips it): run unconditionally here, so the figure is what the agent holds once
 * its trigger has fired (old space ≥ half holes, ≥ 64 MiB of them, ≤ 256 MiB live). Readings are taken 2 s after the last GC (MEMORY_SETTLE_MS), as V8
 * unmaps freed pages on a background thread after the GC returns.
 * Each stage runs in a fresh process (--expose-gc; readings after gc), so one
 * stage's garbage does not land in the next:
 *   watch   ListWatcher alone (its key → value map)
 *   decode  + codecs (records decoded, then dropped)
 *   admit   + admission (candidates, admitted, indexes)
 *   full    + the agent's endpoint map, PolicyDatapath and the services' endpoint
 *           index (ServiceDatapath, as the agent feeds it every admitted endpoint;
 *           MEMORY_NO_SERVICES=1 leaves it out, as this stage was before 2026-12-02)
 * With --base DIR (a built copy of another commit, e.g. main) every stage runs
 * against both builds, alternating, and the table prints them side by side.
 * Growth is divided by the number of remote endpoints (nodes and identities
 * count as their share).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg } from './util.js';

type Mode = 'watch' | 'decode' | 'admit' | 'full';
const MODES: Mode[] = ['watch', 'decode', 'admit', 'full'];
const IDENTITIES_PER_CLUSTER = 50;

interface Shape {
  clusters: number;
  nodes: number;
  eps: number;
}

interface Reading {
  heapPerEp: number;
  rssPerEp: number;
  endpoints: number;
  admitted: number;
  ms: number;
}


const here = dirname(fileURLToPath(import.meta.url));
/** dist/ of this build (this file is dist/bench/memory.js). */
const OWN_DIST = resolve(here, '..');

// ---- the generated mesh ----------------------------------------------------------

const ip4 = (a: number, b: number, c: number, d: number) => `${a}.${b}.${c}.${d}`;
/** Cluster i (0-based) owns 100.(64+4i).0.0/14; node n its /24 in it; underlay: a /20 per cluster. */
const clusterName = (i: number) => `remote-${i + 1}`;
const clusterId = (i: number) => i + 1;
const clusterCIDR = (i: number) => `${ip4(100, 64 + 4 * i, 0, 0)}/14`;
const nodeName = (n: number) => `ip-10-${(n >> 8) & 255}-${n & 255}.eu-west-1.compute.internal`;
const podCIDR = (i: number, n: number) => `${ip4(100, 64 + 4 * i + (n >> 8), n & 255, 0)}/24`;
const podIP = (i: number, n: number, e: number) => ip4(100, 64 + 4 * i + (n >> 8), n & 255, e + 2);
/** Cluster i's nodes in its own /20 of 198.18.0.0/15 (≤ 4094 nodes, ≤ 32 clusters): its pinned underlay CIDR. */
const underlayCIDR = (i: number) => `${ip4(198, 18 + (i >> 4), (i & 15) * 16, 0)}/20`;
const underlay = (i: number, n: number) => {
  const a = i * 4096 + n + 1;
  return ip4(198, 18 + (a >> 16), (a >> 8) & 255, a & 255);
};
/**
 * MEMORY_UNDERLAY6=1: every node also has an IPv6 underlay address, its cluster's fd00:<i>::/64 (pinned) with an
 * interface id that looks random (a multiplicative hash of the node's index, as SLAAC's privacy or stable-opaque
 * ids spread them): dual-stack nodes, where neighbouring addresses differ early in the last 64 bits.
 */
const UNDERLAY6 = process.env.MEMORY_UNDERLAY6 === '1';
/** MEMORY_NO_PORTS=1: endpoint records carry an identity and no named container port (a pod that names none). */
const NO_PORTS = process.env.MEMORY_NO_PORTS === '1';
const underlay6CIDR = (i: number) => `fd00:${(i + 1).toString(16)}::/64`;
const underlay6 = (i: number, n: number) => {
  const h = (x: number) => (Math.imul(x, 0x9e3779b1) >>> 0).toString(16).padStart(8, '0');
  const id = h(i * 65536 + n + 1) + h(n * 7919 + i + 1);
  return `fd00:${(i + 1).toString(16)}::${id.slice(0, 4)}:${id.slice(4, 8)}:${id.slice(8, 12)}:${id.slice(12)}`.replace(/:0+(?=[0-9a-f])/g, ':');
};
const wgKey = (idx: number) => {
  const b = Buffer.alloc(32, 7);
  b.writeUInt32BE(idx + 1, 0);
  return b.toString('base64');
};
const app = (k: number) => `app-${k % IDENTITIES_PER_CLUSTER}`;
const nsOf = (k: number) => `team-${k % 7}`;

// ---- one stage, in its own process --------------------------------------------------

async function child(dist: string, mode: Mode, shape: Shape): Promise<Reading> {
  const imp = (p: string) => import(join(dist, p));
  const keys = await imp('src/controlplane/keys.js');
  const { ListWatcher } = await imp('src/controlplane/kvstore.js');
  const { Trust } = await imp('src/controlplane/records/trust.js');
  const { Rejections } = await imp('src/controlplane/records/rejections.js');
  const { Admission } = await imp('src/agent/admission.js');
  const { stateWatches } = await imp('src/agent/sinks.js');
  const { PolicyDatapath } = await imp('src/policy/datapath.js');
  const { FakeDevice } = await imp('src/native/fakedevice.js');
  const { silentLogger } = await imp('src/log.js');
  const { clusterIdentity, endpointIdentityLabels } = await imp('src/identity/identity.js');
  const fresh = (s: string) => Buffer.from(s).toString(); // as etcd3 hands out keys and values

  function* generate(type: string): Generator<[string, string]> {
    for (let i = 0; i < shape.clusters; i++) {
      const cluster = clusterName(i);
      if (type === 'identities')
        for (let k = 0; k < IDENTITIES_PER_CLUSTER; k++) {
          const id = clusterIdentity(clusterId(i), 256 + k);
          yield [keys.cacheKey('identities', cluster, String(id)), JSON.stringify({ id, labels: endpointIdentityLabels({ app: app(k) }, nsOf(k), cluster) })];
        }
      for (let n = 0; n < shape.nodes; n++) {
        const node = nodeName(n);
        const idx = i * shape.nodes + n;
        if (type === 'nodes')
          yield [keys.cacheKey('nodes', cluster, node), JSON.stringify({ cluster, clusterId: clusterId(i), name: node, addresses: UNDERLAY6 ? [underlay(i, n), underlay6(i, n)] : [underlay(i, n)], port: 51871, publicKey: wgKey(idx), podCIDRs: [podCIDR(i, n)], bootId: String(1764500000000 + idx) })];
        if (type === 'ip')
          for (let e = 0; e < shape.eps; e++) {
            const ip = podIP(i, n, e);
            const k = (n * shape.eps + e) % IDENTITIES_PER_CLUSTER;
            const rec = {
              ip,
              cluster,
              node,
              namespace: nsOf(k),
              name: `${app(k)}-7d9f8c6b5-${(idx * shape.eps + e).toString(36).padStart(5, 'x')}`,
              labels: { app: app(k), 'pod-template-hash': '7d9f8c6b5' },
              identity: clusterIdentity(clusterId(i), 256 + k),
              ...(NO_PORTS ? {} : { ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }),
            };
            yield [keys.cacheKey('ip', cluster, keys.endpointName(node, ip)), JSON.stringify(rec)];
          }
      }
    }
  }
  const types = ['nodes', 'ip', 'identities'];
  // as EtcdStore: pages of 5000 keys; list() gathers them (a build whose ListWatcher has no listPages uses it)
  const store = {
    async listPages(prefix: string, page: (kvs: Array<{ key: string; value: string }>) => void) {
      let kvs: Array<{ key: string; value: string }> = [];
      for (const t of types) {
        const p = keys.cachePrefix(t);
        if (!p.startsWith(prefix) && !prefix.startsWith(p)) continue;
        for (const [key, value] of generate(t)) {
          if (!key.startsWith(prefix)) continue;
          kvs.push({ key: fresh(key), value: fresh(value) });
          if (kvs.length === 5000) {
            page(kvs);
            kvs = [];
            await new Promise((r) => setImmediate(r)); // the next page's round trip
          }
        }
      }
      page(kvs);
      return '1000';
    },
    async list(prefix: string) {
      const kvs: Array<{ key: string; value: string }> = [];
      const revision = await store.listPages(prefix, (p) => void kvs.push(...p));
      return { revision, kvs };
    },
    async watch() {
      return { cancel: async () => undefined };
    },
  };

  // (the local cluster has no records here; its pod CIDR outside the remotes' 100.64.0.0/10, which 16 clusters fill:
  // a remote's range overlapping ours is contested since 02d200f, and its nodes and endpoints refused)
  const trust = new Trust('local', 200, ['fd00:c8::/48']);
  for (let i = 0; i < shape.clusters; i++) trust.pin({ name: clusterName(i), id: clusterId(i), podCIDRs: [clusterCIDR(i)], underlayCIDRs: UNDERLAY6 ? [underlayCIDR(i), underlay6CIDR(i)] : [underlayCIDR(i)], relay: false, acceptPolicies: true });
  const rejections = new Rejections(silentLogger);
  const dev = new FakeDevice();
  let rows = 0;
  dev.ipcacheUpdate = (ups: Buffer) => void (rows += ups.length / 32); // the native table: counted, not kept in JS
  // the data path and the services' index, made once admission is (a build whose data path reads admission's table)
  let dp: any;
  let svc: any;
  let endpoints: Map<string, unknown> | undefined;
  const nodes = new Map<string, unknown>();
  let admitted = 0;
  const admission = new Admission(trust, rejections, {
    node: (k: string, rec: unknown) => (rec ? nodes.set(k, rec) : nodes.delete(k)),
    endpoint: (k: string, rec: { ip: string } | undefined, prev?: unknown) => {
      if (rec) admitted++;
      if (!dp) return;
      // as agent/endpointhandoff.ts: a data path reading admission's table (s24rec) is told the replaced record;
      // one with a map of its own is read for it (older builds ignore the argument)
      const old = dp.ownsEndpoints === false ? prev : svc ? dp.endpoints?.get(k) : undefined;
      if (rec) {
        endpoints?.set(k, rec);
        dp.upsertEndpoint(k, rec, old);
        svc?.upsertEndpoint(k, rec, old);
      } else {
        endpoints?.delete(k);
        dp.removeEndpoint(k, old);
        svc?.removeEndpoint(k, old);
      }
    },
    identity: (k: string, rec: { id: number } | undefined) => {
      if (!dp) return;
      if (rec) dp.upsertIdentity(rec);
      else dp.removeIdentity(Number(k.slice(k.lastIndexOf('/') + 1)));
    },
    relay: () => undefined,
  });
  const records = (admission as { endpointRecords?: unknown }).endpointRecords;
  dp = mode === 'full' ? new PolicyDatapath(dev, 'local', 'self', { defaultLocalCluster: true, ...(records ? { records } : {}) }, silentLogger) : undefined;
  // the agent makes a ServiceDatapath beside its PolicyDatapath and hands it every admitted endpoint (agent.ts)
  const { ServiceDatapath } = await imp('src/services/datapath.js');
  // (a build whose index reads the data path's endpoint map takes it as `endpoints` and the replaced record; older ones ignore both)
  svc = dp && !process.env.MEMORY_NO_SERVICES ? new ServiceDatapath(dev, 'wm0', 'local', 'self', { maglevTableSize: 251, endpoints: dp.endpoints }, silentLogger, () => undefined) : undefined;
  // as Agent.endpoints: a build whose PolicyDatapath exposes its endpoint map (or reads admission's) keeps no second one
  endpoints = dp?.endpoints ? undefined : new Map<string, unknown>();
  const nullSink = { upsert: () => undefined, remove: () => undefined };
  const swallow = { upsert: () => undefined, remove: () => undefined, recheck: () => undefined };
  const targets = {
    cluster: { name: 'local', id: 200 },
    trust,
    rejections,
    admission: mode === 'decode' ? swallow : admission,
    peers: { setSynced: () => undefined, setRelayEnabled: () => undefined, queue: () => undefined },
    syncLag: new Map(),
    remoteStatus: new Map(),
    policy: { upsertPolicy: () => undefined, removePolicy: () => undefined, policyTrustChanged: () => undefined, setNamespace: () => undefined },
    log: silentLogger,
  };
  const watches = (stateWatches(targets) as Array<{ prefix: string; sink: unknown }>).filter((w) => types.some((t) => w.prefix.startsWith(keys.cachePrefix(t))));

  const gc = (globalThis as { gc?: () => void }).gc!;
  const settle = async () => {
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 4; i++) gc();
    // V8 unmaps the pages a GC freed on a background thread, after the GC: read RSS once that is done
    await new Promise((r) => setTimeout(r, Number(process.env.MEMORY_SETTLE_MS ?? 2000)));
  };
  await settle();
  const before = process.memoryUsage();
  const t0 = Date.now();
  const lws = watches.map((w) => new ListWatcher(store, w.prefix, mode === 'watch' ? nullSink : w.sink, silentLogger));
  for (const w of lws) void w.start();
  await Promise.all(lws.map((w: { firstSync(): Promise<void> }) => w.firstSync()));
  const syncMs = Date.now() - t0; // the sync alone: not the compaction and settle below
  // the agent's one compacting GC once the sync is over (a build that has it; MEMORY_NO_COMPACTION=1: none)
  const compaction = (await imp('src/agent/heapcompaction.js').catch(() => undefined)) as { compactHeap(): void } | undefined;
  if (mode === 'full' && compaction && !process.env.MEMORY_NO_COMPACTION) compaction.compactHeap();
  await settle();
  const after = process.memoryUsage();
  const n = shape.clusters * shape.nodes * shape.eps;
  if ((mode === 'admit' || mode === 'full') && admitted < n) throw new Error(`admitted ${admitted} of ${n} endpoints (rejections: ${JSON.stringify(rejections.rows())})`);
  if (process.env.MEMORY_SNAPSHOT) (await import('node:v8')).writeHeapSnapshot(process.env.MEMORY_SNAPSHOT);
  const keep = [lws, admission, dp, svc, endpoints, nodes]; // alive until read
  void keep;
  const v8 = await import('node:v8');
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, Math.round(x.physical_space_size / 1024)]));
  if (process.env.MEMORY_SPACES) console.error(JSON.stringify({ rssKiB: Math.round((after.rss - before.rss) / 1024), heapTotalKiB: Math.round((after.heapTotal - before.heapTotal) / 1024), externalKiB: Math.round((after.external - before.external) / 1024), spacesKiB: spaces }));
  return { heapPerEp: (after.heapUsed - before.heapUsed) / n, rssPerEp: (after.rss - before.rss) / n, endpoints: n, admitted, ms: syncMs };
}

// ---- the parent: every stage, both builds, alternating ---------------------------------

/** `--semi-space MB`: V8's --max-semi-space-size for every stage (both builds); default: V8's own (16 MiB). */
const SEMI_SPACE = process.argv.includes('--semi-space') ? [`--max-semi-space-size=${Number(arg('semi-space', '16'))}`] : [];

function runChild(dist: string, mode: Mode, shape: Shape): Reading {
  const r = spawnSync(process.execPath, ['--expose-gc', '--max-old-space-size=4096', ...SEMI_SPACE, join(OWN_DIST, 'bench/memory.js'), '--child', dist, mode, String(shape.clusters), String(shape.nodes), String(shape.eps)], { encoding: 'utf8', timeout: 600_000 });
  if (process.env.MEMORY_SPACES && r.stderr) process.stderr.write(r.stderr); // the child's V8 spaces
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`stage ${mode} (${dist}) failed: ${r.stderr || r.stdout}`);
  return JSON.parse(line) as Reading;
}

async function main(): Promise<void> {
  const ci = process.argv.indexOf('--child');
  if (ci >= 0) {
    const [dist, mode, k, n, e] = process.argv.slice(ci + 1);
    const r = await child(dist!, mode as Mode, { clusters: Number(k), nodes: Number(n), eps: Number(e) });
    console.log(JSON.stringify(r));
    return;
  }
  const shape: Shape = { clusters: Number(arg('clusters', '16')), nodes: Number(arg('nodes', '1000')), eps: Number(arg('eps', '10')) };
  const base = process.argv.includes('--base') ? resolve(arg('base', ''), 'dist') : undefined;
  const modes = process.argv.includes('--full-only') ? (['full'] as Mode[]) : MODES;
  console.log(`memory per remote endpoint: ${shape.clusters} clusters × ${shape.nodes} nodes × ${shape.eps} endpoints (${shape.clusters * shape.nodes * shape.eps} endpoints, ${shape.clusters * shape.nodes} nodes, ${shape.clusters * IDENTITIES_PER_CLUSTER} identities); node ${process.version}${SEMI_SPACE.length ? ` ${SEMI_SPACE[0]}` : ''}`);
  const fmt = (x: number) => x.toFixed(0).padStart(6);
  const results: Record<string, unknown> = {};
  console.log(`stage     ${base ? 'base heap  base RSS   ' : ''}heap B/ep  RSS B/ep  ${base ? ' RSS ratio' : ''}  sync ms`);
  for (const mode of modes) {
    const b = base ? runChild(base, mode, shape) : undefined;
    const o = runChild(OWN_DIST, mode, shape);
    results[mode] = { base: b, this: o };
    console.log(`${mode.padEnd(8)}  ${b ? `${fmt(b.heapPerEp)}     ${fmt(b.rssPerEp)}     ` : ''}${fmt(o.heapPerEp)}    ${fmt(o.rssPerEp)}   ${b ? `${(o.rssPerEp / b.rssPerEp).toFixed(3).padStart(8)}` : ''}  ${String(o.ms).padStart(7)}${b ? ` (base ${b.ms})` : ''}`);
  }
  console.log(JSON.stringify({ shape, results }));
}

await main();
