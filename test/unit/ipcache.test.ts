// The agent's ipcache table: prefixes owned by their sources, with precedence
// and removal that restores what the remaining owners say (src/policy/ipcache.ts).
import { describe, expect, it } from 'vitest';
import { canonicalPrefix, IpcacheTable } from '../../src/policy/ipcache.js';

const POD = 0x10101; // some endpoint identity
const CIDR = (1 << 24) + 1; // a CIDR identity
const HOST = 1;
const REMOTE_NODE = 6;

describe('ipcache owners', () => {
  it('one prefix, however it is written', () => {
    expect(canonicalPrefix('100.65.1.10')).toBe('100.65.1.10/32');
    expect(canonicalPrefix('100.65.1.10/32')).toBe('100.65.1.10/32');
    expect(canonicalPrefix('198.18.201.7/24')).toBe('198.18.201.0/24');
    expect(canonicalPrefix('fd65::1')).toBe('fd65::1/128');
    expect(canonicalPrefix('nonsense')).toBeNull();
  });

  it("regression: a CIDR rule naming a pod's /32 neither replaces the pod nor takes it away when the rule goes", () => {
    const t = new IpcacheTable();
    t.set('100.65.2.10', 'endpoint', 'endpoint', { identity: POD, endpoint: 0 });
    expect(t.takeChanges()).toEqual(new Map([['100.65.2.10/32', { identity: POD, endpoint: 0 }]]));
    // the rule comes after the pod: the pod's entry stays what it was (nothing to write)
    t.set('100.65.2.10/32', 'cidr:100.65.2.10/32', 'cidr', { identity: CIDR, endpoint: 0 });
    expect(t.takeChanges().size).toBe(0);
    expect(t.get('100.65.2.10')).toMatchObject({ identity: POD, kind: 'endpoint' });
    // the rule goes: the pod stays
    t.delete('100.65.2.10/32', 'cidr:100.65.2.10/32');
    expect(t.takeChanges().size).toBe(0);
    expect(t.get('100.65.2.10/32')?.identity).toBe(POD);
    expect(t.size).toBe(1);
  });

  it('the rule first, then the pod: the pod wins; the pod goes: the CIDR identity is restored', () => {
    const t = new IpcacheTable();
    t.set('100.65.2.10/32', 'cidr:100.65.2.10/32', 'cidr', { identity: CIDR, endpoint: 0 });
    t.set('100.65.2.10', 'endpoint', 'endpoint', { identity: POD, endpoint: 0 });
    expect(t.takeChanges()).toEqual(new Map([['100.65.2.10/32', { identity: POD, endpoint: 0 }]]));
    t.delete('100.65.2.10', 'endpoint');
    expect(t.takeChanges()).toEqual(new Map([['100.65.2.10/32', { identity: CIDR, endpoint: 0 }]]));
    t.delete('100.65.2.10/32', 'cidr:100.65.2.10/32');
    expect(t.takeChanges()).toEqual(new Map([['100.65.2.10/32', null]]));
    expect(t.size).toBe(0);
  });

  it('precedence: node > local endpoint > endpoint record > CIDR, whatever the order of arrival', () => {
    const orders = [
      ['cidr', 'endpoint', 'local-endpoint', 'node'],
      ['node', 'local-endpoint', 'endpoint', 'cidr'],
      ['endpoint', 'node', 'cidr', 'local-endpoint'],
    ] as const;
    const values = { node: { identity: HOST, endpoint: 0 }, 'local-endpoint': { identity: POD, endpoint: 7 }, endpoint: { identity: POD, endpoint: 0 }, cidr: { identity: CIDR, endpoint: 0 } };
    for (const order of orders) {
      const t = new IpcacheTable();
      for (const k of order) t.set('100.65.1.1', k, k, values[k]);
      expect(t.get('100.65.1.1')?.kind).toBe('node');
      // removing the winners one by one restores the next in precedence
      t.delete('100.65.1.1', 'node');
      expect(t.get('100.65.1.1')).toMatchObject(values['local-endpoint']);
      t.delete('100.65.1.1', 'local-endpoint');
      expect(t.get('100.65.1.1')).toMatchObject(values.endpoint);
      t.delete('100.65.1.1', 'endpoint');
      expect(t.get('100.65.1.1')).toMatchObject(values.cidr);
      t.delete('100.65.1.1', 'cidr');
      expect(t.get('100.65.1.1')).toBeUndefined();
    }
  });

  it('a node address named by a CIDR rule stays remote-node, and outlives the rule', () => {
    const t = new IpcacheTable();
    t.set('198.18.1.11', 'c1/n2', 'node', { identity: REMOTE_NODE, endpoint: 0 });
    t.set('198.18.1.11/32', 'cidr:198.18.1.11/32', 'cidr', { identity: CIDR, endpoint: 0 });
    t.set('198.18.1.0/24', 'cidr:198.18.1.0/24', 'cidr', { identity: CIDR + 1, endpoint: 0 });
    const first = t.takeChanges();
    expect(first.get('198.18.1.11/32')).toEqual({ identity: REMOTE_NODE, endpoint: 0 });
    expect(first.get('198.18.1.0/24')).toEqual({ identity: CIDR + 1, endpoint: 0 });
    t.delete('198.18.1.11/32', 'cidr:198.18.1.11/32');
    expect(t.takeChanges().size).toBe(0);
    expect(t.get('198.18.1.11')?.identity).toBe(REMOTE_NODE);
  });

  it('equal precedence: the latest claim wins, and removing it restores the earlier one', () => {
    const t = new IpcacheTable();
    t.set('198.18.1.0/24', 'cidr:198.18.1.0/24', 'cidr', { identity: CIDR, endpoint: 0 });
    t.set('198.18.1.7/24', 'cidr:198.18.1.7/24', 'cidr', { identity: CIDR + 2, endpoint: 0 });
    expect(t.get('198.18.1.0/24')?.identity).toBe(CIDR + 2);
    // re-setting the older claim unchanged does not make it newer
    t.set('198.18.1.0/24', 'cidr:198.18.1.0/24', 'cidr', { identity: CIDR, endpoint: 0 });
    expect(t.get('198.18.1.0/24')?.identity).toBe(CIDR + 2);
    t.delete('198.18.1.7/24', 'cidr:198.18.1.7/24');
    expect(t.get('198.18.1.0/24')?.identity).toBe(CIDR);
    expect(t.ownersOf('198.18.1.0/24')).toEqual([{ owner: 'cidr:198.18.1.0/24', kind: 'cidr' }]);
  });

  it('changes are only what differs from what was taken last', () => {
    const t = new IpcacheTable();
    t.set('100.65.1.10', 'local:ns/a', 'local-endpoint', { identity: POD, endpoint: 3 });
    t.set('100.65.1.10', 'endpoint', 'endpoint', { identity: POD, endpoint: 0 });
    expect(t.takeChanges()).toEqual(new Map([['100.65.1.10/32', { identity: POD, endpoint: 3 }]]));
    // the record from etcd goes and comes back: the local endpoint keeps its endpoint id throughout
    t.delete('100.65.1.10', 'endpoint');
    t.set('100.65.1.10', 'endpoint', 'endpoint', { identity: POD, endpoint: 0 });
    expect(t.takeChanges().size).toBe(0);
    // the local endpoint goes: the record from etcd remains (no local endpoint id)
    t.delete('100.65.1.10', 'local:ns/a');
    expect(t.takeChanges()).toEqual(new Map([['100.65.1.10/32', { identity: POD, endpoint: 0 }]]));
    expect(t.takeChanges().size).toBe(0);
  });
});

// The same, through PolicyDatapath (the agent's side) on the fake device (src/native/fakedevice.ts).
describe('PolicyDatapath ipcache sources', () => {
  async function setup() {
    const { PolicyDatapath } = await import('../../src/policy/datapath.js');
    const { FakeDevice } = await import('../../src/native/fakedevice.js');
    const dev = new FakeDevice();
    const log = { info: () => undefined, warn: () => undefined, debug: () => undefined, error: () => undefined };
    const dp = new PolicyDatapath(dev, 'c1', 'n1', { defaultLocalCluster: true }, log as never);
    const settle = () => new Promise((r) => setImmediate(r));
    return { dp, native: dev.ipcache, settle };
  }
  const rec = (ip: string, node: string, identity: number) => ({ ip, cluster: 'c1', node, namespace: 'y', name: 'b', labels: { pod: 'b' }, identity });

  it('regression: a policy whose ipBlock names a pod neither changes the pod nor removes it when deleted', async () => {
    const { parse } = await import('yaml');
    const { validateManifest } = await import('../../src/manifests/validate.js');
    const { dp, native, settle } = await setup();
    dp.upsertEndpoint('k/n2/100.65.2.12', rec('100.65.2.12', 'n2', POD), undefined);
    await settle();
    expect(native.get('100.65.2.12/32')).toEqual({ identity: POD, endpoint: 0 });
    const m = validateManifest(parse(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: to-b, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  policyTypes: [Egress]
  egress: [{ to: [{ ipBlock: { cidr: 100.65.2.12/32 } }] }]
`));
    dp.upsertPolicy('p/x/to-b', 'c1', 'x/knp.to-b', m);
    await settle();
    expect(dp.universe.cidrs.has('100.65.2.12/32')).toBe(true);
    expect(native.get('100.65.2.12/32')).toEqual({ identity: POD, endpoint: 0 });
    dp.removePolicy('p/x/to-b');
    await settle();
    expect(dp.universe.cidrs.size).toBe(0);
    expect(native.get('100.65.2.12/32')).toEqual({ identity: POD, endpoint: 0 });
  });

  it('two endpoint records for one address (a pod moved): removing the stale one keeps the new one', async () => {
    const { dp, native, settle } = await setup();
    dp.upsertEndpoint('k/n2/100.65.2.12', rec('100.65.2.12', 'n2', POD), undefined);
    dp.upsertEndpoint('k/n3/100.65.2.12', rec('100.65.2.12', 'n3', POD + 1), undefined);
    await settle();
    expect(native.get('100.65.2.12/32')?.identity).toBe(POD + 1);
    dp.removeEndpoint('k/n2/100.65.2.12', undefined);
    await settle();
    expect(native.get('100.65.2.12/32')?.identity).toBe(POD + 1);
    dp.removeEndpoint('k/n3/100.65.2.12', undefined);
    await settle();
    expect(native.has('100.65.2.12/32')).toBe(false);
  });

  // endpointsByIp holds one key per address and an array only while several records name it: on random
  // sequences the record it gives for an address must be the latest upserted of those naming it
  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: the record an address resolves to is the latest of those naming it (plain model)`, async () => {
      const { dp, settle } = await setup();
      let s = seed;
      const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
      const keys = ['k/a', 'k/b', 'k/c', 'k/d'];
      const ips = ['100.65.2.1', '100.65.2.2', '100.65.2.3'];
      const model = new Map<string, ReturnType<typeof rec>>(); // key -> record, in order of the last upsert
      const at = (ip: string) => dp.byAddress.at(ip);
      for (let i = 0; i < 2000; i++) {
        const key = keys[Math.floor(rnd() * keys.length)]!;
        if (rnd() < 0.6) {
          const r = rec(ips[Math.floor(rnd() * ips.length)]!, 'n2', POD + Math.floor(rnd() * 3));
          dp.upsertEndpoint(key, r, undefined);
          model.delete(key);
          model.set(key, r);
        } else {
          dp.removeEndpoint(key, undefined);
          model.delete(key);
        }
        for (const ip of ips) expect(at(ip)).toBe([...model.values()].filter((r) => r.ip === ip).at(-1));
        expect(new Map(dp.endpoints)).toEqual(model);
      }
      await settle();
    });
  }

  it("a node's address and the router address stay host / remote-node whatever else names them", async () => {
    const { dp, native, settle } = await setup();
    dp.setNode('c1/n1', ['198.18.1.10', '100.65.1.1']);
    dp.setNode('c1/n2', ['198.18.1.11']);
    dp.upsertEndpoint('k/n1/100.65.1.1', rec('100.65.1.1', 'n1', POD), undefined);
    await settle();
    expect(native.get('100.65.1.1/32')?.identity).toBe(HOST);
    dp.setNode('c1/n2', null);
    await settle();
    expect(native.has('198.18.1.11/32')).toBe(false);
    expect(native.get('198.18.1.10/32')?.identity).toBe(HOST);
  });
});

// The table holds one owner inline per prefix and more in a side map (for memory): on random
// seeded sequences its answers must equal those of the plain model (prefix -> owner -> claim).
describe('ipcache owners against the plain model', () => {
  type Kind = 'node' | 'local-endpoint' | 'endpoint' | 'cidr';
  const KINDS: Kind[] = ['node', 'local-endpoint', 'endpoint', 'cidr'];
  const RANK: Record<Kind, number> = { node: 3, 'local-endpoint': 2, endpoint: 1, cidr: 0 };
  class Model {
    owners = new Map<string, Map<string, { kind: Kind; identity: number; endpoint: number; seq: number }>>();
    installed = new Map<string, { identity: number; endpoint: number }>();
    touched = new Set<string>();
    seq = 0;
    set(p: string, owner: string, kind: Kind, v: { identity: number; endpoint: number }): void {
      let o = this.owners.get(p);
      if (!o) this.owners.set(p, (o = new Map()));
      const cur = o.get(owner);
      if (cur && cur.kind === kind && cur.identity === v.identity && cur.endpoint === v.endpoint) return;
      o.set(owner, { kind, ...v, seq: cur && cur.kind === kind ? cur.seq : ++this.seq });
      this.touched.add(p);
    }
    delete(p: string, owner: string): void {
      const o = this.owners.get(p);
      if (!o || !o.delete(owner)) return;
      if (o.size === 0) this.owners.delete(p);
      this.touched.add(p);
    }
    get(p: string) {
      let best: [string, { kind: Kind; identity: number; endpoint: number; seq: number }] | undefined;
      for (const e of this.owners.get(p) ?? []) if (!best || RANK[e[1].kind] > RANK[best[1].kind] || (RANK[e[1].kind] === RANK[best[1].kind] && e[1].seq > best[1].seq)) best = e;
      return best ? { identity: best[1].identity, endpoint: best[1].endpoint, kind: best[1].kind, owner: best[0] } : undefined;
    }
    take(): Map<string, { identity: number; endpoint: number } | null> {
      const out = new Map<string, { identity: number; endpoint: number } | null>();
      for (const p of this.touched) {
        const want = this.get(p);
        const have = this.installed.get(p);
        if (!want) {
          if (have) (this.installed.delete(p), out.set(p, null));
          continue;
        }
        if (have && have.identity === want.identity && have.endpoint === want.endpoint) continue;
        this.installed.set(p, { identity: want.identity, endpoint: want.endpoint });
        out.set(p, { identity: want.identity, endpoint: want.endpoint });
      }
      this.touched.clear();
      return out;
    }
  }
  // mulberry32: a failure reproduces from its seed
  const prng = (seed: number) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`seed ${seed}: 3000 random sets, deletes and takes`, () => {
      const rnd = prng(seed);
      const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
      const prefixes = ['100.64.0.1/32', '100.64.0.2/32', '100.64.0.0/24', 'fd64::1/128'];
      const owners = ['ep:a', 'ep:b', 'local:a', 'node:x', 'cidr:r1', 'cidr:r2'];
      const t = new IpcacheTable();
      const m = new Model();
      for (let i = 0; i < 3000; i++) {
        const p = pick(prefixes);
        const o = pick(owners);
        const r = rnd();
        if (r < 0.5) {
          const v = { identity: 256 + Math.floor(rnd() * 3), endpoint: Math.floor(rnd() * 2) };
          const k = pick(KINDS);
          t.set(p, o, k, v);
          m.set(p, o, k, v);
        } else if (r < 0.85) {
          t.delete(p, o);
          m.delete(p, o);
        } else {
          expect([...t.takeChanges()]).toEqual([...m.take()]);
          expect(t.size).toBe(m.installed.size);
        }
        expect(t.get(p)).toEqual(m.get(p));
        expect(t.ownersOf(p)).toEqual([...(m.owners.get(p) ?? [])].map(([owner, c]) => ({ owner, kind: c.kind })));
      }
    });
  }
});
