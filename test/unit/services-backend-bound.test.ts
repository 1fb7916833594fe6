// A cluster's healthy backends per service port are bounded in the port's table (src/services/tables.ts,
// services.maxBackendsPerCluster): a hostile cluster sharing a global service, writing endpoints up to its record
// budget, would otherwise put every one of them in every sharing agent's Maglev table (built, hashed and installed
// on each change) and take the table's slots by count.
//
// Oracle, from the bound's specification rather than the code: per cluster, the first `max` of its healthy backends
// in the port's order are kept, the rest are "over-limit"; affinity then works on the kept ones as
// docs/architecture.md states it (none: all selected; local/remote: the preferred tier selected and the other kept
// for established flows with weight 0, or the other selected when the preferred has none).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseAgentConfig } from '../../src/agent/config.js';
import { EndpointRecordsMap } from '../../src/controlplane/endpointrecords.js';
import type { EndpointRecord } from '../../src/controlplane/types.js';
import type { Logger } from '../../src/log.js';
import { silentLogger } from '../../src/log.js';
import { GLOBAL_ANNOTATION, validateManifest } from '../../src/manifests/validate.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { backendRows } from '../../src/native/rows.js';
import { ServiceDatapath } from '../../src/services/datapath.js';
import { PROBE_INTERVAL_MS } from '../../src/services/health.js';
import type { Affinity, Backend, ClusterService, ServicePortView } from '../../src/services/service.js';
import { PortTables } from '../../src/services/tables.js';

/** xorshift32: the sequences are the same on every run. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

/** A logger that counts its warnings. */
function countingLog(): Logger & { warnings: Array<Record<string, unknown>> } {
  const warnings: Array<Record<string, unknown>> = [];
  const log = { ...silentLogger, warnings, warn: (o: Record<string, unknown>) => void warnings.push(o) } as unknown as Logger & { warnings: typeof warnings };
  return log;
}

const CLUSTERS = ['c1', 'c2', 'c3'];

/** The port's order as docs/architecture.md states it: address text, port, then cluster/node/pod. */
const portOrder = (a: { ip: string; port: number; who: string }, b: { ip: string; port: number; who: string }) =>
  a.ip !== b.ip ? (a.ip < b.ip ? -1 : 1) : a.port !== b.port ? a.port - b.port : a.who < b.who ? -1 : a.who > b.who ? 1 : 0;
const who = (b: Backend) => `${b.cluster}/${b.node}/${b.pod}`;

afterEach(() => void vi.restoreAllMocks());

describe('a cluster\'s healthy backends per port are bounded in the table', () => {
  for (const seed of [1, 2, 3, 7, 42, 9001]) {
    it(`keeps the first max of each cluster's healthy backends, affinity on the rest as specified (seed ${seed})`, () => {
      const r = rng(seed);
      const max = 1 + r(5);
      let upserted: Buffer | undefined;
      const dev = { serviceUpsert: (_id: number, _m: number, _fe: Buffer, rows: Buffer) => void (upserted = rows), serviceRemove: () => {} };
      const log = countingLog();
      const tables = new PortTables(dev, 'c1', 251, log, max);
      const affinity = (['none', 'local', 'remote'] as Affinity[])[r(3)]!;
      const service = { cluster: 'c1', namespace: 'shop', name: 'web', vip: '100.127.0.1', affinity } as unknown as ClusterService;
      // the port's candidates, in the port's order (the order portViews gives: the bound's order is this one)
      const backends: Backend[] = Array.from({ length: 4 + r(30) }, (_, i) => ({ cluster: CLUSTERS[r(3)]!, node: `n${r(4)}`, pod: `shop/p${i}`, ip: `100.64.0.${i + 1}`, port: 8080, weight: 1 + r(3) }));
      backends.sort((a, b) => portOrder({ ...a, who: who(a) }, { ...b, who: who(b) }));
      // the log's clock, frozen within a minute: one line per cluster going over in it, at most (the rule's bound)
      let clock = 60_000 * 1000 + 5;
      vi.spyOn(Date, 'now').mockImplementation(() => clock);
      const view: ServicePortView = { key: 'shop/web/http', service, port: { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 } as ServicePortView['port'], backends };
      let overBefore = new Set<string>();
      let loggedThisMinute = new Set<string>();
      let lines = 0;
      for (let step = 0; step < 40; step++) {
        if (step === 20) {
          clock += 60_000; // the next minute: each cluster may be logged once more
          loggedThisMinute = new Set();
        }
        const healthy = backends.filter(() => r(4) !== 0);
        tables.install(view, healthy, new Map());
        // the oracle
        const rank = new Map<string, number>();
        const kept: Backend[] = [];
        const over: Backend[] = [];
        for (const b of healthy) {
          const n = (rank.get(b.cluster) ?? 0) + 1;
          rank.set(b.cluster, n);
          (n <= max ? kept : over).push(b);
        }
        const local = kept.filter((b) => b.cluster === 'c1');
        const remote = kept.filter((b) => b.cluster !== 'c1');
        const tier = (preferred: Backend[], other: Backend[]) => (preferred.length ? [...preferred.map((b) => [b, b.weight] as const), ...other.map((b) => [b, 0] as const)] : other.map((b) => [b, b.weight] as const));
        const rows = affinity === 'none' ? kept.map((b) => [b, b.weight] as const) : affinity === 'local' ? tier(local, remote) : tier(remote, local);
        // (installed only when the rows changed: the last rows installed are these)
        expect(upserted?.equals(backendRows(rows))).toBe(true);
        const status = tables.status('shop/web/http')!;
        expect(status.maxBackendsPerCluster).toBe(max);
        const state = (b: Backend) => status.backends.find((x) => x.pod === b.pod)!.state;
        for (const b of backends) {
          const want = !healthy.includes(b) ? 'dead' : over.includes(b) ? 'over-limit' : rows.find(([x]) => x === b)![1] > 0 ? 'selected' : 'standby';
          expect(state(b)).toBe(want);
        }
        // logged as a cluster goes over on the port, not again while it stays over, at most once a minute per cluster
        const overNow = new Set(over.map((b) => b.cluster));
        for (const c of overNow)
          if (!overBefore.has(c) && !loggedThisMinute.has(c)) {
            loggedThisMinute.add(c);
            lines++;
          }
        overBefore = overNow;
        expect(log.warnings.length).toBe(lines);
      }
    });
  }

  it('a hostile cluster writing 200 endpoints of a shared global service gets max places in every port; they move to its next backends as kept ones die', () => {
    const endpoints = new EndpointRecordsMap();
    // c2's nodes are peers 10..14 answering every probe; a node that goes is no longer a peer
    const peers = new Map([0, 1, 2, 3, 4].map((n) => [`c2/n${n}`, 10 + n]));
    let now = 1_000_000;
    const dev = new FakeDevice({ now: () => now });
    for (const p of peers.values()) dev.upsertPeer(p);
    dev.onProbe = (ids) => ids.forEach((id) => dev.answerProbe(id, 1000));
    const dp = new ServiceDatapath(dev, 'fake0', 'c1', 'n1', { maglevTableSize: 251, maxBackendsPerCluster: 8, routeVip: (_v, add) => add, endpoints }, silentLogger, (id) => peers.get(id));
    const settle = () => {
      dp.compute();
      for (let i = 0; i < 5; i++) {
        now += PROBE_INTERVAL_MS;
        dp.health.tick();
        dp.compute();
      }
    };
    const manifest = validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop', annotations: { [GLOBAL_ANNOTATION]: 'true' } }, spec: { clusterIP: '100.127.0.1', selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }, { name: 'grpc', port: 90 }] } });
    dp.upsertRecord('c1/shop/web', 'c1', manifest);
    dp.upsertRecord('c2/shop/web', 'c2', manifest);
    const add = (key: string, rec: EndpointRecord) => (endpoints.set(key, rec), dp.upsertEndpoint(key, rec, undefined));
    add('c1/n1/a', { ip: '100.65.1.10', cluster: 'c1', node: 'n1', namespace: 'shop', name: 'own-a', labels: { app: 'web' } });
    add('c1/n1/b', { ip: '100.65.1.11', cluster: 'c1', node: 'n1', namespace: 'shop', name: 'own-b', labels: { app: 'web' } });
    // 200 of c2's, 40 per node; node i holds 100.66.i.1..40
    for (let n = 0; n < 5; n++) for (let i = 1; i <= 40; i++) add(`c2/n${n}/${i}`, { ip: `100.66.${n}.${i}`, cluster: 'c2', node: `n${n}`, namespace: 'shop', name: `h-${n}-${i}`, labels: { app: 'web' } });
    settle();
    const tables = () => [...dev.services.values()];
    const inTable = (cluster: 'c1' | 'c2') => tables().map((t) => t.backends.filter((b) => (cluster === 'c1') === b.address.startsWith('100.65.')).length);
    expect(tables()).toHaveLength(2);
    expect(inTable('c1')).toEqual([2, 2]);
    expect(inTable('c2')).toEqual([8, 8]);
    const svc = () => dp.list()[0]!;
    const states = (p: number) => {
      const m: Record<string, number> = {};
      for (const b of svc().ports[p]!.backends) m[`${b.cluster}:${b.state}`] = (m[`${b.cluster}:${b.state}`] ?? 0) + 1;
      return m;
    };
    expect(states(0)).toEqual({ 'c1:selected': 2, 'c2:selected': 8, 'c2:over-limit': 192 });
    // the kept ones are the first in the port's order (address text first: 100.66.0.1, 100.66.0.10, ...), so the
    // same on every node; the expectation is that order over the records written, not the port's list
    const keptNow = () => svc().ports[0]!.backends.filter((b) => b.cluster === 'c2' && b.state === 'selected').map((b) => b.ip).sort();
    const byOrder = (nodes: number[]) =>
      nodes
        .flatMap((n) => Array.from({ length: 40 }, (_, i) => ({ ip: `100.66.${n}.${i + 1}`, port: 80, who: `c2/n${n}/shop/h-${n}-${i + 1}` })))
        .sort(portOrder)
        .slice(0, 8)
        .map((b) => b.ip)
        .sort();
    expect(keptNow()).toEqual(byOrder([0, 1, 2, 3, 4]));
    // the node holding the kept ones goes: the next healthy ones take their places; c1's are untouched
    const first = keptNow()[0]!.split('.')[2];
    peers.delete(`c2/n${first}`);
    dp.peersChanged();
    settle();
    expect(keptNow().some((ip) => ip.split('.')[2] === first)).toBe(false);
    expect(keptNow()).toEqual(byOrder([0, 1, 2, 3, 4].filter((n) => String(n) !== first)));
    expect(inTable('c2')).toEqual([8, 8]);
    expect(inTable('c1')).toEqual([2, 2]);
    expect(states(1)).toEqual({ 'c1:selected': 2, 'c2:selected': 8, 'c2:over-limit': 152, 'c2:dead': 40 });
  });

  it('node.yaml: the bound is 1 to M, by default min(4096, ⌊M/4⌋)', () => {
    const base = 'cluster: { name: c1, id: 1 }\nnode: { name: n1, addresses: [198.18.1.10], podCIDRs: [100.65.1.0/24] }\netcd: { endpoints: ["http://198.18.1.2:2379"] }\n';
    expect(parseAgentConfig(base).services.maxBackendsPerCluster).toBe(4095); // ⌊16381 / 4⌋
    expect(parseAgentConfig(`${base}services: { maglevTableSize: 251 }\n`).services.maxBackendsPerCluster).toBe(62);
    expect(parseAgentConfig(`${base}services: { maglevTableSize: 65521, maxBackendsPerCluster: 10000 }\n`).services.maxBackendsPerCluster).toBe(10000);
    expect(() => parseAgentConfig(`${base}services: { maglevTableSize: 251, maxBackendsPerCluster: 252 }\n`)).toThrow(/services\.maxBackendsPerCluster/);
    expect(() => parseAgentConfig(`${base}services: { maxBackendsPerCluster: 0 }\n`)).toThrow(/services\.maxBackendsPerCluster/);
  });
});
