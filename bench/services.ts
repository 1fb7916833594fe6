/**
 * Services recompute (part of npm run bench:churn): what one endpoint change
 * and the once-a-second "nearest" round cost the agent at C clusters x N
 * nodes x E endpoints (default 16 x 1000 x 10 = 160k endpoints) and S
 * global services (default 100, every 10th with affinity nearest, every 10th
 * local), each selecting ~1/S of the endpoints of every cluster.
 *
 *   incremental: ServiceDatapath.upsertEndpoint + compute() (the agent today)
 *   full:        FullRecompute (bench/services-reference.ts: the agent before
 *                the index, which ran on every change and every second), same run, same inputs
 *
 * Tables go to a FakeDevice that only counts them: this is the agent's
 * JavaScript side; the native Maglev build per changed port is bench:maglev's. Times in ms, best/median of
 * rounds on a shared 2-vCPU machine: compare within a run.
 */
import type { EndpointRecord } from '../src/controlplane/types.js';
import { EndpointRecordsMap } from '../src/controlplane/endpointrecords.js';
import { silentLogger } from '../src/log.js';
import { AFFINITY_ANNOTATION, GLOBAL_ANNOTATION, validateManifest } from '../src/manifests/validate.js';
import { FakeDevice } from '../src/native/fakedevice.js';
import { ServiceDatapath } from '../src/services/datapath.js';
import { serviceFromManifest, type ClusterService } from '../src/services/service.js';
import { FullRecompute } from './services-reference.js';

export interface ServicesFigures {
  endpoints: number;
  services: number;
  /** Median ms per endpoint change (label move between two services), then compute. */
  incrementalChangeMs: number;
  fullChangeMs: number;
  /** Median ms of one timer round after every node's RTT moved (incremental: nearest ports only). */
  incrementalTimerMs: number;
  /** The agent's share of one health round (a drain) when every node's RTT moved (16,000 rows). */
  healthTickMs: number;
  /** The agent's share of one health round at rest (nothing changed): the drain. */
  healthRestMs: number;
  /** Anchor: the former round on the agent's thread, peerStats() and a walk of every watched node. */
  healthFullScanMs: number;
  /** Watched nodes. */
  healthWatched: number;
  /** Initial load: every endpoint upserted, then one compute. */
  loadMs: number;
  /** Heap the services index and tables add per endpoint (with --expose-gc). */
  indexBytes: number | undefined;
}

const median = (l: number[]): number => [...l].sort((a, b) => a - b)[l.length >> 1]!;

function time(f: () => void): number {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

export function benchServices(clusters = 16, nodes = 1000, perNode = 10, services = 100, changes = 200, fullRounds = 5): ServicesFigures {
  let now = 1_000_000;
  const dev = new FakeDevice({ now: () => now });
  const peerIds = new Map<string, number>();
  for (let c = 0; c < clusters; c++)
    for (let n = 0; n < nodes; n++) {
      const id = c * nodes + n + 1;
      peerIds.set(`c${c}/n${n}`, id);
      dev.upsertPeer(id);
    }
  let rttScale = 1;
  dev.onProbe = (ids) => {
    for (const id of ids) dev.answerProbe(id, Math.round(rttScale * (500 + (id % 7) * 100)));
  };
  const peerOf = (id: string): number | undefined => (id === 'c0/n0' ? undefined : peerIds.get(id));
  const endpoints = new EndpointRecordsMap(); // the records the index reads (the agent's: the policy data path's)
  const dp = new ServiceDatapath(dev, 'bench0', 'c0', 'n0', { maglevTableSize: 16381, routeVip: (_vip, add) => add, endpoints }, silentLogger, peerOf);
  // tables are counted, not kept: the native tables live outside the JS heap (and their Maglev build is bench:maglev's)
  let upserts = 0;
  dev.serviceUpsert = () => void upserts++;
  const refDev = new FakeDevice();
  refDev.serviceUpsert = () => void upserts++;
  const ref = new FullRecompute(refDev, 'c0', 'n0', 16381);
  const records: ClusterService[] = [];
  for (let k = 0; k < services; k++) {
    const affinity = k % 10 === 0 ? 'nearest' : k % 10 === 1 ? 'local' : 'none';
    const m = validateManifest({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${k}`, namespace: `ns-${k % 10}`, annotations: { [GLOBAL_ANNOTATION]: 'true', [AFFINITY_ANNOTATION]: affinity } },
      spec: { clusterIP: `100.127.${k >> 8}.${(k & 255) + 1}`, selector: { app: `svc-${k}` }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    });
    for (let c = 0; c < clusters; c++) {
      dp.upsertRecord(`services/c${c}/ns-${k % 10}/svc-${k}`, `c${c}`, m);
      records.push(serviceFromManifest(`c${c}`, m));
    }
  }
  const endpoint = (c: number, n: number, e: number, k: number): [string, EndpointRecord] => {
    const x = n * perNode + e + 1;
    const ip = `100.${64 + c}.${x >> 8}.${x & 255}`;
    return [`state/ip/v2/c${c}/n${n}/${ip}`, { ip, cluster: `c${c}`, node: `n${n}`, namespace: `ns-${k % 10}`, name: `pod-${n}-${e}`, labels: { app: `svc-${k}`, tier: 'backend' }, identity: 300 + (k % 50) }];
  };
  for (let c = 0; c < clusters; c++)
    for (let n = 0; n < nodes; n++)
      for (let e = 0; e < perNode; e++) {
        const [key, rec] = endpoint(c, n, e, (n * perNode + e) % services);
        endpoints.set(key, rec);
      }
  // the index's own heap per endpoint (the records themselves are the agent's): node --expose-gc
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const loadMs = time(() => {
    for (const [key, rec] of endpoints) dp.upsertEndpoint(key, rec, undefined); // (the map holds them already: not the index's heap)
    dp.compute();
  });
  gc?.();
  const indexBytes = gc ? (process.memoryUsage().heapUsed - heap0) / endpoints.size : undefined;
  const input = { records, endpoints: { [Symbol.iterator]: () => endpoints.values() }, peerOf, health: dp.health };
  // every node answers: alive, with an RTT. The device's probe round runs on its TX thread in the
  // agent (here the fake's, untimed); the agent's thread only drains the changes.
  dev.probeMonitor.autoRound = false;
  const round = (): number => {
    now += 200;
    dev.probeMonitor.round();
    return time(() => dp.health.tick());
  };
  round();
  round();
  dp.compute();
  ref.compute(input);
  let x = 99;
  const rand = (n: number): number => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) % n);
  const change = (): [string, EndpointRecord, EndpointRecord] => {
    const [c, n, e] = [rand(clusters), rand(nodes), rand(perNode)];
    const key = endpoint(c, n, e, 0)[0];
    const old = endpoints.get(key)!;
    const k = Number(old.labels.app!.slice(4));
    const rec = endpoint(c, n, e, (k + 10) % services)[1]; // the same namespace, another service
    endpoints.set(key, rec);
    return [key, rec, old];
  };
  const inc: number[] = [];
  for (let i = 0; i < changes; i++) {
    const [key, rec, old] = change();
    inc.push(time(() => (dp.upsertEndpoint(key, rec, old), dp.compute())));
  }
  const full: number[] = [];
  for (let i = 0; i < fullRounds; i++) {
    change();
    full.push(time(() => ref.compute(input)));
  }
  // the 1 s round: every RTT moved (one probe round), then what the timer's compute does
  const timer: number[] = [];
  const ticks: number[] = [];
  for (let i = 0; i < 5; i++) {
    rttScale /= 2; // every RTT halves: past the 1/8 reporting threshold (a decrease: the windowed minimum shows it at once)
    ticks.push(round());
    timer.push(time(() => dp.compute()));
  }
  // at rest: nothing changes; beside it the former full scan of every watched node (the anchor)
  round();
  const rest: number[] = [];
  const scan: number[] = [];
  for (let i = 0; i < 20; i++) (rest.push(round()), scan.push(time(() => fullScan(dev, peerIds, now))));
  dp.stop();
  const health = { healthTickMs: median(ticks), healthRestMs: median(rest), healthFullScanMs: median(scan), healthWatched: peerIds.size - 1 };
  return { endpoints: endpoints.size, services, incrementalChangeMs: median(inc), fullChangeMs: median(full), incrementalTimerMs: median(timer), ...health, loadMs, indexBytes };
}

/** The former NodeHealth.tick() on the agent's thread (probe sending excluded): one object per peer, every node evaluated. */
function fullScan(dev: FakeDevice, nodes: Map<string, number>, now: number): number {
  const stats = new Map(dev.peerStats().map((s) => [s.id, s]));
  let alive = 0;
  const probe: number[] = [];
  for (const peer of nodes.values()) {
    const s = stats.get(peer);
    if ((s?.lastProbeReplyMs ?? 0) > now - 1000 && s?.probeRttUs) alive++;
    probe.push(peer);
  }
  return alive + probe.length;
}
