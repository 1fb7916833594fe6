/**
 * bench:controlplane's load generator, in its own process (child_process.fork
 * from bench/controlplane.ts) so that its writes do not share the measured
 * agent's event loop (issue 16: sharing it, 16 x 1000 x 10 reached ~12 of the
 * nominal 100 writes/s).
 *
 * Messages from the parent (LoadRequest), one answer each (LoadResult):
 *   load   writes N nodes and N*E endpoints into each of the given clusters' etcds, in transactions of 128
 *   connect  opens the churn's clients and reads one key through each (before the parent's windows open)
 *   churn  rewrites node and endpoint records of the given clusters at `rate` writes/s for `seconds`; a node
 *          write carries its send time (ms since the epoch) in bootId, which the agent's 'peers-programmed'
 *          event hands back to the parent: propagation = programmed time - send time (one machine, one clock)
 */
import { randomBytes } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Etcd3 } from 'etcd3';
import { endpointName, stateKey } from '../src/controlplane/keys.js';
import { connectEtcd } from '../src/controlplane/kvstore.js';
import type { NodeRecord } from '../src/controlplane/types.js';

export interface Shape {
  /** Nodes per cluster and endpoints per node. */
  nodes: number;
  endpoints: number;
}
export type LoadRequest =
  | ({ op: 'load'; clusters: Array<{ k: number; url: string }> } & Shape)
  | { op: 'connect'; clusters: Array<{ k: number; url: string }> }
  | ({ op: 'churn'; clusters: Array<{ k: number; url: string }>; rate: number; seconds: number } & Shape);
export interface LoadResult {
  op: LoadRequest['op'];
  /** Writes acknowledged by etcd, and over how long (s): achieved rate = writes / seconds. */
  writes: number;
  seconds: number;
  failed: number;
  /** churn: each acknowledged write's latency (send -> etcd's answer), ms; and this process's CPU over the churn (cores). */
  ackMs?: { p50: number; p99: number };
  cores?: number;
  /** churn: when etcd's answer to each node write came back (ms since the epoch), by `cluster/node/bootId`. */
  nodeAcks?: Array<[string, number]>;
  /** send -> answer per second of the churn (by send time): whether a slow start or the whole window. */
  ackBySecond?: Array<{ p50: number; p99: number }>;
  /** churn: when its window started (ms since the epoch): second 0 of ackBySecond, and of the parent's propagation by second. */
  t0?: number;
}

/** The element at rank floor(q * n) of `sorted` (ascending), NaN when empty: every quantile bench:controlplane prints. */
export const rankQuantile = (sorted: readonly number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

/**
 * p50 and p99 (ms) of latency samples by whole second since `t0` (ms since the epoch) of each sample's `atMs`
 * (its send time): index i is second i of the window; a second without samples reads NaN (null in the JSON),
 * one before t0 counts in second 0. The quantile q is the sorted samples' element at rank floor(q * n), as
 * bench:controlplane's whole-window `quantile`: with the ~50 node writes a second of the default churn, p99 is
 * that second's slowest. The load generator's send -> answer and the parent's propagation are read by second alike.
 */
export function quantilesBySecond(samples: ReadonlyArray<readonly [atMs: number, ms: number]>, t0: number): Array<{ p50: number; p99: number }> {
  const by: number[][] = [];
  for (const [at, ms] of samples) (by[Math.max(0, Math.floor((at - t0) / 1000))] ??= []).push(ms);
  return Array.from(by, (xs = []) => {
    xs.sort((a, b) => a - b);
    return { p50: rankQuantile(xs, 0.5), p99: rankQuantile(xs, 0.99) };
  });
}

export const clusterName = (k: number): string => `c${k}`;
/** 100.64.0.0/10 holds 2^14 /24s; the last, 100.127.255.0/24, is the measuring agent's (c1). */
const POD_SLASH24S = (1 << 14) - 1;
/** Each cluster's own /21 of 198.18.0.0/16 (underlayCIDRs): 32 of them, 2046 host addresses each after the first. */
const MAX_CLUSTERS = 32;
const MAX_NODES = 2046;
/**
 * Refuses a shape whose synthetic addresses would not fit (clusters x nodes > 16,383 pod /24s, clusters > 32,
 * nodes > 2046): past them pod CIDRs run into the agent's /24 (c17 of 1000 nodes would get 100.127.0.0/16,
 * holding c1's 100.127.255.0/24: contested, every record in it silently refused) or underlay addresses wrap.
 * @throws Error naming the bound exceeded.
 */
export function checkShape(clusters: number, nodes: number): void {
  if (!Number.isInteger(clusters) || clusters < 1 || clusters > MAX_CLUSTERS) throw new Error(`--clusters must be an integer 1..${MAX_CLUSTERS} (each cluster's nodes in its own /21 of 198.18.0.0/16), got ${clusters}`);
  if (!Number.isInteger(nodes) || nodes > MAX_NODES) throw new Error(`--nodes must be an integer ≤ ${MAX_NODES} (a /21 per cluster), got ${nodes}`);
  if (clusters * nodes > POD_SLASH24S)
    throw new Error(`${clusters} clusters x ${nodes} nodes need ${clusters * nodes} pod /24s; 100.64.0.0/10 holds ${POD_SLASH24S} besides the agent's (at ${nodes} nodes, at most ${Math.floor(POD_SLASH24S / Math.max(1, nodes))} clusters)`);
}
/** Synthetic node n of cluster k owns the /24 number (k-1)*nodes+n of 100.64.0.0/10 (checkShape: they fit). */
export function podCIDR(s: Shape, k: number, n: number): string {
  const i = (k - 1) * s.nodes + n;
  return `100.${64 + (i >> 8)}.${i & 255}.0/24`;
}
/**
 * Cluster k's pod CIDRs: the aligned blocks that cover exactly its nodes' /24s (podCIDR above), plus the measuring
 * agent's 100.127.255.0/24 in c1. Each cluster's own: kvstoremesh refuses a record inside a range that two
 * clusters' pins hold (contested: nobody's), which a shared 100.64.0.0/10 for all was.
 */
export function clusterPodCIDRs(s: Pick<Shape, 'nodes'>, k: number): string[] {
  const out: string[] = [];
  for (let i = (k - 1) * s.nodes, end = k * s.nodes; i < end; ) {
    let size = 1;
    while (i % (size * 2) === 0 && i + size * 2 <= end) size *= 2;
    out.push(`100.${64 + (i >> 8)}.${i & 255}.0/${24 - Math.log2(size)}`);
    i += size;
  }
  return k === 1 ? [...out, '100.127.255.0/24'] : out;
}
/** Cluster k's nodes live in its own /21 of 198.18.0.0/16 (≤ 2046 nodes, k ≤ 32; pod CIDRs bound clusters x nodes tighter: checkShape); c1 also holds the measuring agent's 198.19.255.254. */
export function underlayCIDRs(k: number): string[] {
  const b = (k - 1) * 8;
  return [`198.18.${b}.0/21`, ...(k === 1 ? ['198.19.255.0/24'] : [])];
}
function underlay(_s: Shape, k: number, n: number): string {
  const i = (k - 1) * 2048 + n + 1;
  return `198.18.${(i >> 8) & 255}.${i & 255}`;
}
function nodeRecord(s: Shape, k: number, n: number, bootId = '1'): NodeRecord {
  return { cluster: clusterName(k), clusterId: k, name: `n${n}`, addresses: [underlay(s, k, n)], port: 51820, publicKey: randomBytes(32).toString('base64'), podCIDRs: [podCIDR(s, k, n)], bootId };
}
/** What Kubernetes draws a generated name's random parts from (no vowels or y, no 0, 1 or 3). */
const SAFE = 'bcdfghjklmnpqrstvwxz2456789';
/** `len` characters of SAFE from the number `x` (deterministic: one run's writes name one pod alike). */
function safeChars(x: number, len: number): string {
  let out = '';
  for (let i = 0; i < len; i++, x = Math.floor(x / SAFE.length)) out += SAFE[x % SAFE.length];
  return out;
}
/**
 * Endpoint e of node n in cluster k: a pod of Deployment `a<e>` (its label), named as Kubernetes names such a pod:
 * the Deployment, its ReplicaSet's pod-template hash and 5 random characters (`a3-6b8f9d7c5-x2kjz`), so its name
 * costs an agent what a real one does (before s29 the names were `p<n>-<e>`: shorter than a Deployment's, and with
 * a stem per node). The suffix's number exceeds 2^53 and is rounded: deterministic, but suffixes may repeat across
 * pods (harmless: keys are by address).
 */
function endpoint(s: Shape, k: number, n: number, e: number, rev = ''): [string, string] {
  const ip = `${podCIDR(s, k, n).split('.').slice(0, 3).join('.')}.${10 + e}`;
  const labels = rev ? { app: `a${e}`, rev } : { app: `a${e}` };
  const name = `a${e}-${safeChars(2_654_435_761 * (e + 1), 9)}-${safeChars((((k * 1_000_003 + n) * 131 + e) * 2_246_822_519) % 2 ** 31, 5)}`;
  return [stateKey('ip', clusterName(k), endpointName(`n${n}`, ip)), JSON.stringify({ ip, cluster: clusterName(k), node: `n${n}`, namespace: 'bench', name, labels })];
}

async function putBatch(c: Etcd3, kvs: Array<[string, string]>): Promise<void> {
  for (let i = 0; i < kvs.length; i += 128) {
    const chunk = kvs.slice(i, i + 128);
    await c.if(chunk[0]![0], 'Version', '>', -1).then(...chunk.map(([k, v]) => c.put(k).value(v))).commit();
  }
}

async function load(req: Extract<LoadRequest, { op: 'load' }>): Promise<LoadResult> {
  const t0 = Date.now();
  let writes = 0;
  await Promise.all(
    req.clusters.map(async ({ k, url }) => {
      const c = connectEtcd({ endpoints: [url] });
      const kvs: Array<[string, string]> = [];
      for (let n = 0; n < req.nodes; n++) {
        kvs.push([stateKey('nodes', clusterName(k), `n${n}`), JSON.stringify(nodeRecord(req, k, n))]);
        for (let e = 0; e < req.endpoints; e++) kvs.push(endpoint(req, k, n, e));
      }
      await putBatch(c, kvs);
      writes += kvs.length;
      c.close();
    }),
  );
  return { op: 'load', writes, seconds: (Date.now() - t0) / 1000, failed: 0 };
}

/** The churn's clients, opened by a `connect` request (or by the churn itself without one). */
let opened: Array<{ k: number; c: Etcd3 }> | undefined;
const openClients = (clusters: Array<{ k: number; url: string }>) => clusters.map(({ k, url }) => ({ k, c: connectEtcd({ endpoints: [url] }) }));
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Opens the churn's clients and reads one key through each (a client connects on its first request), so that the
 * parent opens its measuring windows after the connections exist. A read that fails or takes over 10 s counts in
 * `failed`; the churn still runs on that client (its writes count their own failures).
 */
async function connect(req: Extract<LoadRequest, { op: 'connect' }>): Promise<LoadResult> {
  const t0 = Date.now();
  opened = openClients(req.clusters);
  const reads = await Promise.allSettled(
    opened.map(({ k, c }) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), CONNECT_TIMEOUT_MS)));
      return Promise.race([c.get(stateKey('nodes', clusterName(k), 'n0')).string(), late]).finally(() => clearTimeout(timer));
    }),
  );
  return { op: 'connect', writes: 0, seconds: (Date.now() - t0) / 1000, failed: reads.filter((r) => r.status === 'rejected').length };
}

/** Paced in 10 ms slots: each slot sends what the nominal rate owes by then, so a late slot catches up. */
async function churn(req: Extract<LoadRequest, { op: 'churn' }>): Promise<LoadResult> {
  // the clients `connect` opened when they are for these clusters; otherwise (none, or others: closed) its own
  const same = opened?.length === req.clusters.length && opened.every(({ k }, i) => k === req.clusters[i]!.k);
  if (!same) for (const { c } of opened ?? []) c.close();
  const clients = same ? opened! : openClients(req.clusters);
  opened = undefined;
  const inflight = new Set<Promise<unknown>>();
  let sent = 0;
  let acked = 0;
  let failed = 0;
  const sends: Array<[number, number]> = [];
  const nodeAcks: Array<[string, number]> = [];
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  const end = t0 + req.seconds * 1000;
  while (Date.now() < end) {
    const owed = Math.floor(((Date.now() - t0) / 1000) * req.rate);
    for (; sent < owed; sent++) {
      const { k, c } = clients[Math.floor(Math.random() * clients.length)]!;
      const n = Math.floor(Math.random() * req.nodes);
      const ts = Date.now();
      const node = sent % 2 === 0 ? `${clusterName(k)}/n${n}/${ts}` : undefined;
      const [key, value] = node ? [stateKey('nodes', clusterName(k), `n${n}`), JSON.stringify(nodeRecord(req, k, n, String(ts)))] : endpoint(req, k, n, Math.floor(Math.random() * req.endpoints), String(sent));
      const done = () => {
        const t = Date.now();
        acked++;
        sends.push([ts, t - ts]);
        if (node) nodeAcks.push([node, t]);
      };
      const p: Promise<unknown> = c.put(key).value(value).exec().then(done, () => failed++).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  await Promise.all(inflight);
  const seconds = (Date.now() - t0) / 1000; // until the last answer: a backlog lowers the achieved rate
  const cpu = process.cpuUsage(cpu0);
  const acks = sends.map(([, ms]) => ms).sort((a, b) => a - b);
  const q = (x: number) => rankQuantile(acks, x);
  const ackBySecond = quantilesBySecond(sends, t0);
  for (const { c } of clients) c.close();
  return { op: 'churn', writes: acked, seconds, failed, ackMs: { p50: q(0.5), p99: q(0.99) }, cores: (cpu.user + cpu.system) / 1e6 / seconds, nodeAcks, ackBySecond, t0 };
}

// only as the forked load generator: the benchmark imports this module for its helpers, and inside its namespace it
// has an IPC channel of its own (to its parent outside, cp-sched.ts), whose messages are not load requests
if (process.send && process.argv[1] && resolvePath(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.on('message', (req: LoadRequest) => {
    void (req.op === 'load' ? load(req) : req.op === 'connect' ? connect(req) : churn(req)).then(
      (r) => process.send!(r),
      (err: Error) => process.send!({ op: req.op, writes: 0, seconds: 0, failed: 1, error: err.message }),
    );
  });
}
