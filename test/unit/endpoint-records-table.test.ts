// The agent's one table of endpoint records (s24rec, issue 16): the policy data path and the services' index read
// admission's admitted records (Admission.endpointRecords) and are told each change's previous record, instead of
// keeping a Map of their own. Checked against the layout before it, as the oracle: a data path with its own map
// fed the same admitted changes (handOverEndpoint without `previous`), on seeded random sequences of node and
// endpoint records that admission admits, refuses, holds back at a node's bound and withdraws (a node's pod CIDR
// shrinking, a node going, a pod changing namespace), keys in the forms the agent's watch hands over. After every step: the same records by key (and admission's own
// view: its size, get, has and iteration agree), the same ipcache claims and winners for every address, the same
// record describing each address, the same endpoint facts by identity (as sets: the order is the table's now),
// and the same installed service tables.
import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/agent/admission.js';
import { handOverEndpoint } from '../../src/agent/endpointhandoff.js';
import { Rejections } from '../../src/controlplane/records/rejections.js';
import { Trust } from '../../src/controlplane/records/trust.js';
import type { EndpointRecord, NodeRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { validateManifest, GLOBAL_ANNOTATION } from '../../src/manifests/validate.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { ServiceDatapath } from '../../src/services/datapath.js';
import { prng } from '../helpers/prng.js';
import type { EndpointRecords } from '../../src/controlplane/endpointrecords.js';

const KEY = (i: number) => String.fromCharCode(65 + i).repeat(42) + 'A=';
const NODES = ['n1', 'n2', 'n3'];
const nodeKey = (n: string) => `wiremesh/cache/nodes/v1/c2/${n}`;
const epKey = (n: string, ip: string) => `wiremesh/cache/ip/v2/c2/${n}/${ip}`;
const ipsOf = (n: number) => Array.from({ length: n }, (_, i) => `100.66.${i % 2}.${10 + i}`);
let IPS = ipsOf(10);

interface Side {
  dp: PolicyDatapath;
  dev: FakeDevice;
  svc: ServiceDatapath;
}

function side(records?: EndpointRecords): Side {
  const dp = new PolicyDatapath(new FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true, ...(records ? { records } : {}) }, silentLogger);
  const dev = new FakeDevice();
  for (let p = 1; p <= NODES.length; p++) dev.upsertPeer(p);
  const peerOf = (id: string) => (id.startsWith('c2/') ? NODES.indexOf(id.slice(3)) + 1 || undefined : undefined);
  const svc = new ServiceDatapath(dev, 'fake0', 'c1', 'n1', { maglevTableSize: 251, routeVip: (_v, add) => add, endpoints: dp.endpoints }, silentLogger, peerOf);
  const m = validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'ns', annotations: { [GLOBAL_ANNOTATION]: 'true' } }, spec: { clusterIP: '100.127.0.1', selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }] } });
  // defined in both clusters: c2's endpoints are its remote backends
  svc.upsertRecord('cilium/state/services/v1/c2/ns/web', 'c2', m);
  svc.upsertRecord('cilium/state/services/v1/c1/ns/web', 'c1', m);
  dev.onProbe = (ids) => {
    for (const id of ids) dev.answerProbe(id, 500);
  };
  return { dp, dev, svc };
}

const sorted = <T>(xs: Iterable<T>): T[] => [...xs].map((x) => JSON.stringify(x)).sort().map((x) => JSON.parse(x) as T);

function state(s: Side, admissionKeys: (k: string) => string) {
  s.svc.compute();
  s.svc.health.tick();
  s.svc.compute();
  return {
    records: sorted([...s.dp.endpoints].map(([k, r]) => [admissionKeys(k), r])),
    size: s.dp.endpoints.size,
    ipcache: IPS.map((ip) => [s.dp.ipcache.get(ip), sorted(s.dp.ipcache.ownersOf(ip))]),
    at: IPS.map((ip) => s.dp.byAddress.at(ip)),
    facts: sorted([...s.dp.universe.endpointsByIdentity()].map(([id, l]) => [id, sorted(l.map((f) => [f.ip, f.ports]))])),
    status: JSON.stringify(s.svc.list()),
    services: [...s.dev.services.values()].map((x) => `${x.frontends.join(',')} -> ${x.backends.map((b) => b.address).sort().join(',')}`).sort(),
  };
}

/**
 * Keys reach admission as the agent's watch hands them over: the form Admission.endpointKeys gives on the first
 * upsert, released after the key's remove (kvstore.ts). `ips`: addresses per node (> 32 puts a node's table in its
 * Map form, keytable.ts); `bound`: admitted endpoints per node.
 */
function run(seed: number, steps: number, ips = 10, bound = 4): void {
  IPS = ipsOf(ips);
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
  let agent: Side | undefined;
  let ref: Side | undefined;
  let oldsSeen = 0;
  let withBackends = 0;
  const admission: Admission = new Admission(trust, new Rejections(), {
    node: () => undefined,
    endpoint: (k, rec, old) => {
      // the sink's contract: admission's table holds `rec` already, and `old` is what it held before
      expect(admission.endpointRecords.get(k)).toStrictEqual(rec);
      if (rec) expect(Object.keys(admission.endpointRecords.get(k)!)).toEqual(Object.keys(rec));
      if (old) oldsSeen++;
      handOverEndpoint(agent!.dp, agent!.svc, k, rec, old);
      handOverEndpoint(ref!.dp, ref!.svc, k, rec, undefined); // (its own table: previous unread)
    },
    identity: () => undefined,
    relay: () => undefined,
  }, undefined, bound);
  agent = side(admission.endpointRecords);
  ref = side();
  const forms = admission.endpointKeys;
  const full = (k: string) => forms.full(k);
  const held = new Map<string, string>(); // key text -> its form, while the watch holds the key
  const formOf = (key: string): string => held.get(key) ?? held.set(key, forms.acquire(key)).get(key)!;
  let mostOfANode = 0;
  for (let step = 0; step < steps; step++) {
    const op = rnd();
    const n = pick(NODES);
    if (op < 0.2) {
      // a node with one or both /24s (a shrink withdraws the endpoints outside), or the node goes
      if (rnd() < 0.2) admission.remove('node', nodeKey(n));
      else {
        const i = NODES.indexOf(n);
        const cidrs = rnd() < 0.5 ? ['100.66.0.0/24', '100.66.1.0/24'] : [pick(['100.66.0.0/24', '100.66.1.0/24'])];
        // two nodes may claim one /24: the second waits (a conflict), its endpoints with it
        const rec: NodeRecord = { cluster: 'c2', clusterId: 2, name: n, addresses: [`198.18.2.${10 + i}`], port: 51820, publicKey: KEY(i), podCIDRs: cidrs, bootId: '1' };
        admission.upsert('node', nodeKey(n), 'c2', rec);
      }
    } else if (op < 0.85) {
      const ip = pick(IPS);
      const key = epKey(n, ip);
      if (rnd() < 0.25) {
        const f = held.get(key);
        if (f !== undefined) {
          admission.remove('endpoint', f);
          forms.release(f);
          held.delete(key);
        }
      } else {
        // two namespaces: a pod moving between them leaves one services' scope for another (the index is told `old`)
        const rec: EndpointRecord = { ip, cluster: 'c2', node: n, namespace: pick(['ns', 'other']), name: `p${IPS.indexOf(ip)}`, labels: { app: pick(['web', 'api']) }, ...(rnd() < 0.6 ? { identity: pick([0x20101, 0x20102]) } : {}) };
        admission.upsert('endpoint', formOf(key), 'c2', rec, rnd() < 0.1);
      }
    } else if (op < 0.93) {
      // service definitions come and go mid-sequence: a definition's arrival reads the table node by node (review of
      // s26svc), c2's contributing to c1's global ones
      const c = pick(['c1', 'c2', 'c3']);
      const ns = pick(['ns', 'other']);
      const m = validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: ns, annotations: { [GLOBAL_ANNOTATION]: 'true' } }, spec: { clusterIP: ns === 'ns' ? '100.127.0.1' : '100.127.0.2', selector: { app: pick(['web', 'api']) }, ports: [{ name: 'http', port: 80 }] } });
      const k = `cilium/state/services/v1/${c}/${ns}/web`;
      const drop = rnd() < 0.3;
      for (const s of [agent, ref]) {
        if (drop) s.svc.removeRecord(k);
        else s.svc.upsertRecord(k, c, m);
      }
    } else {
      // a record naming another cluster than its source, or its key's node: refused (the admitted value stays), with
      // labels a definition picks (review of s26svc #1: it was admitted, and counted under another node than its key's)
      const ip = pick(IPS);
      admission.upsert('endpoint', formOf(epKey(n, ip)), 'c2', { ip, cluster: 'c3', node: n, namespace: 'ns', name: 'x', labels: { app: pick(['web', 'api']) } });
    }
    mostOfANode = Math.max(mostOfANode, ...NODES.map((x) => [...held.keys()].filter((k) => k.includes(`/c2/${x}/`)).length));
    const a = state(agent, full);
    expect(a, `seed ${seed} step ${step}`).toEqual(state(ref, full));
    if (a.services.some((x) => x.includes('100.66.'))) withBackends++;
    // neither index was told a wrong `old` (it would have repaired itself by a walk over its scopes: endpoints.ts)
    expect([agent.svc.indexMisses, ref.svc.indexMisses]).toEqual([0, 0]);
    // the view against itself: size, iteration, get and has agree
    const entries = [...admission.endpointRecords];
    expect(entries.length).toBe(admission.endpointRecords.size);
    for (const [k, r] of entries) {
      expect(admission.endpointRecords.get(k)).toStrictEqual(r);
      expect(admission.endpointRecords.has(k)).toBe(true);
    }
    expect([...admission.endpointRecords.keys()]).toEqual(entries.map(([k]) => k));
    expect([...admission.endpointRecords.values()]).toEqual(entries.map(([, r]) => r));
  }
  // the sequences reach the paths this is about (a replaced record, admitted endpoints)
  expect(oldsSeen).toBeGreaterThan(0);
  expect(withBackends).toBeGreaterThan(0);
  if (ips > 32) expect(mostOfANode).toBeGreaterThan(32);
}

describe("the agent's one table of endpoint records (Admission.endpointRecords)", () => {
  it('data paths reading it agree with data paths keeping their own map, on random sequences', () => {
    for (let seed = 1; seed <= 40; seed++) run(seed, 300);
  });

  it('and with nodes of more than 32 keys (their tables in Map form) and a looser bound', () => {
    for (let seed = 1; seed <= 4; seed++) run(seed, 1000, 40, 36);
  });

  it('a key never admitted reads as absent; a removed one is gone from get, has, size and iteration', () => {
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
    const got: Array<[string, EndpointRecord | undefined, EndpointRecord | undefined]> = [];
    const a = new Admission(trust, new Rejections(), { node: () => undefined, endpoint: (k, r, o) => got.push([k, r, o]), identity: () => undefined, relay: () => undefined });
    a.upsert('node', nodeKey('n1'), 'c2', { cluster: 'c2', clusterId: 2, name: 'n1', addresses: ['198.18.2.10'], port: 51820, publicKey: KEY(0), podCIDRs: ['100.66.0.0/24'], bootId: '1' });
    const k = epKey('n1', '100.66.0.10');
    const r1: EndpointRecord = { ip: '100.66.0.10', cluster: 'c2', node: 'n1', namespace: 'ns', name: 'p', labels: {} };
    const r2: EndpointRecord = { ...r1, identity: 0x20101 };
    expect(a.endpointRecords.get(k)).toBeUndefined();
    a.upsert('endpoint', k, 'c2', r1);
    a.upsert('endpoint', k, 'c2', r2);
    expect([a.endpointRecords.size, a.endpointRecords.get(k), a.endpointRecords.has(k)]).toEqual([1, r2, true]);
    a.remove('endpoint', k);
    expect([a.endpointRecords.size, a.endpointRecords.get(k), a.endpointRecords.has(k), [...a.endpointRecords]]).toEqual([0, undefined, false, []]);
    expect(got).toEqual([[k, r1, undefined], [k, r2, r1], [k, undefined, r2]]);
  });
});
