/**
 * bench:controlplane's pieces that are not the measured agent: running the
 * benchmark in the foreground inside a private network namespace, starting K
 * clusters (a real etcd and a real kvstoremesh process each, connected pairwise),
 * and measuring a mesh at rest from outside its processes: CPU from
 * /proc/<pid>/stat (utime + stime) and writes from each etcd's /metrics.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { enableCluster, pinFor } from '../src/controlplane/clustermesh.js';
import { pinnedKey, remoteKey, syncedPrefix } from '../src/controlplane/keys.js';
import { connectEtcd } from '../src/controlplane/kvstore.js';
import { REPLICATED_TYPES } from '../src/controlplane/kvstoremesh.js';
import { startEtcd, type EtcdProcess } from '../src/testbed/etcd.js';
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../src/testbed/state.js';
import { clusterName, clusterPodCIDRs, underlayCIDRs } from './cp-load.js';
import { perProcess, procUse, type PerProcess } from './cp-procstat.js';
import { answerPlace, placeInGroups, SchedGroups, type PlaceRequest } from './cp-sched.js';

export const log = (m: string): void => void process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const IN_NETNS = 'WIREMESH_BENCH_NETNS';

/**
 * Runs `main` inside a fresh network namespace with only loopback. Outside one, this process creates it, runs
 * itself in it as a child (with the V8 flags and environment the agent runs with, AGENT_NODE_FLAGS and AGENT_ENV: the
 * child hosts the measured agent; an inherited MALLOC_ARENA_MAX wins over AGENT_ENV's, for A/B runs; what the child
 * starts inherits its environment, kvstoremesh too), waits for the child and exits with its code; after `timeoutS`
 * (or on SIGINT/SIGTERM) it kills every process in the namespace (the child, etcds, kvstoremesh, the load generator) and exits 124
 * (130/143 on a signal). The namespace is removed in every case. Over the child's IPC channel it places the
 * child's processes in CPU scheduling groups on request (cp-sched.ts: the namespace's /sys has no cgroup
 * filesystem) and removes those groups once every process of the namespace is gone.
 */
export function runInNetns(timeoutS: number, main: () => Promise<void>): void {
  if (process.env[IN_NETNS]) {
    main().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
    return;
  }
  const ns = `i16-cprest-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  // the namespace's processes: killed at the end, and the only ones the scheduling groups take (cp-sched.ts)
  const nsPids = () => new Set(execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number));
  const groups = new SchedGroups(`wiremesh-bench-${process.pid}`, nsPids);
  const killAll = () => {
    for (let i = 0; i < 50; i++) {
      const pids = nsPids();
      if (pids.size === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      execFileSync('sleep', ['0.1']);
    }
  };
  const finish = (code: number) => {
    try {
      killAll();
    } catch (err) {
      // `ip` itself failing (the host out of processes or descriptors) must not skip the removals below
      process.stderr.write(`could not stop the processes in ${ns}: ${(err as Error).message}\n`);
    }
    for (const left of groups.remove()) process.stderr.write(`could not remove scheduling group ${left}\n`);
    try {
      execFileSync('ip', ['netns', 'del', ns]);
    } catch (err) {
      process.stderr.write(`could not remove namespace ${ns}: ${(err as Error).message}\n`);
    }
    process.exit(code);
  };
  let child: ChildProcess;
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...AGENT_NODE_FLAGS, '--expose-gc', '--max-old-space-size=8192', process.argv[1]!, ...process.argv.slice(2)], {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      env: { ...AGENT_ENV, ...process.env, [IN_NETNS]: ns },
    });
    child.on('message', (req: PlaceRequest) => void (req?.op === 'sched-place' && child.connected && child.send(answerPlace(groups, req))));
    child.on('error', (err) => {
      // a send racing the child's exit is harmless (its 'exit' follows); a child that never started (EAGAIN, EMFILE:
      // `ip` ran a moment ago) emits 'error' and no 'exit', so the parent would wait out the timeout, then exit 0
      // with the namespace left
      if (child.pid !== undefined) return;
      clearTimeout(timer);
      process.stderr.write(`bench:controlplane: could not start the benchmark in ${ns}: ${err.message}\n`);
      finish(1);
    });
  } catch (err) {
    finish(1);
    throw err;
  }
  let forced: number | undefined;
  const kill = (code: number, why: string) => {
    if (forced !== undefined) return;
    forced = code;
    process.stderr.write(`bench:controlplane: ${why}: killing every process in ${ns}\n`);
    killAll();
  };
  const timer = setTimeout(() => kill(124, `timed out after ${timeoutS} s`), timeoutS * 1000);
  process.once('SIGINT', () => kill(130, 'interrupted'));
  process.once('SIGTERM', () => kill(143, 'terminated'));
  child.once('exit', (code, signal) => {
    clearTimeout(timer);
    finish(forced ?? code ?? (signal ? 1 : 0));
  });
}

export const etcdPort = (k: number): number => 24000 + 10 * k;
/**
 * The raft tick of the mesh's one-member etcds (--etcd-tick-ms; src/testbed/etcd.ts EtcdSpec.tickMs): 500 ms, as
 * docs/benchmarks.md recommends for a one-member etcd (no follower to heartbeat; idle CPU ~27 % lower than at
 * etcd's default 100 ms). `--etcd-tick-ms 100` measures etcd's default.
 */
export const ETCD_TICK_MS = 500;
/**
 * The rest of the mesh's etcd tuning (src/testbed/etcd.ts EtcdSpec): GOMAXPROCS 1 (--etcd-gomaxprocs) and a 1 s
 * backend batch commit (--etcd-batch-ms), docs/benchmarks.md's recommendation for a one-member etcd per cluster on
 * a shared host: 16 idle etcds ~0.76x the CPU of Go's and etcd's defaults (2026-12-01). 0 keeps etcd's default.
 */
export const ETCD_GOMAXPROCS = 1;
export const ETCD_BATCH_MS = 1000;
/** How the mesh's etcds run: raft tick, GOMAXPROCS, backend batch interval (ms; 0: etcd's or Go's default). */
export interface EtcdTuning {
  tickMs: number;
  goMaxProcs: number;
  batchMs: number;
}
export const ETCD_TUNING: EtcdTuning = { tickMs: ETCD_TICK_MS, goMaxProcs: ETCD_GOMAXPROCS, batchMs: ETCD_BATCH_MS };
export const etcdUrl = (k: number): string => `http://127.0.0.1:${etcdPort(k)}`;

export interface Mesh {
  K: number;
  etcds: EtcdProcess[];
  /** kvstoremesh processes, index k-1. */
  meshes: ChildProcess[];
  clients: Etcd3[];
  stop(): Promise<void>;
  /** The scheduling layout the run got (cp-sched.ts), as printed. */
  layout: string;
}

/** How the host's CPU is shared (cp-sched.ts): the kernel's sessions (the default), or per cluster. */
export type SchedLayout = 'cluster' | 'session';

/**
 * K clusters c1..cK, each with its etcd and kvstoremesh (`bin` is the wiremesh.js that runs it: this tree's, or
 * an anchor build's), every pair connected by writing the pins and remote entries; each cluster's pod CIDRs cover
 * its own `nodes` synthetic nodes' /24s (cp-load.ts clusterPodCIDRs: kvstoremesh refuses records in a range two
 * pins hold, as a shared 100.64.0.0/10 was). Without `bin`, the
 * etcds alone with the same records and no replication (the floor: what K idle etcds cost). `nodeFlags`: Node/V8
 * flags for every kvstoremesh process, before its script (bench:controlplane --kvstoremesh-node-flags).
 */
export async function startMesh(K: number, dir: string, bin: string | undefined, opts: { nodes: number; profileDir?: string; signalProfileDir?: string; etcd?: EtcdTuning; args?: string[]; nodeFlags?: string[]; layout?: SchedLayout }): Promise<Mesh> {
  const { profileDir, signalProfileDir, etcd: tune = ETCD_TUNING } = opts;
  // --profile-kvstoremesh-churn: profiled between two SIGUSR2 (cp-profile-signal.ts), not from start to exit
  const profileArgs = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : signalProfileDir ? ['--import', join(dirname(fileURLToPath(import.meta.url)), 'cp-profile-signal.js')] : [];
  const etcds: EtcdProcess[] = [];
  const meshes: ChildProcess[] = [];
  const clients: Etcd3[] = [];
  const stop = async () => {
    for (const c of clients) c.close();
    // a profiled process writes its profile on a clean exit (SIGTERM): given 10 s before SIGKILL
    if (profileDir) await Promise.all(meshes.map((p) => stopGently(p, 10_000)));
    for (const p of meshes) p.kill('SIGKILL');
    await Promise.all(etcds.map((e) => e.stop()));
  };
  try {
    for (let k = 1; k <= K; k++) {
      etcds.push(await startEtcd({ name: clusterName(k), dataDir: join(dir, `etcd${k}`), host: '127.0.0.1', clientPort: etcdPort(k), peerPort: etcdPort(k) + 1, logFile: join(dir, `etcd${k}.log`), tickMs: tune.tickMs, goMaxProcs: tune.goMaxProcs, backendBatchMs: tune.batchMs }));
      // VIPs apart from the pods (100.64.0.0/10 at the largest shapes holds the default 100.127.<k>.0/24) and the underlay
      await enableCluster({ endpoints: [etcdUrl(k)] }, { name: clusterName(k), id: k, podCIDRs: clusterPodCIDRs(opts, k), underlayCIDRs: underlayCIDRs(k), serviceCIDR: `198.19.${k}.0/24` });
      clients.push(connectEtcd({ endpoints: [etcdUrl(k)] }));
    }
    await Promise.all(
      clients.map(async (c, i) => {
        for (let y = 1; y <= K; y++) {
          if (y === i + 1) continue;
          await c.put(pinnedKey(clusterName(y))).value(JSON.stringify(pinFor({ name: clusterName(y), id: y, podCIDRs: clusterPodCIDRs(opts, y), underlayCIDRs: underlayCIDRs(y) }, false)));
          await c.put(remoteKey(clusterName(y))).value(JSON.stringify({ name: clusterName(y), endpoints: [etcdUrl(y)] }));
        }
      }),
    );
    for (let k = 1; bin && k <= K; k++)
      meshes.push(spawn(process.execPath, [...(opts.nodeFlags ?? []), ...profileArgs, bin, 'kvstoremesh', '--cluster', clusterName(k), '--etcd', etcdUrl(k), ...(opts.args ?? [])], { stdio: 'ignore', env: { ...process.env, LOG_LEVEL: 'warn', ...(signalProfileDir ? { WIREMESH_PROFILE_DIR: signalProfileDir } : {}) } }));
    if (opts.layout === 'cluster') {
      // each cluster's etcd and kvstoremesh in one CPU group (cp-sched.ts), all or none
      const groups = Object.fromEntries(etcds.map((e, i) => [clusterName(i + 1), [e.proc.pid!, ...(meshes[i] ? [meshes[i]!.pid!] : [])]]));
      const why = await placeInGroups(groups);
      const what = meshes.length ? 'etcd + kvstoremesh each' : 'etcd each';
      return { K, etcds, meshes, clients, stop, layout: why ? `session (the kernel's: the cluster groups were refused: ${why})` : `cluster (${K} CPU groups, ${what})` };
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { K, etcds, meshes, clients, stop, layout: "session (the kernel's)" };
}

/** SIGTERM, then resolves when the process exited or after `ms`. */
function stopGently(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  return Promise.race([exited, sleep(ms).then(() => undefined)]);
}

/** Resolves once every kvstoremesh marked every type of every remote synced (K-1 remotes x the replicated types). */
export async function waitMeshSynced(m: Mesh, timeoutMs: number): Promise<void> {
  const want = (m.K - 1) * REPLICATED_TYPES.length;
  const t0 = Date.now();
  for (;;) {
    const counts = await Promise.all(m.clients.map(async (c) => (await c.getAll().prefix(syncedPrefix()).keys()).length));
    if (counts.every((n) => n >= want)) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`mesh not synced after ${timeoutMs / 1000} s: markers ${counts.join(',')} of ${want} each`);
    await sleep(500);
  }
}

/** One etcd's counters from its /metrics (Prometheus text). */
async function etcdCounters(k: number): Promise<{ commits: number; puts: number; deletes: number }> {
  const text = await (await fetch(`${etcdUrl(k)}/metrics`)).text();
  const get = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { commits: get('etcd_server_proposals_committed_total'), puts: get('etcd_mvcc_put_total'), deletes: get('etcd_mvcc_delete_total') };
}

/** Cumulative bucket counts (by upper bound, s) of one of etcd's latency histograms, summed over the mesh's etcds. */
export type Histogram = Map<number, number>;
/**
 * etcd's latency histograms over the etcds 1..K, summed: WAL fsync, backend (boltdb) commit, and with
 * ETCD_METRICS=extensive in the etcds' environment the server-side handling time of a Put (the load generator's
 * writes) and of a Txn (kvstoremesh's copies), from the request's arrival to its answer.
 */
export async function etcdHistograms(K: number): Promise<Record<'walFsync' | 'backendCommit' | 'put' | 'txn', Histogram>> {
  const h = { walFsync: new Map(), backendCommit: new Map(), put: new Map(), txn: new Map() } as Record<'walFsync' | 'backendCommit' | 'put' | 'txn', Histogram>;
  const add = (into: Histogram, text: string, series: string) => {
    for (const m of text.matchAll(new RegExp(`^${series}le="([^"]+)"\\} (\\S+)$`, 'gm'))) {
      const le = m[1] === '+Inf' ? Infinity : Number(m[1]);
      into.set(le, (into.get(le) ?? 0) + Number(m[2]));
    }
  };
  const grpc = (method: string) => `grpc_server_handling_seconds_bucket\\{grpc_method="${method}",grpc_service="etcdserverpb.KV",grpc_type="unary",`;
  for (let k = 1; k <= K; k++) {
    const text = await (await fetch(`${etcdUrl(k)}/metrics`)).text();
    add(h.walFsync, text, 'etcd_disk_wal_fsync_duration_seconds_bucket\\{');
    add(h.backendCommit, text, 'etcd_disk_backend_commit_duration_seconds_bucket\\{');
    add(h.put, text, grpc('Put'));
    add(h.txn, text, grpc('Txn'));
  }
  return h;
}
/** The quantile q of what was observed between two readings, as the upper bound (ms) of its bucket, and the count. */
export function histogramQuantile(before: Histogram, after: Histogram, q: number): { ms: number; n: number } {
  const les = [...after.keys()].sort((a, b) => a - b);
  const n = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  for (const le of les) if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= q * n) return { ms: le * 1000, n };
  return { ms: NaN, n };
}

export interface RestFigures {
  seconds: number;
  /** Cores used over the window (CPU seconds / wall seconds). */
  cores: { etcds: number; kvstoremesh: number; total: number };
  /** Per second over the window, mesh-wide and per etcd (mean; max over etcds). */
  commitsPerS: { mesh: number; perEtcd: number; maxEtcd: number };
  writesPerS: { mesh: number; perEtcd: number; maxEtcd: number };
  /** Per process of each kind over the window (millicores mean and max, the main thread's, wakes/s). */
  perProcess: { etcd: PerProcess; kvstoremesh: PerProcess };
}

/** Measures the mesh over `seconds` of whatever it does meanwhile (at rest: nothing is being written to it). */
export async function measureRest(m: Mesh, seconds: number): Promise<RestFigures> {
  const tick = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const ePids = m.etcds.map((e) => e.proc.pid!);
  const mPids = m.meshes.map((p) => p.pid!);
  const ks = Array.from({ length: m.K }, (_, i) => i + 1);
  const use = () => ({ e: ePids.map((p) => procUse(p, tick)), m: mPids.map((p) => procUse(p, tick)) });
  const total = (xs: Array<{ cpu: number }>) => xs.reduce((a, x) => a + x.cpu, 0);
  // one window for both: the CPU read and the clock bracket the etcds' /metrics reads, which take seconds on a
  // loaded machine (a window opened after them measured the churn's writes but a CPU span after the churn)
  const u0 = use();
  const t0 = Date.now();
  const c0 = await Promise.all(ks.map(etcdCounters));
  await sleep(seconds * 1000);
  const c1 = await Promise.all(ks.map(etcdCounters));
  const u1 = use();
  const s = (Date.now() - t0) / 1000;
  const rate = (f: (c: { commits: number; puts: number; deletes: number }) => number) => {
    const per = c1.map((c, i) => (f(c) - f(c0[i]!)) / s);
    const mesh = per.reduce((a, b) => a + b, 0);
    return { mesh, perEtcd: mesh / m.K, maxEtcd: Math.max(...per) };
  };
  const cores = { etcds: (total(u1.e) - total(u0.e)) / s, kvstoremesh: (total(u1.m) - total(u0.m)) / s, total: 0 };
  cores.total = cores.etcds + cores.kvstoremesh;
  const procs = { etcd: perProcess(u0.e, u1.e, s), kvstoremesh: perProcess(u0.m, u1.m, s) };
  return { seconds: s, cores, commitsPerS: rate((c) => c.commits), writesPerS: rate((c) => c.puts + c.deletes), perProcess: procs };
}

export const restLine = (r: RestFigures): string =>
  `writes/s mesh-wide ${r.writesPerS.mesh.toFixed(1)}, per etcd ${r.writesPerS.perEtcd.toFixed(2)} (max ${r.writesPerS.maxEtcd.toFixed(2)}); ` +
  `commits/s mesh-wide ${r.commitsPerS.mesh.toFixed(1)}, per etcd ${r.commitsPerS.perEtcd.toFixed(2)}; ` +
  `CPU ${r.cores.total.toFixed(3)} cores (etcds ${r.cores.etcds.toFixed(3)}, kvstoremesh ${r.cores.kvstoremesh.toFixed(3)}) over ${r.seconds.toFixed(0)} s; ` +
  `per etcd ${procLine(r.perProcess.etcd)}; per kvstoremesh ${procLine(r.perProcess.kvstoremesh)}, its JavaScript thread ${r.perProcess.kvstoremesh.mainMcores.toFixed(2)} mcores`;
const procLine = (p: PerProcess): string =>
  `${p.mcores.toFixed(2)} mcores (max ${p.maxMcores.toFixed(2)}), ${p.wakesPerS.toFixed(1)} wakes/s, waiting for a core ${p.runqMsPerS.toFixed(1)} ms/s (main thread ${p.mainRunqMsPerS.toFixed(1)})`;
