// Lookups at the limit and policy by delta (issue 16), against references:
// - the native ipcache's per-family, per-prefix-length tables against a naive
//   longest-prefix match over random prefixes and addresses (real addon);
// - identities added, removed and relabelled by delta (PolicyDatapath
//   .applyIdentityChanges, native policyMapUpdate) against a full recompile of
//   the same state, on seeded random sequences: the native maps (real addon and
//   FakeDevice) and the compiled entries must be equal.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { clusterIdentity, endpointIdentityLabels } from '../../src/identity/identity.js';
import { silentLogger } from '../../src/log.js';
import { validateManifest } from '../../src/manifests/validate.js';
import type { NativeDevice } from '../../src/native/binding.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { decodePolicyRows, ipcacheRow, lookupOrder, PolicyAction } from '../../src/native/rows.js';
import { formatIP, maskPrefix, prefixContains } from '../../src/net/ip.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { nativeDevices } from '../helpers/native-devices.js';

/** xorshift32, seeded: a failure reproduces from its seed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const u32 = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
  return { u32, int: (n: number) => u32() % n, pick: <T>(xs: readonly T[]): T => xs[u32() % xs.length]! };
}

const device = nativeDevices();

describe('native ipcache: v4 and v6 tables against a naive longest-prefix match', () => {
  for (const seed of [1, 2, 3]) {
    it(`random prefixes, removals and lookups (seed ${seed})`, () => {
      const r = rng(seed);
      const dev = device();
      dev.enablePolicy();
      // a narrow address space (100.64.0.0/14, fd00::/16 with few varying bits) so prefixes nest and overlap
      const v4 = (): Buffer => Buffer.from([100, 64 + r.int(4), r.pick([0, 1, 255]), r.int(8)]);
      const v6 = (): Buffer => {
        const a = Buffer.alloc(16);
        a[0] = 0xfd;
        for (const i of [2, 7, 8, 15]) a[i] = r.int(3);
        return a;
      };
      const lens4 = [0, 8, 14, 16, 22, 24, 29, 31, 32, 32, 32];
      const lens6 = [0, 16, 48, 64, 64, 96, 120, 127, 128, 128, 128];
      const ref = new Map<string, { addr: Buffer; cidr: number; identity: number; endpoint: number }>();
      const keyOf = (addr: Buffer, cidr: number) => `${formatIP(maskPrefix(addr, cidr))}/${cidr}`;
      const naive = (a: Buffer) => {
        let best: { cidr: number; identity: number; endpoint: number } | undefined;
        for (const e of ref.values())
          if (e.addr.length === a.length && prefixContains({ addr: e.addr, cidr: e.cidr }, a) && (!best || e.cidr > best.cidr)) best = e;
        return best ? { identity: best.identity, endpoint: best.endpoint } : null;
      };
      const none = Buffer.alloc(0);
      for (let step = 0; step < 60; step++) {
        for (let i = 0; i < 20; i++) {
          const six = r.int(2) === 1;
          const addr = six ? v6() : v4();
          const cidr = r.pick(six ? lens6 : lens4);
          const k = keyOf(addr, cidr);
          if (ref.has(k) && r.int(3) === 0) {
            // removal names the prefix with host bits set, as a row may
            dev.ipcacheUpdate(none, ipcacheRow(addr, cidr, 0, 0));
            ref.delete(k);
          } else {
            const v = { identity: 256 + r.int(1 << 20), endpoint: r.int(4) };
            dev.ipcacheUpdate(ipcacheRow(addr, cidr, v.identity, v.endpoint), none);
            ref.set(k, { addr: maskPrefix(addr, cidr), cidr, ...v });
          }
        }
        for (let i = 0; i < 50; i++) {
          const a = r.int(2) ? v6() : v4();
          expect(dev.ipcacheLookup(a), `${formatIP(a)} (seed ${seed}, step ${step})`).toEqual(naive(a));
        }
      }
      expect(dev.counters().ipcache_entries).toBe(ref.size);
      // a default route of one family never answers for the other
      dev.ipcacheUpdate(none, Buffer.concat([...ref.values()].map((e) => ipcacheRow(e.addr, e.cidr, 0, 0))));
      dev.ipcacheUpdate(ipcacheRow(Buffer.alloc(16), 0, 300, 0), none);
      expect(dev.ipcacheLookup(Buffer.from([8, 8, 8, 8]))).toBeNull();
      expect(dev.ipcacheLookup(v6())).toEqual({ identity: 300, endpoint: 0 });
    });
  }
});

const POLICIES = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: be, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: frontend } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }, { port: "9000", endPort: 9100, protocol: TCP }] }]
    - fromEndpoints: [{ matchLabels: { app: worker } }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }], rules: { http: [{ method: GET }] } }]
  ingressDeny: [{ fromEndpoints: [{ matchLabels: { shard: "3" } }] }]
  egress:
    - toEndpoints: [{ matchExpressions: [{ key: app, operator: In, values: [frontend, db] }] }]
    - toEntities: [cluster]
    - toEndpoints: [{}]
      toPorts: [{ ports: [{ port: web, protocol: TCP }] }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: np, namespace: shop }
spec:
  podSelector: { matchLabels: { app: backend } }
  policyTypes: [Ingress]
  ingress:
    - from: [{ ipBlock: { cidr: 100.66.0.0/16, except: [100.66.9.0/24] } }]
    - from: [{ namespaceSelector: {} }]
      ports: [{ port: web }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: open, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: worker } }
  enableDefaultDeny: { ingress: false }
  ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: db } }] }]`;

const DIRS = ['ingress', 'egress'] as const;

/** One agent's policy state on one device, fed the same inputs as its twin. */
function datapath(dev: NativeDevice): PolicyDatapath {
  const dp = new PolicyDatapath(dev, 'c1', 'n1', { defaultLocalCluster: false }, silentLogger);
  POLICIES.split('\n---\n').forEach((doc, i) => dp.upsertPolicy(`k${i}`, 'c1', `shop/p${i}`, validateManifest(parse(doc))));
  for (let e = 0; e < 4; e++) {
    const labels = endpointIdentityLabels({ app: e < 3 ? 'backend' : 'worker' }, 'shop', 'c1');
    dp.setLocalEndpoint(`shop/ep${e}`, clusterIdentity(1, 60000 + e), labels, [`100.65.0.${e + 10}`], [{ name: 'web', containerPort: 8000 + e, protocol: 'TCP' }]);
  }
  return dp;
}

/** The maps as the data path holds them, and the compiled entries in the same order. */
function maps(dev: NativeDevice, dp: PolicyDatapath) {
  const out: Record<string, unknown> = {};
  for (const [key, pol] of dp.compiled)
    for (const dir of DIRS) {
      const id = (dp.summary().endpoints as Array<{ endpoint: string; id: number }>).find((e) => e.endpoint === key)!.id;
      const rows = dev.policyMapEntries(id, dir);
      out[`${key} ${dir} native`] = rows && decodePolicyRows(rows);
      const action = (e: { deny: boolean; redirect?: boolean }) => (e.deny ? PolicyAction.Deny : e.redirect ? PolicyAction.Redirect : PolicyAction.Allow);
      out[`${key} ${dir} compiled`] = pol[dir] && lookupOrder(pol[dir].map((e) => ({ identity: e.identity, proto: e.proto, action: action(e), lo: e.lo, hi: e.hi, rule: e.rule })));
    }
  return out;
}

describe('policy by delta against a full recompile', () => {
  for (const [seed, native] of [[11, true], [12, true], [13, false]] as const) {
    it(`random identity adds, removals and relabels (seed ${seed}, ${native ? 'addon' : 'FakeDevice'})`, () => {
      const r = rng(seed);
      const devA = native ? device() : new FakeDevice();
      const devB = native ? device() : new FakeDevice();
      const delta = datapath(devA);
      const full = datapath(devB);
      // endpoint facts: named ports for the egress rule, addresses inside and outside the ipBlock
      for (let i = 0; i < 6; i++) {
        const rec = { ip: `100.66.${i % 2 ? 9 : 1}.${i}`, cluster: 'c2', node: 'm1', namespace: 'shop', name: `pod${i}`, labels: {}, identity: clusterIdentity(2, 300 + i), ports: [{ name: 'web', containerPort: 7000 + i, protocol: 'TCP' as const }] };
        delta.upsertEndpoint(`e${i}`, rec, undefined);
        full.upsertEndpoint(`e${i}`, rec, undefined);
      }
      delta.recompile();
      full.recompile();
      const live = new Set<number>();
      let written = 0;
      const labels = () =>
        endpointIdentityLabels({ app: r.pick(['frontend', 'backend', 'worker', 'db', 'cache']), shard: String(r.int(5)) }, r.pick(['shop', 'shop', 'other']), `c${1 + r.int(3)}`);
      for (let step = 0; step < 40; step++) {
        for (let n = 1 + r.int(4); n > 0; n--) {
          const op = r.int(3);
          if (op === 0 || live.size === 0) {
            // new, or one an endpoint above holds (its ipBlock and named-port entries appear with it)
            const id = r.int(3) === 0 ? clusterIdentity(2, 300 + r.int(6)) : clusterIdentity(1 + r.int(3), 1000 + r.int(5000));
            const rec = { id, labels: labels() };
            delta.upsertIdentity(rec);
            full.upsertIdentity(rec);
            live.add(id);
          } else if (op === 1) {
            const id = r.pick([...live]);
            delta.removeIdentity(id);
            full.removeIdentity(id);
            live.delete(id);
          } else {
            const rec = { id: r.pick([...live]), labels: labels() };
            delta.upsertIdentity(rec);
            full.upsertIdentity(rec);
          }
        }
        delta.applyIdentityChanges();
        written += delta.lastDelta.entries;
        full.recompile();
        expect(maps(devA, delta), `seed ${seed}, step ${step}`).toEqual(maps(devB, full));
      }
      expect(written).toBeGreaterThan(0); // the delta path did the work
      delta.stop();
      full.stop();
    });
  }

  it('a new identity reaches the data path by delta (no full compile), a removed one leaves it', () => {
    const dev = device();
    const dp = datapath(dev);
    dp.recompile();
    const compiles = dp.lastCompileMs;
    const fe = clusterIdentity(2, 4242);
    dp.upsertIdentity({ id: fe, labels: endpointIdentityLabels({ app: 'frontend' }, 'shop', 'c1') });
    dp.applyIdentityChanges();
    const epId = (key: string) => (dp.summary().endpoints as Array<{ endpoint: string; id: number }>).find((e) => e.endpoint === key)!.id;
    const ep = epId('shop/ep0');
    const of = (id: number) => decodePolicyRows(dev.policyMapEntries(ep, 'ingress')!).filter((e) => e.identity === id);
    expect(of(fe).map((e) => [e.proto, e.lo, e.hi])).toEqual(expect.arrayContaining([[6, 8080, 8080], [6, 9000, 9100]]));
    expect(dp.lastDelta.entries).toBeGreaterThan(0);
    expect(dp.lastCompileMs).toBe(compiles);
    dp.removeIdentity(fe);
    dp.applyIdentityChanges();
    expect(of(fe)).toEqual([]);
    // the delta needs the map it patches: a direction that is not enforced has none
    expect(dev.policyMapUpdate(ep, 'egress', Buffer.alloc(0), Buffer.alloc(0))).toBe(true);
    expect(dev.policyMapUpdate(epId('shop/ep3'), 'egress', Buffer.alloc(0), Buffer.alloc(0))).toBe(false);
    expect(dev.policyMapUpdate(999, 'ingress', Buffer.alloc(0), Buffer.alloc(0))).toBe(false);
    expect(() => dev.policyMapUpdate(ep, 'sideways' as 'ingress', Buffer.alloc(0), Buffer.alloc(0))).toThrow(/ingress/);
    dp.stop();
  });
});
