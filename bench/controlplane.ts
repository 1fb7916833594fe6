/**
 * Control-plane benchmark, in the foreground (a timeout kills every process it
 * started; its exit code is the measurement's), inside a private network
 * namespace with only loopback. Two modes:
 *
 * Full run (default; short: 4 x 100 x 10): K clusters (a real etcd and a real
 * kvstoremesh process each), N synthetic nodes and N*E endpoints per cluster,
 * one real agent (TUN, WireGuard device) in c1 in this process, and the load
 * generator in its own process (bench/cp-load.ts). Prints the initial sync time,
 * the agent's heap and RSS growth per remote endpoint, the mesh at rest (CPU of
 * all etcds and kvstoremesh processes from /proc, etcd writes and raft commits/s),
 * then churn at the nominal rate beside the achieved one with propagation
 * (a write in a remote cluster's etcd -> the agent's data path) p50/p99.
 *   --clusters K (4) --nodes N (100) --endpoints E (10) --rate (100 writes/s) --churn-seconds (10)
 *   The issue's big run: --clusters 16 --nodes 1000 --endpoints 10 --timeout 3600
 *
 * Sweep (--sweep 4,8,16,32): for each K, K clusters of a few nodes (--nodes, default
 * here 20 x 2 endpoints), no agent; the write rate at rest per etcd and mesh-wide and
 * the idle CPU, so the growth with K shows; beside the same etcds without kvstoremesh (the floor). With --anchor <dir> (a build of main: its
 * bin/wiremesh.js) each K runs with the anchor's kvstoremesh too, in the same run.
 *
 * A full run with --anchor <dir> runs the anchor's kvstoremesh instead (the same agent: this tree's).
 * Common: --rest-seconds (10) the rest window; --settle-seconds (full run 120, sweep 5) when the settled rest
 * window starts, in seconds after the sync (a full run: the agent's; the sweep: the mesh's markers, at least 5).
 * A full run also measures and prints a window right after the sync (3 s after the mesh's sync markers): at
 * 16 x 1000 x 10 each kvstoremesh's V8 heap still gives back the sync's garbage in bumps up to ~+90 s (its GC
 * threads; the etcds are at rest at once), which is not rest (docs/benchmarks.md, s9idle); --rest-timeline S
 * (0: off) prints back-to-back rest windows from the sync to S seconds after it. --timeout (900 s) for the whole
 * run, --etcd-tick-ms (500) the raft tick of every etcd (ETCD_TICK_MS in bench/cp-mesh.ts; 100 is etcd's
 * default), --etcd-gomaxprocs (1) and --etcd-batch-ms (1000, etcd's --backend-batch-interval) their GOMAXPROCS
 * and batch commit (0: Go's and etcd's defaults).
 * --profile-agent DIR: CPU profiles of the agent's (this process's) JavaScript thread, one file per
 * --profile-window (30 s) into DIR, from the agent's start to the end (bench/cp-profile.ts).
 * --etcd-data-dir DIR: where the etcds keep their data (default the system's tmpdir; /dev/shm takes the disk out).
 * A full run also prints where a write's time goes: the load generator's send -> etcd's answer, etcd's own
 * handling time of Puts and Txns (ETCD_METRICS=extensive), WAL fsync and boltdb commit, the agent's share write
 * by write, and the host's CPU during the churn.
 * --profile-kvstoremesh DIR: every kvstoremesh runs with --cpu-prof into DIR (a profile per process, written
 * when the bench stops it), for `node scripts/cpuprofile-top.mjs DIR/*.cpuprofile`.
 * --profile-kvstoremesh-churn DIR: the same over the churn window alone (started and stopped by SIGUSR2,
 * bench/cp-profile-signal.ts; works with --anchor too): DIR/kvstoremesh-<pid>.cpuprofile.
 * --layout session|cluster (session): how the host's CPU is shared (bench/cp-sched.ts). `session`: the kernel's
 * autogroups (each etcd alone in a session; kvstoremesh, the agent and the load generator together in the
 * benchmark's); `cluster`: each cluster's etcd and kvstoremesh in one CPU group, the agent left with the load
 * generator (alone with fifo) in the benchmark's session. The run prints the layout it got (a host without a
 * cgroup v1 `cpu` hierarchy falls back to `session`).
 * --load-generator-class other|fifo (other): `fifo` puts the load generator in the real-time class (SCHED_FIFO 1, by
 * chrt) for the churn, so that its sends and their answers do not queue behind the processes it measures (the
 * initial load stays in the normal class); not the default: it takes its CPU ahead of a saturated host's, and in
 * the session layout one of s43's two runs with it read the slowest propagation (docs/benchmarks.md, s43).
 * --txn-interval-ms MS: passed to this tree's kvstoremesh (not the anchor's, which may not know it).
 * --kvstoremesh-node-flags=FLAGS: Node/V8 flags (whitespace-separated) for every kvstoremesh process, before its
 * script, the anchor's too, in a full run and a sweep; in the `=` form (parseArgs refuses a separate value that
 * starts with a dash): e.g. --kvstoremesh-node-flags=--no-memory-reducer, or '--kvstoremesh-node-flags=--a --b'.
 * Checked before anything starts (a flag this Node refuses fails the run); a flag's output is lost (kvstoremesh's
 * stdio is ignored).
 * --cpu-by-second (a full run only): prints each ~1 s period of the churn's time on a CPU and run-queue wait for the
 * etcds, the kvstoremesh processes (JavaScript threads and the rest), the bench process (the agent and the harness)
 * and the load generator, read by a process of its own (bench/cp-sampler.ts; off by default: its own CPU would
 * count in the host's figure).
 */
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent } from '../src/agent/agent.js';
import { compactions as heapCompactions } from '../src/agent/heapcompaction.js';
import { mallocTrims } from '../src/agent/malloctrim.js';
import { nodeCodec } from '../src/controlplane/records/index.js';
import type { NodeRecord } from '../src/controlplane/types.js';
import { silentLogger } from '../src/log.js';
import { native } from '../src/native/binding.js';
import { checkShape, quantilesBySecond, rankQuantile, type LoadRequest, type LoadResult } from './cp-load.js';
import { profileWindows, threadCpu } from './cp-profile.js';
import { memParts, partsPer } from './cp-memparts.js';
import { perProcess, procUse, type GroupPeriod, type Period } from './cp-procstat.js';
import { ETCD_TUNING, etcdHistograms, etcdUrl, histogramQuantile, log, measureRest, restLine, runInNetns, startMesh, waitMeshSynced, type RestFigures, type SchedLayout } from './cp-mesh.js';

/** Default of --settle-seconds in a full run: see the header and docs/benchmarks.md (s9idle) for the timeline it comes from. */
const SETTLE_DEFAULT_S = 120;
const { values: o } = parseArgs({
  options: {
    clusters: { type: 'string', default: '4' },
    nodes: { type: 'string' },
    endpoints: { type: 'string' },
    rate: { type: 'string', default: '100' },
    'churn-seconds': { type: 'string', default: '10' },
    'rest-seconds': { type: 'string', default: '10' },
    'settle-seconds': { type: 'string' },
    'rest-timeline': { type: 'string', default: '0' },
    sweep: { type: 'string' },
    anchor: { type: 'string' },
    timeout: { type: 'string', default: '900' },
    'etcd-tick-ms': { type: 'string', default: String(ETCD_TUNING.tickMs) },
    'etcd-gomaxprocs': { type: 'string', default: String(ETCD_TUNING.goMaxProcs) },
    'etcd-batch-ms': { type: 'string', default: String(ETCD_TUNING.batchMs) },
    'profile-agent': { type: 'string' },
    'profile-window': { type: 'string', default: '30' },
    'profile-kvstoremesh': { type: 'string' },
    'profile-kvstoremesh-churn': { type: 'string' },
    'txn-interval-ms': { type: 'string' },
    layout: { type: 'string', default: 'session' },
    'load-generator-class': { type: 'string', default: 'other' },
    'kvstoremesh-node-flags': { type: 'string' },
    'cpu-by-second': { type: 'boolean' },
    'etcd-data-dir': { type: 'string' },
  },
});
const num = (v: string | undefined, what: string, dflt: number): number => {
  const n = Number(v ?? dflt);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${what} must be a non-negative number`);
  return n;
};
const SWEEP = o.sweep?.split(',').map((x) => num(x, 'sweep', 0));
if (SWEEP && o['cpu-by-second']) throw new Error('--cpu-by-second reads a full run\'s churn: a sweep has none');
const K = num(o.clusters, 'clusters', 4);
const N = num(o.nodes, 'nodes', SWEEP ? 20 : 100);
const E = num(o.endpoints, 'endpoints', SWEEP ? 2 : 10);
checkShape(SWEEP ? Math.max(...SWEEP) : K, N); // before any etcd starts: a shape whose addresses overlap would measure refusals
const RATE = num(o.rate, 'rate', 100);
const CHURN_S = num(o['churn-seconds'], 'churn-seconds', 10);
if (o.layout !== 'cluster' && o.layout !== 'session') throw new Error('--layout must be cluster or session');
const LAYOUT: SchedLayout = o.layout;
if (o['load-generator-class'] !== 'fifo' && o['load-generator-class'] !== 'other') throw new Error('--load-generator-class must be fifo or other');
const LOADGEN_CLASS = o['load-generator-class'];
if (SWEEP && LOADGEN_CLASS === 'fifo') throw new Error('--load-generator-class fifo sets the class for a full run\'s churn: a sweep has none');
const KVSM_FLAGS = o['kvstoremesh-node-flags']?.split(/\s+/).filter(Boolean) ?? [];
// a flag Node refuses would only show as a mesh that never syncs (kvstoremesh's stdio is ignored): refused here
if (KVSM_FLAGS.length) execFileSync(process.execPath, [...KVSM_FLAGS, '-e', ''], { stdio: ['ignore', 'ignore', 'inherit'] });
const REST_S = num(o['rest-seconds'], 'rest-seconds', 10);
// the sweep's small clusters have no large sync to digest: 5 s there, as before
const SETTLE_S = num(o['settle-seconds'], 'settle-seconds', SWEEP ? 5 : SETTLE_DEFAULT_S);
const SWEEP_SETTLE_S = Math.max(5, SETTLE_S); // the sweep's last status writes after the sync take a few seconds
const TIMELINE_S = num(o['rest-timeline'], 'rest-timeline', 0);
const ETCD = { tickMs: num(o['etcd-tick-ms'], 'etcd-tick-ms', 0), goMaxProcs: num(o['etcd-gomaxprocs'], 'etcd-gomaxprocs', 0), batchMs: num(o['etcd-batch-ms'], 'etcd-batch-ms', 0) };
const ETCD_LINE = `etcd tick ${ETCD.tickMs} ms, GOMAXPROCS ${ETCD.goMaxProcs || 'default'}, batch ${ETCD.batchMs || 'default'} ms`;
// not src/testbed/netns.ts's ROOT: importing it installs SIGINT/SIGTERM handlers that exit 130 before ours
// could kill the namespace's processes
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const OURS = join(ROOT, 'bin', 'wiremesh.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The load generator process; request() sends one job and resolves with its answer. */
function loadGenerator() {
  const child = fork(join(dirname(fileURLToPath(import.meta.url)), 'cp-load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // --load-generator-class fifo: for the churn (its connect and its writes) the load generator runs ahead of the
  // measured processes (SCHED_FIFO 1; ~0.15-0.25 cores then), as the remote clusters' writers it stands for run on
  // machines of their own, so that its send times and answers are not queued behind them (s42: the remote write
  // alone up to 2.7 s while etcd's handling of it was ≤ 25 ms; s43 with it: 3 / 18-26 ms); the initial load, a
  // bulk of ~176k writes, stays in the normal class. Every thread (chrt -a); those made later inherit the class.
  const chrt = (args: string[]): string | undefined => {
    try {
      execFileSync('chrt', ['-a', ...args, String(child.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
      return undefined;
    } catch (err) {
      const e = err as Error & { stderr?: Buffer };
      return e.stderr?.toString().trim() || e.message;
    }
  };
  return {
    request: (req: LoadRequest) =>
      new Promise<LoadResult>((resolve, reject) => {
        child.once('message', (r: LoadResult & { error?: string }) => (r.error ? reject(new Error(`load generator: ${r.error}`)) : resolve(r)));
        child.send(req);
      }),
    stop: () => void child.kill('SIGKILL'),
    pid: child.pid!,
    /** Into the real-time class (SCHED_FIFO 1): 'yes', or why not. */
    toFifo: () => {
      const why = chrt(['-f', '-p', '1']);
      return why ? `no (chrt refused: ${why})` : 'yes';
    },
    /** Back to the normal class (SCHED_OTHER); a failure is printed (the generator would stay ahead of the rest). */
    toOther: () => {
      const why = chrt(['-o', '-p', '0']);
      if (why) log(`load generator: could not return it to the normal class: ${why}`);
    },
  };
}

/**
 * --cpu-by-second: cp-sampler.js in its own process; start() before the churn, stop() after it answers each
 * second's cores and run-queue wait per group (cp-procstat.ts GroupPeriod).
 */
function cpuSampler() {
  // detached: a session (scheduling group) of its own, so that its readings are not queued behind the bench's
  const child = fork(join(dirname(fileURLToPath(import.meta.url)), 'cp-sampler.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true });
  child.on('error', () => undefined); // a send to a sampler that died: stop() answers undefined
  return {
    start: (groups: Record<string, number[]>, tick: number) => void (child.connected && child.send({ groups, tick })),
    // undefined when it died or does not answer within 10 s: no line, not a failed or hung benchmark
    stop: () =>
      new Promise<Period[] | undefined>((resolve) => {
        if (!child.connected) return resolve(undefined);
        const timer = setTimeout(() => (child.kill('SIGKILL'), resolve(undefined)), 10_000);
        const done = (r: Period[] | undefined) => (clearTimeout(timer), resolve(r));
        child.once('message', done);
        child.once('exit', () => done(undefined));
        child.send('stop');
      }),
    kill: () => void child.kill('SIGKILL'),
  };
}
const clustersOf = (ks: number[]) => ks.map((k) => ({ k, url: etcdUrl(k) }));
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const quantile = (xs: number[], q: number) => rankQuantile([...xs].sort((a, b) => a - b), q);
/** Host-wide CPU jiffies from /proc/stat (busy = all but idle and iowait) and the number of cores. */
function hostCpu(): { busy: number; total: number; cores: number } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const f = lines[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total, cores: lines.filter((l) => /^cpu\d/.test(l)).length };
}
const gc = () => (globalThis as { gc?: () => void }).gc?.();

async function sweep(dir: string): Promise<void> {
  // the floor: the same etcds and records without any kvstoremesh (etcd's own idle cost)
  const variants: Array<[string, string | undefined]> = [['etcds alone', undefined], ...(o.anchor ? [['anchor', join(o.anchor, 'bin', 'wiremesh.js')] as [string, string]] : []), ['this tree', OURS]];
  const rows: Array<{ K: number; variant: string; synced: boolean; rest: RestFigures; layout: string }> = [];
  const gen = loadGenerator();
  try {
    for (const k of SWEEP!)
      for (const [variant, bin] of variants) {
        log(`sweep: K = ${k} (${N} nodes x ${E} endpoints per cluster), ${variant}`);
        const m = await startMesh(k, join(dir, `${variant.replace(/ /g, '-')}-${k}`), bin, { nodes: N, etcd: ETCD, nodeFlags: KVSM_FLAGS, layout: LAYOUT });
        try {
          await gen.request({ op: 'load', clusters: clustersOf(range(1, k)), nodes: N, endpoints: E });
          // a mesh that cannot finish its first sync (the anchor at K = 32 on 2 shared cores) is measured as it is
          const synced = !bin || (await waitMeshSynced(m, 180_000).then(() => true, (err: Error) => (log(`  ${err.message}; measured as it is`), false)));
          // the last status writes after the sync settle (and kvstoremesh's heaps give back the sync's garbage: s9idle)
          await sleep(SWEEP_SETTLE_S * 1000);
          const rest = await measureRest(m, REST_S);
          log(`  ${restLine(rest)}`);
          rows.push({ K: k, variant, synced, rest, layout: m.layout });
        } finally {
          await m.stop();
        }
      }
  } finally {
    gen.stop();
  }
  console.log(`\ncontrol plane at rest, K clusters of ${N} nodes x ${E} endpoints, no churn, ${REST_S} s windows from ${SWEEP_SETTLE_S} s after the sync, ${ETCD_LINE}`);
  const fell = LAYOUT === 'cluster' ? rows.filter((r) => !r.layout.startsWith('cluster')) : [];
  const layoutLine = LAYOUT === 'session' ? "session (the kernel's)" : fell.length ? `cluster, but the kernel's for ${fell.map((r) => `K = ${r.K} ${r.variant}`).join(', ')}: ${fell[0]!.layout}` : 'cluster (CPU groups per cluster in every mesh)';
  console.log(`scheduling layout (--layout ${LAYOUT}): ${layoutLine}`);
  console.log('| K | kvstoremesh | writes/s per etcd | writes/s mesh-wide | commits/s per etcd | commits/s mesh-wide | CPU cores (etcds + kvstoremesh) | mcores per etcd / kvstoremesh | wakes/s per etcd / kvstoremesh |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const { etcd, kvstoremesh } = r.rest.perProcess;
    console.log(`| ${r.K} | ${r.variant}${r.synced ? '' : ' (first sync unfinished)'} | ${r.rest.writesPerS.perEtcd.toFixed(2)} | ${r.rest.writesPerS.mesh.toFixed(1)} | ${r.rest.commitsPerS.perEtcd.toFixed(2)} | ${r.rest.commitsPerS.mesh.toFixed(1)} | ${r.rest.cores.total.toFixed(3)} (${r.rest.cores.etcds.toFixed(3)} + ${r.rest.cores.kvstoremesh.toFixed(3)}) | ${etcd.mcores.toFixed(2)} / ${kvstoremesh.mcores.toFixed(2)} | ${etcd.wakesPerS.toFixed(0)} / ${kvstoremesh.wakesPerS.toFixed(0)} |`);
  }
  save(`controlplane-sweep-${SWEEP!.join('-')}.json`, { date: new Date().toISOString(), nodesPerCluster: N, endpointsPerNode: E, restSeconds: REST_S, etcd: ETCD, rows });
}

function save(name: string, report: unknown): void {
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', name), JSON.stringify(report, null, 2) + '\n');
}

async function fullRun(dir: string): Promise<void> {
  // etcd's per-method grpc latency histograms (grpc_server_handling_seconds), read around the churn
  process.env.ETCD_METRICS = 'extensive';
  log(`starting ${K} etcd + kvstoremesh pairs${o.anchor ? ` (the anchor's kvstoremesh, ${o.anchor})` : ''}`);
  const churnProfile = o['profile-kvstoremesh-churn'] && resolvePath(o['profile-kvstoremesh-churn']);
  for (const d of [o['profile-kvstoremesh'], churnProfile]) if (d) mkdirSync(d, { recursive: true });
  const m = await startMesh(K, dir, o.anchor ? join(o.anchor, 'bin', 'wiremesh.js') : OURS, { nodes: N, profileDir: o['profile-kvstoremesh'], signalProfileDir: churnProfile || undefined, etcd: ETCD, args: !o.anchor && o['txn-interval-ms'] ? ['--txn-interval-ms', o['txn-interval-ms']] : [], nodeFlags: KVSM_FLAGS, layout: LAYOUT });
  // SIGUSR2 starts, then stops, each kvstoremesh's profiler (cp-profile-signal.ts)
  const toggleProfiles = () => churnProfile && m.meshes.forEach((p) => p.kill('SIGUSR2'));
  const gen = loadGenerator();
  const sampler = o['cpu-by-second'] ? cpuSampler() : undefined;
  let agent: Agent | undefined;
  let stopProfile: (() => Promise<void>) | undefined;
  try {
    log('starting the measuring agent in c1');
    mkdirSync(join(dir, 'agent'), { recursive: true });
    agent = new Agent(
      {
        cluster: { name: 'c1', id: 1 },
        node: { name: 'bench', addresses: ['198.19.255.254'], podCIDRs: ['100.127.255.0/24'] },
        wireguard: { interface: 'wmb0', port: 51820, privateKeyFile: join(dir, 'agent', 'key'), mtu: 1412 },
        etcd: { endpoints: [etcdUrl(1)] },
        api: { socket: join(dir, 'agent.sock') },
        leaseTTL: 60,
        policy: { enabled: true, defaultLocalCluster: true, proxyPort: 15001, proxyWorkers: 1, conntrack: { maxEntries: 500_000, perEndpoint: 65_536, natPerEndpoint: 65_536 }, hostFirewall: true },
        services: { maglevTableSize: 16381, maxBackendsPerCluster: 4096, dns: { enabled: false, address: '169.254.1.1', port: 53 } },
      },
      silentLogger,
    );
    await agent.start();
    stopProfile = o['profile-agent'] ? profileWindows(o['profile-agent'], num(o['profile-window'], 'profile-window', 30), log) : undefined;
    gc();
    await sleep(2000); // as before mem1: V8 unmaps freed pages on a background thread
    // both readings after a malloc trim (what the agent's own check, src/agent/malloctrim.ts, does at rest once
    // ≥ 2 MiB are free), so neither holds free pages the other has given back; it does not remove the spread of
    // glibc's thread arenas, the in-use memory of other threads when read (s30: -35 to +32 B per remote endpoint)
    native.mallocTrim();
    const mem0 = process.memoryUsage();
    const parts0 = memParts();
    // CP_MEMORY_SNAPSHOT=PREFIX: heap snapshots before the load and at rest (PREFIX-0/1.heapsnapshot), for a diff
    const snapshot = async (n: number) => process.env.CP_MEMORY_SNAPSHOT && (await import('node:v8')).writeHeapSnapshot(`${process.env.CP_MEMORY_SNAPSHOT}-${n}.heapsnapshot`);
    await snapshot(0);

    log(`loading ${K} x ${N} nodes and ${K} x ${N * E} endpoints (load generator process)`);
    const t0 = Date.now();
    const loaded = await gen.request({ op: 'load', clusters: clustersOf(range(1, K)), nodes: N, endpoints: E });
    log(`written in ${loaded.seconds.toFixed(1)} s; waiting for the agent to program ${K * N} peers`);
    // not status(): that reads every peer's counters from the device, O(peers) per call
    const peerCount = () => agent!.peerCount;
    for (let last = 0, cpu0 = threadCpu(); peerCount() < K * N || agent.endpoints.size < K * N * E; ) {
      await sleep(500);
      if (Date.now() - last > 10_000) {
        const cpu = threadCpu();
        const s = (Date.now() - last) / 1000;
        const busy = last ? `; cores: JavaScript thread ${((cpu.js - cpu0.js) / s).toFixed(2)}, other threads ${((cpu.other - cpu0.other) / s).toFixed(2)}` : '';
        last = Date.now();
        cpu0 = cpu;
        log(`  agent: ${peerCount()} peers, ${agent.endpoints.size} endpoints, RSS ${(process.memoryUsage.rss() / 2 ** 20).toFixed(0)} MiB${busy}`);
      }
    }
    const syncS = (Date.now() - t0) / 1000;
    const syncedAt = Date.now();
    log(`synced ${syncS.toFixed(1)} s after the first write; the mesh at rest for ${REST_S} s`);
    await waitMeshSynced(m, 60_000);
    await sleep(3000);
    const since = () => (Date.now() - syncedAt) / 1000;
    // right after the sync (what this line measured before --settle-seconds), then, with --rest-timeline, windows
    // back to back, then the settled window
    const timeline: Array<{ fromS: number; rest: RestFigures }> = [];
    do {
      const fromS = since();
      const r = await measureRest(m, REST_S);
      timeline.push({ fromS, rest: r });
      log(`  rest window from +${fromS.toFixed(0)} s after the sync: ${restLine(r)}`);
    } while (since() + REST_S <= TIMELINE_S);
    await sleep(Math.max(0, SETTLE_S * 1000 - (Date.now() - syncedAt)));
    const settledFromS = since();
    const rest = await measureRest(m, REST_S);
    // the agent at rest: ≥ 25 s after its sync (its heap compaction checks every 10 s and runs once the heap is
    // quiet), 12 s after the last GC (V8 unmaps freed pages on a background thread; the GC frees the sync's
    // Buffers into glibc's arenas, and the agent's next check, ≤ 10 s later, trims them: malloctrim.ts)
    await sleep(Math.max(0, 25_000 - (Date.now() - syncedAt)));
    gc();
    await sleep(12_000);
    native.mallocTrim();
    const mem1 = process.memoryUsage();
    const parts1 = memParts();
    await snapshot(1);

    // the load generator's clients connect before any window below opens (a client connects on its first request)
    const fifo = LOADGEN_CLASS === 'fifo' ? gen.toFifo() : 'no (--load-generator-class other)';
    const connected = await gen.request({ op: 'connect', clusters: clustersOf(range(2, K)) });
    if (connected.failed) log(`load generator: ${connected.failed} of ${K - 1} etcds did not answer its first read within 10 s`);
    log(`churn: nominal ${RATE} writes/s for ${CHURN_S} s across c2..c${K} (half node records, half endpoints)`);
    // [send time, propagation] per node write: the whole window's quantiles, and by second of the churn (a slow start, or the whole window)
    const sentDelays: Array<[number, number]> = [];
    const seen = new Set<string>();
    agent.on('peers-programmed', (recs: NodeRecord[]) => {
      const t = Date.now();
      for (const r of recs) {
        const sent = Number(r.bootId);
        const id = `${r.cluster}/${r.name}/${sent}`;
        if (sent > 1e12 && !seen.has(id)) seen.add(id), programmedAt.set(id, t), sentDelays.push([sent, t - sent]), copiedAt.has(id) && agentShare.push(t - copiedAt.get(id)!);
      }
    });
    // the kvstoremesh hop alone: remote write -> its copy in c1's etcd
    const hop: number[] = [];
    // per node write: when its copy appeared in c1's etcd, so that the agent's own share (programmed - copied) is
    // measured write by write (this watch runs on the agent's event loop: its time stamps wait for that loop too)
    const copiedAt = new Map<string, number>();
    const agentShare: number[] = [];
    // per node write: programmed time, to read against etcd's answer to the load generator afterwards
    const programmedAt = new Map<string, number>();
    const cacheWatch = await m.clients[0]!.watch().prefix('wiremesh/cache/nodes/v1/').create();
    cacheWatch.on('put', (kv) => {
      const t = Date.now();
      const r = (() => {
        try {
          return nodeCodec.decode(kv.key.toString(), kv.value.toString());
        } catch {
          return undefined;
        }
      })();
      if (r && Number(r.bootId) > 1e12) (hop.push(t - Number(r.bootId)), copiedAt.set(`${r.cluster}/${r.name}/${Number(r.bootId)}`, t));
    });
    // what the mesh spends during the churn (the same figures as at rest, over the churn's nominal window)
    const disk0 = await etcdHistograms(K);
    const agentCpu0 = process.cpuUsage();
    const clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    const waits0 = [procUse(process.pid, clkTck), procUse(gen.pid, clkTck)];
    const host0 = hostCpu();
    sampler?.start({ etcds: m.etcds.map((e) => e.proc.pid!), kvstoremesh: m.meshes.map((p) => p.pid!), agent: [process.pid], 'load generator': [gen.pid] }, clkTck);
    const churnT0 = Date.now();
    toggleProfiles();
    let stopping: Promise<Period[] | undefined> | undefined;
    // the sampler stops when the load generator's last write is answered (the churn's end), not after measureRest;
    // its answer is awaited after the windows below are read, so a silent sampler cannot stretch them
    const churnDone = gen.request({ op: 'churn', clusters: clustersOf(range(2, K)), nodes: N, endpoints: E, rate: RATE, seconds: CHURN_S }).then((r) => ((stopping = sampler?.stop()), r));
    const [churn, load] = await Promise.all([churnDone, measureRest(m, CHURN_S)]);
    toggleProfiles();
    const agentCpu = process.cpuUsage(agentCpu0);
    const churnS = (Date.now() - churnT0) / 1000;
    const waits1 = [procUse(process.pid, clkTck), procUse(gen.pid, clkTck)];
    const [agentWait, genWait] = [0, 1].map((i) => perProcess([waits0[i]!], [waits1[i]!], churnS));
    const host1 = hostCpu();
    const cpuBySecond = await stopping;
    // after the churn's readings (a chrt spawn); on a rejection above the run's `finally` kills the generator instead
    if (fifo === 'yes') gen.toOther();
    // from etcd's answer to the load generator (after the remote commit: a lower bound of the mesh's own share)
    const sinceAck: number[] = [];
    for (const [id, acked] of churn.nodeAcks ?? []) if (programmedAt.has(id)) sinceAck.push(programmedAt.get(id)! - acked);
    const disk1 = await etcdHistograms(K);
    const q = (h: keyof typeof disk0) => ({ p50: histogramQuantile(disk0[h], disk1[h], 0.5).ms, p99: histogramQuantile(disk0[h], disk1[h], 0.99).ms, n: histogramQuantile(disk0[h], disk1[h], 0.5).n });
    const served = { put: q('put'), txn: q('txn') };
    const fsync = { p50: histogramQuantile(disk0.walFsync, disk1.walFsync, 0.5), p99: histogramQuantile(disk0.walFsync, disk1.walFsync, 0.99) };
    const commit = { p50: histogramQuantile(disk0.backendCommit, disk1.backendCommit, 0.5), p99: histogramQuantile(disk0.backendCommit, disk1.backendCommit, 0.99) };
    const machine = { busyCores: ((host1.busy - host0.busy) / (host1.total - host0.total)) * host1.cores, agentCores: (agentCpu.user + agentCpu.system) / 1e6 / churnS, loadGeneratorCores: churn.cores ?? NaN, load: loadavg()[0], agentRunqMsPerS: agentWait!.runqMsPerS, agentMainRunqMsPerS: agentWait!.mainRunqMsPerS, loadGeneratorRunqMsPerS: genWait!.runqMsPerS };
    await sleep(5000);
    await cacheWatch.cancel();
    const delays = sentDelays.map(([, ms]) => ms);

    const remoteEps = (K - 1) * N * E;
    const report = {
      date: new Date().toISOString(),
      clusters: K,
      layout: { asked: LAYOUT, got: m.layout, loadGeneratorClass: LOADGEN_CLASS, loadGeneratorFifo: fifo },
      nodesPerCluster: N,
      endpointsPerNode: E,
      initialSyncSeconds: syncS,
      churn: { nominalPerS: RATE, achievedPerS: churn.writes / churn.seconds, writes: churn.writes, failed: churn.failed, seconds: churn.seconds, nodeWritesMeasured: delays.length },
      propagationMs: delays.length ? { p50: quantile(delays, 0.5), p99: quantile(delays, 0.99), max: Math.max(...delays) } : null,
      // by the load generator's clock start (the parent's churnT0 is a few ms earlier: a 31st second of the last sends)
      propagationBySecondMs: quantilesBySecond(sentDelays, churn.t0 ?? churnT0),
      kvstoremeshHopMs: hop.length ? { p50: quantile(hop, 0.5), p99: quantile(hop, 0.99) } : null,
      remoteWriteAckMs: churn.ackMs,
      propagationSinceAckMs: sinceAck.length ? { p50: quantile(sinceAck, 0.5), p99: quantile(sinceAck, 0.99) } : null,
      agentShareMs: agentShare.length ? { p50: quantile(agentShare, 0.5), p99: quantile(agentShare, 0.99) } : null,
      machineDuringChurn: machine,
      etcdDiskMs: { walFsync: { p50: fsync.p50.ms, p99: fsync.p99.ms, n: fsync.p50.n }, backendCommit: { p50: commit.p50.ms, p99: commit.p99.ms, n: commit.p50.n } },
      etcdServedMs: served,
      etcdDataDir: o['etcd-data-dir'] ?? tmpdir(),
      agentBytesPerRemoteEndpoint: { heap: (mem1.heapUsed - mem0.heapUsed) / remoteEps, rss: (mem1.rss - mem0.rss) / remoteEps },
      agentRssMiB: mem1.rss / 2 ** 20,
      agentPartsPerRemoteEndpoint: partsPer(parts0, parts1, (K - 1) * N * E),
      agentParts: { before: parts0, atRest: parts1 },
      restAfterSync: timeline[0]!.rest,
      restTimeline: timeline,
      settleSeconds: SETTLE_S,
      restSettledFromS: settledFromS,
      rest,
      duringChurn: load,
      ...(cpuBySecond ? { cpuBySecond } : {}),
    };
    console.log(`\ncontrol plane: ${K} clusters x ${N} nodes x ${E} endpoints/node (${K * N} nodes, ${K * N * E} endpoints), kvstoremesh of ${o.anchor ?? 'this tree'}, ${ETCD_LINE}`);
    console.log(`scheduling layout (--layout ${LAYOUT}): ${m.layout}; the load generator in the real-time class for the churn (--load-generator-class ${LOADGEN_CLASS}): ${fifo}`);
    console.log(`initial sync into one agent (all clusters): ${syncS.toFixed(1)} s`);
    console.log(`agent growth per remote endpoint (incl. its share of nodes and peers): RSS ${report.agentBytesPerRemoteEndpoint.rss.toFixed(0)} B, heap ${report.agentBytesPerRemoteEndpoint.heap.toFixed(0)} B (RSS ${report.agentRssMiB.toFixed(0)} MiB; at rest ≥ 25 s after the sync; the agent's heap compactions: ${heapCompactions}, malloc trims: ${mallocTrims})`);
    console.log(`  by part, B per remote endpoint: ${Object.entries(report.agentPartsPerRemoteEndpoint).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    console.log(`at rest right after the sync (from +${timeline[0]!.fromS.toFixed(0)} s): ${restLine(timeline[0]!.rest)}`);
    console.log(`at rest, settled (from +${settledFromS.toFixed(0)} s, --settle-seconds ${SETTLE_S}): ${restLine(rest)}`);
    console.log(`churn: achieved ${report.churn.achievedPerS.toFixed(1)} of nominal ${RATE} writes/s (${churn.writes} acknowledged, ${churn.failed} failed, in ${churn.seconds.toFixed(1)} s)`);
    console.log(`during the churn: ${restLine(load)}`);
    if (report.propagationMs)
      console.log(`propagation, write in a remote etcd -> agent data path: p50 ${report.propagationMs.p50} ms, p99 ${report.propagationMs.p99} ms, max ${report.propagationMs.max} ms (${delays.length} node writes; later writes to a node supersede earlier ones)`);
    else console.log('propagation: no node write reached the agent');
    if (report.kvstoremeshHopMs) console.log(`  of which remote etcd -> kvstoremesh -> c1's etcd: p50 ${report.kvstoremeshHopMs.p50} ms, p99 ${report.kvstoremeshHopMs.p99} ms`);
    if (churn.ackMs) console.log(`  the remote write alone (load generator: send -> etcd's answer): p50 ${churn.ackMs.p50} ms, p99 ${churn.ackMs.p99} ms`);
    if (report.propagationSinceAckMs) console.log(`  propagation from etcd's answer to the remote write (a lower bound: the answer follows the commit): p50 ${report.propagationSinceAckMs.p50} ms, p99 ${report.propagationSinceAckMs.p99} ms`);
    if (report.agentShareMs) console.log(`  the agent's share, write by write (copy seen in c1's etcd -> programmed): p50 ${report.agentShareMs.p50} ms, p99 ${report.agentShareMs.p99} ms`);
    console.log(`etcds during the churn (data in ${report.etcdDataDir}; histogram bucket bounds): WAL fsync p50 ≤ ${fsync.p50.ms} ms, p99 ≤ ${fsync.p99.ms} ms (${fsync.p50.n}); boltdb commit p50 ≤ ${commit.p50.ms} ms, p99 ≤ ${commit.p99.ms} ms (${commit.p50.n})`);
    console.log(`etcd's own handling time (server side, bucket bounds): the load generator's Put p50 ≤ ${served.put.p50} ms, p99 ≤ ${served.put.p99} ms (${served.put.n}); kvstoremesh's Txn p50 ≤ ${served.txn.p50} ms, p99 ≤ ${served.txn.p99} ms (${served.txn.n})`);
    console.log(`machine during the churn: ${machine.busyCores.toFixed(2)} of ${hostCpu().cores} cores busy (whole host), agent process ${machine.agentCores.toFixed(3)}, load generator ${machine.loadGeneratorCores.toFixed(3)}, load average ${machine.load.toFixed(2)}`);
    console.log(`  waiting for a core (run queue, ms per s): agent ${machine.agentRunqMsPerS.toFixed(1)} (its JavaScript thread ${machine.agentMainRunqMsPerS.toFixed(1)}), load generator ${machine.loadGeneratorRunqMsPerS.toFixed(1)}; etcds and kvstoremesh: the churn line above`);
    const bySecond = (xs: Array<{ p50: number; p99: number }>) => xs.map((x) => `${x.p50}/${x.p99}`).join(' ');
    console.log(`  propagation by second of the churn (by send time), p50/p99 ms: ${bySecond(report.propagationBySecondMs)}`);
    if (churn.ackBySecond) console.log(`  the remote write alone by second of the churn, p50/p99 ms: ${bySecond(churn.ackBySecond)}`);
    if (cpuBySecond?.length) {
      console.log(`  cores by second of the churn (--cpu-by-second: ${cpuBySecond.length} periods of ~1 s from its start to its last answer), on a CPU/waiting for a core (s per s; a wait counts in the period it ends):`);
      const line = (label: string, f: (r: Record<string, GroupPeriod>) => [number, number]) => console.log(`    ${label}: ${cpuBySecond.map((r) => f(r.groups).map((x) => x.toFixed(2)).join('/')).join(' ')}`);
      line('etcds', (r) => [r.etcds!.cores, r.etcds!.waitS]);
      line('kvstoremesh, JavaScript threads', (r) => [r.kvstoremesh!.mainCores, r.kvstoremesh!.mainWaitS]);
      // a thread that ended takes its time out of the process's sum: the difference can dip below 0
      const rest = (g: GroupPeriod): [number, number] => [Math.max(0, g.cores - g.mainCores), Math.max(0, g.waitS - g.mainWaitS)];
      line('kvstoremesh, other threads', (r) => rest(r.kvstoremesh!));
      line('bench process (the agent and the harness), JavaScript thread', (r) => [r.agent!.mainCores, r.agent!.mainWaitS]);
      line('bench process, other threads', (r) => rest(r.agent!));
      line('load generator', (r) => [r['load generator']!.cores, r['load generator']!.waitS]);
    }
    save(`controlplane-${K}x${N}x${E}${o.anchor ? '-anchor' : ''}.json`, { ...report, kvstoremesh: o.anchor ?? 'this tree', etcd: ETCD });
  } finally {
    await stopProfile?.().catch(() => undefined);
    gen.stop();
    sampler?.kill();
    await agent?.stop().catch(() => undefined);
    await m.stop();
  }
}

runInNetns(num(o.timeout, 'timeout', 900), async () => {
  // --etcd-data-dir: where the etcds' data (WAL, boltdb) goes, e.g. /dev/shm to take the shared disk's fsyncs out
  const dir = mkdtempSync(join(o['etcd-data-dir'] ?? tmpdir(), 'wmcpb-'));
  try {
    if (SWEEP) await sweep(dir);
    else await fullRun(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

