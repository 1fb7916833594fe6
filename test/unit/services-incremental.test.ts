// The incremental ServiceDatapath (src/services/datapath.ts, endpoints.ts) against a full recompute:
// random seeded sequences of service, endpoint, peer, node-health and RTT changes; after every step the
// tables it installed (FakeDevice) must equal those a full recompute installs from the same inputs
// (bench/services-reference.ts: every endpoint re-indexed, every port selected, as before the index).
// Twice: with the test's own map as the records the index reads, and as on the agent, the endpoints handed over
// to a PolicyDatapath whose endpoint map the index reads (agent/endpointhandoff.ts; the reference still reads the
// test's own map, the oracle). Thrice: as on the agent with a data path that throws midway through some changes
// (its flow log's forget throws once, after the map took the new record or dropped the old): the oracle then holds
// what the data path's map holds, and the installed tables must still equal the full recompute's at once.
import { describe, expect, it } from 'vitest';
import type { EndpointRecord } from '../../src/controlplane/types.js';
import { silentLogger } from '../../src/log.js';
import { AFFINITY_ANNOTATION, GLOBAL_ANNOTATION, SHARED_ANNOTATION, validateManifest } from '../../src/manifests/validate.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { ServiceDatapath } from '../../src/services/datapath.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { handOverEndpoint } from '../../src/agent/endpointhandoff.js';
import { serviceFromManifest, WEIGHT_ANNOTATION, type ClusterService } from '../../src/services/service.js';
import { FullRecompute } from '../../bench/services-reference.js';
import { EndpointRecordsMap } from '../../src/controlplane/endpointrecords.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const CLUSTERS = ['c1', 'c2', 'c3'];
const NODES = ['n1', 'n2', 'n3'];
const NAMESPACES = ['shop', 'bank'];
const SERVICES = ['web', 'api', 'db'];
const SELF = 'c1/n1';

/** The installed tables, without the ids (assigned in a different order by the two). */
function tables(dev: FakeDevice): string[] {
  return [...dev.services.values()].map((s) => `${s.m} ${s.frontends.join(',')} -> ${s.backends.map((b) => `${b.address}:${b.port}:${b.weight}`).join(',')}`).sort();
}

function run(seed: number, steps: number, mode: 'own' | 'policy' | 'throwing' = 'own'): void {
  const viaPolicy = mode !== 'own';
  const rand = rng(seed);
  const pick = <T>(l: readonly T[]): T => l[Math.floor(rand() * l.length)]!;
  let now = 1_000_000;
  const dev = new FakeDevice({ now: () => now });
  const nodeIds = CLUSTERS.flatMap((c) => NODES.map((n) => `${c}/${n}`));
  const peerIdOf = new Map(nodeIds.map((id, i) => [id, i + 1]));
  for (const p of peerIdOf.values()) dev.upsertPeer(p);
  const peers = new Set(nodeIds.filter((id) => id !== SELF && rand() < 0.8));
  const answering = new Map<number, number>(); // peer id -> RTT µs
  dev.onProbe = (ids) => {
    for (const id of ids) if (answering.has(id)) dev.answerProbe(id, answering.get(id)!);
  };
  const endpoints = new EndpointRecordsMap(); // the oracle's records (and the index's, unless viaPolicy)
  const policy = viaPolicy ? new PolicyDatapath(new FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true }, silentLogger) : undefined;
  const dp = new ServiceDatapath(dev, 'fake0', 'c1', 'n1', { maglevTableSize: 251, routeVip: (_vip, add) => add, endpoints: policy?.endpoints ?? endpoints }, silentLogger, (id) => (peers.has(id) ? peerIdOf.get(id) : undefined));
  let failNext = false; // the data path's next flow log forget() throws (mode 'throwing')
  if (policy && mode === 'throwing') {
    const flowLog = (policy as unknown as { flowLog: { forget(): void } }).flowLog;
    const forget = flowLog.forget.bind(flowLog);
    flowLog.forget = () => {
      if (!failNext) return forget();
      failNext = false;
      throw new Error('injected: forget failed');
    };
  }
  let thrown = 0;
  const endpointChanged = (key: string, rec: EndpointRecord | undefined): void => {
    const old = endpoints.get(key);
    if (rec) endpoints.set(key, rec);
    else endpoints.delete(key);
    if (!policy) {
      if (rec) dp.upsertEndpoint(key, rec, old);
      else dp.removeEndpoint(key, old);
      return;
    }
    failNext = mode === 'throwing' && rand() < 0.25;
    const fails = failNext && (rec !== undefined || old !== undefined); // (removing a key never held calls nothing)
    if (fails) expect(() => handOverEndpoint(policy, dp, key, rec, undefined)).toThrow('injected');
    else handOverEndpoint(policy, dp, key, rec, undefined); // (this data path keeps its own table: previous unread)
    failNext = false;
    if (fails) thrown++;
    // the oracle: what the data path's map holds now (the new record, or none if it threw after dropping the old)
    const held = policy.endpoints.get(key);
    if (held) endpoints.set(key, held);
    else endpoints.delete(key);
  };
  const refDev = new FakeDevice();
  const ref = new FullRecompute(refDev, 'c1', 'n1', 251);
  const records = new Map<string, ClusterService>();

  let busy = 0;
  const tick = (ms: number): void => {
    now += ms;
    dp.health.tick();
  };
  for (let step = 0; step < steps; step++) {
    const op = rand();
    if (op < 0.4) {
      // an endpoint appears, moves labels or node, or goes
      const cluster = pick(CLUSTERS);
      const pod = Math.floor(rand() * 12);
      const v6 = rand() < 0.2;
      const ip = v6 ? `fd00:${CLUSTERS.indexOf(cluster) + 1}::${pod + 1}` : `100.${65 + CLUSTERS.indexOf(cluster)}.0.${pod + 1}`;
      const key = `state/ip/v2/${cluster}/${pick(NODES)}/${ip}`;
      if (endpoints.has(key) && rand() < 0.3) {
        endpointChanged(key, undefined);
      } else {
        const labels: Record<string, string> = { app: pick(['web', 'api', 'db', 'other']) };
        if (rand() < 0.5) labels.tier = pick(['a', 'b']);
        const rec: EndpointRecord = { ip, cluster, node: key.split('/')[4]!, namespace: pick(NAMESPACES), name: `pod-${pod}`, labels, ...(rand() < 0.3 ? { identity: 300 + step } : {}) };
        endpointChanged(key, rec);
      }
    } else if (op < 0.6) {
      // a cluster's definition of a service appears, changes or goes
      const cluster = pick(CLUSTERS);
      const ns = pick(NAMESPACES);
      const name = pick(SERVICES);
      const key = `cilium/state/services/v1/${cluster}/${ns}/${name}`;
      if (records.has(key) && rand() < 0.3) {
        records.delete(key);
        dp.removeRecord(key);
      } else {
        const vips = [`100.127.${SERVICES.indexOf(name)}.${NAMESPACES.indexOf(ns) + 1}`, `fd00:127::${SERVICES.indexOf(name) + 1}`, 'None'];
        const selector = rand() < 0.85 ? { app: rand() < 0.8 ? name : pick(SERVICES), ...(rand() < 0.2 ? { tier: 'a' } : {}) } : undefined;
        const ports = rand() < 0.6 ? [{ name: 'http', port: 80, targetPort: 8000 + Math.floor(rand() * 3) }] : [{ name: 'http', port: 80 }, { name: 'grpc', port: 9090, protocol: pick(['TCP', 'UDP']) }];
        const annotations: Record<string, string> = { [GLOBAL_ANNOTATION]: rand() < 0.8 ? 'true' : 'false', [AFFINITY_ANNOTATION]: pick(['none', 'local', 'remote', 'nearest']), [WEIGHT_ANNOTATION]: String(1 + Math.floor(rand() * 3)) };
        if (rand() < 0.2) annotations[SHARED_ANNOTATION] = 'false';
        const m = validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, annotations }, spec: { clusterIP: rand() < 0.9 ? vips[0] : pick(vips), ...(selector ? { selector } : {}), ports } });
        records.set(key, serviceFromManifest(cluster, m));
        dp.upsertRecord(key, cluster, m);
      }
    } else if (op < 0.7) {
      // a node stops or starts being a peer
      const id = pick(nodeIds.filter((x) => x !== SELF));
      if (peers.has(id)) peers.delete(id);
      else peers.add(id);
      dp.peersChanged();
    } else if (op < 0.85) {
      // a node starts or stops answering probes
      const p = peerIdOf.get(pick(nodeIds))!;
      if (answering.has(p)) answering.delete(p);
      else answering.set(p, 100 + Math.floor(rand() * 5000));
      tick(pick([200, 400, 1200]));
    } else {
      // RTTs drift ("nearest" follows them on the 1 s timer)
      for (const p of answering.keys()) if (rand() < 0.5) answering.set(p, 100 + Math.floor(rand() * 5000));
      tick(200);
      tick(200);
    }
    dp.compute();
    // the same inputs: records, endpoints, peers and the liveness dp's probes measured (the reference does not re-watch)
    ref.compute({ records: records.values(), endpoints: endpoints.values(), peerOf: (id) => (peers.has(id) ? peerIdOf.get(id) : undefined), health: { get: (id) => dp.health.get(id), watch: () => {} } });
    expect(tables(dev), `seed ${seed} step ${step}`).toEqual(tables(refDev));
    if ([...dev.services.values()].some((t) => t.backends.some((b) => b.weight > 0))) busy++;
  }
  expect(busy, 'steps with a selected backend installed').toBeGreaterThan(steps / 2); // the sequence exercises real tables
  if (mode === 'throwing') expect(thrown, 'changes the data path threw in').toBeGreaterThan(10);
  if (policy) expect([...endpoints].sort()).toEqual([...policy.endpoints].sort());
  expect(dp.indexMisses).toBe(0); // every change named the right old record
  dp.stop();
  policy?.stop();
}

describe('incremental service recompute', () => {
  for (const seed of [1, 7, 42, 1234]) it(`installs what a full recompute installs after every step (seed ${seed})`, () => run(seed, 400));
  for (const seed of [3, 99]) it(`does so reading the records in the policy data path's map, as the agent hands them over (seed ${seed})`, () => run(seed, 400, 'policy'));
  for (const seed of [5, 77]) it(`does so when the data path throws midway through a change, from that change on (seed ${seed})`, () => run(seed, 400, 'throwing'));
});
