/**
 * Control-plane benchmark: K clusters (a real etcd and a real kvstoremesh
 * process each), N synthetic nodes and N*E endpoints per cluster, and one real
 * agent (TUN, WireGuard device) in cluster 1. After the initial sync, node and
 * endpoint records in the other clusters are rewritten at a steady rate and we
 * time each write until the agent has programmed it into its data path (the
 * native peer table is updated synchronously before the agent's
 * 'peers-programmed' event).
 *
 * Reports propagation p50/p99, the agent's heap per remote endpoint, initial
 * sync time, and connections to remote etcds: measured for KVStoreMesh, and
 * computed for the older design where every agent reads every remote etcd.
 *
 * Everything runs inside a private network namespace with only loopback.
 *   CP_CLUSTERS (16) CP_NODES (1000) CP_ENDPOINTS (10 per node)
 *   CP_CHURN_RATE (100 writes/s) CP_CHURN_SECONDS (20)
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Etcd3 } from 'etcd3';
import { Agent } from '../src/agent/agent.js';
import { connectClusters, enableCluster, pinFor } from '../src/controlplane/clustermesh.js';
import { endpointName, pinnedKey, remoteKey, stateKey } from '../src/controlplane/keys.js';
import { nodeCodec } from '../src/controlplane/records/index.js';
import { connectEtcd } from '../src/controlplane/kvstore.js';
import type { NodeRecord } from '../src/controlplane/types.js';
import { silentLogger } from '../src/log.js';
import { startEtcd, type EtcdProcess } from '../src/testbed/etcd.js';
import { ROOT } from '../src/testbed/netns.js';

const K = Number(process.env.CP_CLUSTERS ?? 16);
const N = Number(process.env.CP_NODES ?? 1000);
const E = Number(process.env.CP_ENDPOINTS ?? 10);
const RATE = Number(process.env.CP_CHURN_RATE ?? 100);
const CHURN_S = Number(process.env.CP_CHURN_SECONDS ?? 20);
const IN_NETNS = 'WIREMESH_BENCH_NETNS';
const now = () => performance.timeOrigin + performance.now();
const log = (m: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`);

function reexecInNetns(): void {
  const ns = `wmcpb${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    const r = spawn('ip', ['netns', 'exec', ns, process.execPath, '--expose-gc', '--max-old-space-size=8192', process.argv[1]!], {
      stdio: 'inherit',
      env: { ...process.env, [IN_NETNS]: ns },
    });
    r.once('exit', (code) => {
      // kill what is left inside, wait until it is gone, then remove the namespace
      for (let i = 0; i < 50; i++) {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean);
        if (pids.length === 0) break;
        for (const pid of pids) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        execFileSync('sleep', ['0.1']);
      }
      try {
        execFileSync('ip', ['netns', 'del', ns]);
      } catch (err) {
        process.stderr.write(`could not remove namespace ${ns}: ${(err as Error).message}\n`);
      }
      process.exit(code ?? 1);
    });
  } catch (err) {
    execFileSync('ip', ['netns', 'del', ns]);
    throw err;
  }
}

const clusterName = (k: number) => `c${k}`;
const etcdPort = (k: number) => 24000 + 10 * k;
/** Synthetic node n of cluster k owns the /24 number (k-1)*N+n of 100.64.0.0/10. */
function podCIDR(k: number, n: number): string {
  const i = (k - 1) * N + n;
  return `100.${64 + (i >> 8)}.${i & 255}.0/24`;
}
function underlay(k: number, n: number): string {
  const i = (k - 1) * N + n + 1;
  return `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

/** churnAt travels in bootId (a string field the node codec keeps; unknown fields are dropped on decode). */
function nodeRecord(k: number, n: number, extra: Partial<NodeRecord> = {}): NodeRecord {
  return {
    cluster: clusterName(k),
    clusterId: k,
    name: `n${n}`,
    addresses: [underlay(k, n)],
    port: 51820,
    publicKey: randomBytes(32).toString('base64'),
    podCIDRs: [podCIDR(k, n)],
    bootId: '1',
    ...extra,
  };
}

async function putBatch(c: Etcd3, kvs: Array<[string, string]>): Promise<void> {
  for (let i = 0; i < kvs.length; i += 128) {
    const chunk = kvs.slice(i, i + 128);
    await c.if(chunk[0]![0], 'Version', '>', -1).then(...chunk.map(([k, v]) => c.put(k).value(v))).commit();
  }
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

async function main(): Promise<void> {
  if (!process.env[IN_NETNS]) return reexecInNetns();
  const dir = mkdtempSync(join(tmpdir(), 'wmcpb-'));
  const etcds: EtcdProcess[] = [];
  const procs: ChildProcess[] = [];
  const clients: Etcd3[] = [];
  let agent: Agent | undefined;
  try {
    log(`starting ${K} etcd + kvstoremesh pairs`);
    for (let k = 1; k <= K; k++) {
      etcds.push(await startEtcd({ name: clusterName(k), dataDir: join(dir, `etcd${k}`), host: '127.0.0.1', clientPort: etcdPort(k), peerPort: etcdPort(k) + 1, logFile: join(dir, `etcd${k}.log`) }));
      const access = { endpoints: [`http://127.0.0.1:${etcdPort(k)}`] };
      await enableCluster(access, { name: clusterName(k), id: k, podCIDRs: [`100.64.0.0/10`] });
      clients.push(connectEtcd(access));
    }
    // every pair: the mesh (pod CIDR overlap is allowed here: synthetic per-node CIDRs are disjoint)
    for (let a = 1; a <= K; a++)
      for (let b = a + 1; b <= K; b++)
        await connectClusters({ endpoints: [`http://127.0.0.1:${etcdPort(a)}`] }, { endpoints: [`http://127.0.0.1:${etcdPort(b)}`] }).catch(async () => {
          // preflight refuses the shared 100.64.0.0/10 config CIDR: write the pins and remote entries directly
          for (const [x, y] of [[a, b], [b, a]] as Array<[number, number]>) {
            await clients[x - 1]!.put(pinnedKey(clusterName(y))).value(JSON.stringify(pinFor({ name: clusterName(y), id: y, podCIDRs: ['100.64.0.0/10'] }, false)));
            await clients[x - 1]!.put(remoteKey(clusterName(y))).value(JSON.stringify({ name: clusterName(y), endpoints: [`http://127.0.0.1:${etcdPort(y)}`] }));
          }
        });
    for (let k = 1; k <= K; k++) {
      const p = spawn(process.execPath, [join(ROOT, 'bin', 'wiremesh.js'), 'kvstoremesh', '--cluster', clusterName(k), '--etcd', `http://127.0.0.1:${etcdPort(k)}`], { stdio: ['ignore', 'ignore', 'ignore'], env: { ...process.env, LOG_LEVEL: 'warn' } });
      procs.push(p);
    }

    log('starting the measuring agent in c1');
    mkdirSync(join(dir, 'agent'), { recursive: true });
    agent = new Agent(
      {
        cluster: { name: 'c1', id: 1 },
        node: { name: 'bench', addresses: ['198.19.255.254'], podCIDRs: ['100.127.255.0/24'] },
        wireguard: { interface: 'wmb0', port: 51820, privateKeyFile: join(dir, 'agent', 'key'), mtu: 1412 },
        etcd: { endpoints: [`http://127.0.0.1:${etcdPort(1)}`] },
        api: { socket: join(dir, 'agent.sock') },
        leaseTTL: 60,
        policy: { enabled: true, defaultLocalCluster: true, proxyPort: 15001, proxyWorkers: 1, conntrack: { maxEntries: 500_000, perEndpoint: 65_536, natPerEndpoint: 65_536 }, hostFirewall: true },
        services: { maglevTableSize: 16381, dns: { enabled: false, address: '169.254.1.1', port: 53 } },
      },
      silentLogger,
    );
    await agent.start();
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const heap0 = process.memoryUsage().heapUsed;

    log(`loading ${K} x ${N} nodes and ${K} x ${N * E} endpoints`);
    const t0 = now();
    await Promise.all(
      clients.map(async (c, i) => {
        const k = i + 1;
        const kvs: Array<[string, string]> = [];
        for (let n = 0; n < N; n++) {
          kvs.push([stateKey('nodes', clusterName(k), `n${n}`), JSON.stringify(nodeRecord(k, n))]);
          const base = podCIDR(k, n).split('.').slice(0, 3).join('.');
          for (let e = 0; e < E; e++) {
            const ip = `${base}.${10 + e}`;
            kvs.push([stateKey('ip', clusterName(k), endpointName(`n${n}`, ip)), JSON.stringify({ ip, cluster: clusterName(k), node: `n${n}`, namespace: 'bench', name: `p${n}-${e}`, labels: { app: `a${e}` } })]);
          }
        }
        await putBatch(c, kvs);
      }),
    );
    const tLoaded = now();
    log(`written in ${((tLoaded - t0) / 1000).toFixed(1)} s; waiting for the agent to program ${K * N} peers`);
    const peerCount = () => (agent!.status() as { peers: unknown[] }).peers.length;
    const remoteEndpoints = () => agent!.endpoints.size;
    for (let last = 0; peerCount() < K * N || remoteEndpoints() < K * N * E; ) {
      await new Promise((r) => setTimeout(r, 1000));
      if (now() - last > 10_000) {
        last = now();
        log(`  agent: ${peerCount()} peers, ${remoteEndpoints()} endpoints`);
      }
      if (now() - t0 > 30 * 60_000) throw new Error('initial sync did not finish within 30 minutes');
    }
    const tSynced = now();
    gc?.();
    const heap1 = process.memoryUsage().heapUsed;
    log(`synced ${((tSynced - t0) / 1000).toFixed(1)} s after the first write`);

    // connections from each kvstoremesh process to etcds other than its own cluster's
    const ss = execFileSync('ss', ['-tnpH', 'state', 'established'], { encoding: 'utf8' });
    const ownPort = new Map(procs.map((p, i) => [p.pid!, etcdPort(i + 1)]));
    const ports = new Set(Array.from({ length: K }, (_, i) => etcdPort(i + 1)));
    let remoteConnsMeasured = 0;
    let agentConns = 0;
    for (const line of ss.split('\n')) {
      const cols = line.trim().split(/\s+/);
      const peerPort = Number(cols[3]?.split(':').pop());
      const pid = Number(/pid=(\d+)/.exec(line)?.[1]);
      if (!ports.has(peerPort)) continue;
      if (pid === process.pid) agentConns++;
      else if (ownPort.has(pid) && ownPort.get(pid) !== peerPort) remoteConnsMeasured++;
    }

    log(`churn: ${RATE} writes/s for ${CHURN_S} s across clusters c2..c${K} (nodes and endpoints)`);
    const pending = new Map<string, number>();
    const delays: number[] = [];
    // the kvstoremesh hop alone: remote write -> its copy appears in c1's etcd
    const replDelays: number[] = [];
    const cacheWatch = await clients[0]!.watch().prefix('wiremesh/cache/nodes/v1/').create();
    cacheWatch.on('put', (kv) => {
      const t = now();
      try {
        const r = nodeCodec.decode(kv.key.toString(), kv.value.toString());
        const churnAt = Number(r.bootId);
        if (churnAt && pending.get(`${r.cluster}/${r.name}`) === churnAt) replDelays.push(t - churnAt);
      } catch {
        /* not ours */
      }
    });
    agent.on('peers-programmed', (recs: NodeRecord[]) => {
      const t = now();
      for (const r of recs) if (Number(r.bootId) && pending.get(`${r.cluster}/${r.name}`) === Number(r.bootId)) delays.push(t - Number(r.bootId));
    });
    const end = now() + CHURN_S * 1000;
    let writes = 0;
    while (now() < end) {
      const tick = now();
      for (let i = 0; i < RATE / 10; i++) {
        const k = 2 + Math.floor(Math.random() * (K - 1));
        const n = Math.floor(Math.random() * N);
        if (writes % 2 === 0) {
          const churnAt = now();
          pending.set(`${clusterName(k)}/n${n}`, churnAt);
          // etcd3 builders are lazy: exec() sends the request
          void clients[k - 1]!.put(stateKey('nodes', clusterName(k), `n${n}`)).value(JSON.stringify(nodeRecord(k, n, { bootId: String(churnAt) }))).exec();
        } else {
          const base = podCIDR(k, n).split('.').slice(0, 3).join('.');
          const ip = `${base}.${10 + Math.floor(Math.random() * E)}`;
          void clients[k - 1]!.put(stateKey('ip', clusterName(k), endpointName(`n${n}`, ip))).value(JSON.stringify({ ip, cluster: clusterName(k), node: `n${n}`, namespace: 'bench', name: `p${n}`, labels: { app: 'x', rev: String(writes) } })).exec();
        }
        writes++;
      }
      await new Promise((r) => setTimeout(r, Math.max(0, 100 - (now() - tick))));
    }
    await new Promise((r) => setTimeout(r, 5000));
    await cacheWatch.cancel();
    const nodeWrites = Math.ceil(writes / 2);

    const remoteEps = K * N * E - N * E;
    const report = {
      date: new Date().toISOString(),
      clusters: K,
      nodesPerCluster: N,
      endpointsPerNode: E,
      initialSyncSeconds: (tSynced - t0) / 1000,
      churn: { writesPerSecond: RATE, seconds: CHURN_S, nodeWrites, measured: delays.length },
      propagationMs: delays.length ? { p50: quantile(delays, 0.5), p99: quantile(delays, 0.99), max: Math.max(...delays) } : null,
      kvstoremeshHopMs: replDelays.length ? { p50: quantile(replDelays, 0.5), p99: quantile(replDelays, 0.99) } : null,
      agentHeapBytesPerRemoteEndpoint: (heap1 - heap0) / remoteEps,
      agentHeapMiB: heap1 / 2 ** 20,
      connectionsToRemoteEtcds: {
        kvstoremeshMeasured: remoteConnsMeasured,
        measuringAgentToItsOwnEtcd: agentConns,
        kvstoremeshExpected: K * (K - 1),
        agentsReadingRemoteEtcdsDirectly: K * N * (K - 1),
      },
    };
    console.log(`\ncontrol plane: ${K} clusters x ${N} nodes x ${E} endpoints/node (${K * N} nodes, ${K * N * E} endpoints)`);
    console.log(`initial sync into one agent (all clusters): ${report.initialSyncSeconds.toFixed(1)} s`);
    if (report.propagationMs)
      console.log(`propagation, write in a remote cluster's etcd -> agent data path: p50 ${report.propagationMs.p50.toFixed(1)} ms, p99 ${report.propagationMs.p99.toFixed(1)} ms (${delays.length} of ${nodeWrites} node writes; later writes to the same node supersede earlier ones)`);
    if (report.kvstoremeshHopMs)
      console.log(`  of which remote etcd -> kvstoremesh -> local etcd: p50 ${report.kvstoremeshHopMs.p50.toFixed(1)} ms, p99 ${report.kvstoremeshHopMs.p99.toFixed(1)} ms`);
    console.log(`agent heap: ${report.agentHeapMiB.toFixed(0)} MiB, ${report.agentHeapBytesPerRemoteEndpoint.toFixed(0)} B per remote endpoint (incl. its share of nodes and peers)`);
    console.log(`connections to remote etcds: KVStoreMesh ${remoteConnsMeasured} measured (${K * (K - 1)} = K(K-1) expected); agents reading remote etcds directly would need ${report.connectionsToRemoteEtcds.agentsReadingRemoteEtcdsDirectly} (= K*N*(K-1))`);
    mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench', 'results', `controlplane-${K}x${N}x${E}.json`), JSON.stringify(report, null, 2) + '\n');
  } finally {
    await agent?.stop().catch(() => undefined);
    for (const c of clients) c.close();
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(etcds.map((e) => e.stop()));
    rmSync(dir, { recursive: true, force: true });
    // The parent removes the namespace too, but it may have been killed with its
    // terminal; removing the name from inside is allowed (the namespace itself
    // lives until this process exits).
    try {
      execFileSync('ip', ['netns', 'del', process.env[IN_NETNS]!], { stdio: 'ignore' });
    } catch {
      /* the parent got there first */
    }
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
