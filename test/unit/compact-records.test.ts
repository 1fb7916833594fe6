// Compact agent state (issue 16, bench/memory.ts): decoded records share what
// they repeat, ListWatcher keeps digests instead of values and takes listings
// page by page. What a record says and what a sink sees must not change.
import { setFlagsFromString } from 'node:v8';
import { describe, expect, it, vi } from 'vitest';
import { ListWatcher, valueDigest, type KV, type KVStore } from '../../src/controlplane/kvstore.js';
import { endpointCodec, HeldNode, nodeCodec, nodeSchema } from '../../src/controlplane/records/index.js';
import { internName } from '../../src/controlplane/records/intern.js';

const ep = (ip: string, name: string, labels: Record<string, string>) => ({
  ip,
  cluster: 'c2',
  node: 'n1',
  namespace: 'team-a',
  name,
  labels,
  identity: 0x20100,
  ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
});
const epKey = (ip: string) => `wiremesh/cache/ip/v2/c2/n1/${ip}`;

// V8's own answers on a record's hidden class, for the tests of records' shapes (the flag only lets `%` calls
// parse; vitest's forks pool runs each file in its own process, so it stays in this file)
setFlagsFromString('--allow-natives-syntax');
const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
const fastProperties = new Function('a', 'return %HasFastProperties(a)') as (a: object) => boolean;

describe('decoded records share what they repeat', () => {
  it('two endpoints with one label set hold one frozen label object and one port list, and read back what they carried', () => {
    const a = ep('100.64.0.2', 'web-1', { app: 'web', tier: 'front' });
    const b = ep('100.64.0.3', 'web-2', { app: 'web', tier: 'front' });
    const da = endpointCodec.decode(epKey(a.ip), JSON.stringify(a));
    const db = endpointCodec.decode(epKey(b.ip), JSON.stringify(b));
    expect(da).toStrictEqual(a);
    expect(db).toStrictEqual(b);
    expect(da.labels).toBe(db.labels);
    expect(da.ports).toBe(db.ports);
    expect(Object.isFrozen(da.labels)).toBe(true);
    expect(() => ((da.labels as Record<string, string>).app = 'db')).toThrow(TypeError);
    expect(db.labels.app).toBe('web');
  });

  it('label order is kept: the same entries in another order are another set', () => {
    const a = endpointCodec.decode(epKey('100.64.0.4'), JSON.stringify(ep('100.64.0.4', 'x', { app: 'web', tier: 'front' })));
    const b = endpointCodec.decode(epKey('100.64.0.5'), JSON.stringify(ep('100.64.0.5', 'y', { tier: 'front', app: 'web' })));
    expect(Object.keys(a.labels)).toEqual(['app', 'tier']);
    expect(Object.keys(b.labels)).toEqual(['tier', 'app']);
  });

  it('an endpoint without identity or ports decodes as before', () => {
    const { identity: _i, ports: _p, ...bare } = ep('100.64.0.6', 'z', {});
    expect(endpointCodec.decode(epKey('100.64.0.6'), JSON.stringify(bare))).toStrictEqual(bare);
  });

  it('every shape (an identity or not, named ports or not) is one literal with its fields in place, in the schema order', () => {
    // regression: a record with an identity and no named port (a remote pod, as a rule) kept the decoded object
    // with `identity` added after its literal, in an out-of-object property store (~40 B more per record,
    // bench/records-heap.ts). The oracle is a literal the test writes with the schema's fields in their order:
    // V8 gives a record the same hidden class only when it was built the same way.
    const full = ep('100.64.0.9', 'web-9', { app: 'web' });
    const { identity, ports, ...plain } = full;
    const literal = (r: typeof full | typeof plain) =>
      'identity' in r && 'ports' in r ? { ip: r.ip, cluster: r.cluster, node: r.node, namespace: r.namespace, name: r.name, labels: r.labels, identity: r.identity, ports: r.ports }
      : 'identity' in r ? { ip: r.ip, cluster: r.cluster, node: r.node, namespace: r.namespace, name: r.name, labels: r.labels, identity: r.identity }
      : 'ports' in r ? { ip: r.ip, cluster: r.cluster, node: r.node, namespace: r.namespace, name: r.name, labels: r.labels, ports: (r as typeof full).ports }
      : { ip: r.ip, cluster: r.cluster, node: r.node, namespace: r.namespace, name: r.name, labels: r.labels };
    for (const rec of [full, { ...plain, identity }, { ...plain, ports }, plain]) {
      const got = endpointCodec.decode(epKey(rec.ip), JSON.stringify(rec));
      expect(got).toStrictEqual(rec);
      expect(Object.keys(got)).toEqual(['ip', 'cluster', 'node', 'namespace', 'name', 'labels', 'identity', 'ports'].filter((k) => k in rec));
      expect(sameMap(got, literal(rec)), JSON.stringify(Object.keys(rec))).toBe(true);
    }
  });

  it('a node decodes to the same fields (a HeldNode: one address and one pod CIDR held as text); names are the engine copy', () => {
    const n = { cluster: 'c2', clusterId: 2, name: 'n1', addresses: ['198.18.0.1'], port: 51871, publicKey: `${'A'.repeat(43)}=`, podCIDRs: ['100.64.0.0/24'], bootId: '1' };
    const d = nodeCodec.decode('wiremesh/cache/nodes/v1/c2/n1', JSON.stringify(n));
    expect(d).toBeInstanceOf(HeldNode);
    expect((d as HeldNode).toJSON()).toStrictEqual(n);
    expect(JSON.stringify(d)).toBe(JSON.stringify(n)); // the reconciler compares records by this text
    for (const f of ['cluster', 'clusterId', 'name', 'addresses', 'port', 'publicKey', 'podCIDRs', 'bootId'] as const) expect(d[f], f).toEqual(n[f]);
    // one element: held as its text, a new array on each read; two or more: the held array itself
    expect(Object.values(d).some(Array.isArray)).toBe(false);
    expect(d.addresses).not.toBe(d.addresses);
    expect(d.podCIDRs).not.toBe(d.podCIDRs);
    const two = { ...n, addresses: ['198.18.0.1', '198.18.0.2'], podCIDRs: ['100.64.0.0/24', '100.64.1.0/24'] };
    const e = nodeCodec.decode('wiremesh/cache/nodes/v1/c2/n1', JSON.stringify(two));
    expect(e.addresses).toBe(e.addresses);
    expect(e.podCIDRs).toBe(e.podCIDRs);
    // a held array is the record's: a write to it throws rather than change the admitted record in place
    expect(() => e.addresses.push('198.18.0.3')).toThrow(TypeError);
    expect(() => (e.podCIDRs[0] = '100.64.9.0/24')).toThrow(TypeError);
    expect(e.podCIDRs).toEqual(two.podCIDRs);
    // every field of the schema, in its order (a field the schema gains must not be dropped by the class)
    expect(Object.keys((d as HeldNode).toJSON())).toEqual(Object.keys(nodeSchema.shape));
    expect(JSON.stringify(e)).toBe(JSON.stringify(two));
    // one hidden class, its fields in place, whatever the lists' lengths (a field added later would move out)
    expect(sameMap(d, e)).toBe(true);
    expect(fastProperties(d)).toBe(true);
    expect(internName('n1')).toBe('n1');
    expect(internName('123')).toBe('123');
  });

  it('values that differ have different digests (53 bits)', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 20000; i++) seen.add(valueDigest(JSON.stringify({ i, ip: `100.64.${i >> 8}.${i & 255}` })));
    expect(seen.size).toBe(20000);
    expect(valueDigest('é€x')).not.toBe(valueDigest('éx€'));
    expect(valueDigest('abc')).toBe(valueDigest('abc'));
    expect(Number.isSafeInteger(valueDigest('abc'))).toBe(true);
  });
});

/** A store that lists in pages of 2 and can fail after `failAfter` pages. */
function pagedStore(data: Map<string, string>) {
  /** `refuse`: keys whose value the store refuses alone (as etcd's store does bytes that are not UTF-8). */
  const st = { failAfter: Infinity, lists: 0, refuse: new Set<string>() };
  const store: KVStore & typeof st = Object.assign(st, {
    async list(): Promise<{ revision: string; kvs: KV[] }> {
      throw new Error('list() must not be used when listPages exists');
    },
    async listPages(prefix: string, page: (kvs: KV[]) => void, rejected?: (key: string, reason: string) => void): Promise<string> {
      st.lists++;
      for (const k of st.refuse) rejected?.(k, 'value is not valid UTF-8');
      const kvs = [...data].filter(([k]) => k.startsWith(prefix) && !st.refuse.has(k)).map(([key, value]) => ({ key, value }));
      for (let i = 0, n = 0; i < kvs.length; i += 2, n++) {
        if (n >= st.failAfter) throw new Error('connection lost mid-list');
        page(kvs.slice(i, i + 2));
      }
      return '10';
    },
    async watch(_p: string, _r: string, h: { broken(e: Error): void }) {
      broken = h.broken;
      return { cancel: async () => undefined };
    },
  });
  let broken: ((e: Error) => void) | undefined;
  return { store, breakWatch: () => broken?.(new Error('compacted')) };
}

describe('ListWatcher lists page by page', () => {
  it('delivers every key once, removes what vanished only after a complete listing, and re-delivers only changed values', async () => {
    const data = new Map(Array.from({ length: 7 }, (_, i) => [`p/k${i}`, `v${i}`] as [string, string]));
    const { store, breakWatch } = pagedStore(data);
    const seen: string[] = [];
    const lw = new ListWatcher(store, 'p/', { upsert: (k, v) => seen.push(`+${k}=${v}`), remove: (k) => seen.push(`-${k}`) });
    void lw.start();
    await lw.firstSync();
    expect(seen).toEqual([...data].map(([k, v]) => `+${k}=${v}`));
    seen.length = 0;
    // a relist that fails half way removes nothing; the next complete one removes k6 and sends k0's change only
    data.delete('p/k6');
    data.set('p/k0', 'changed');
    store.failAfter = 2;
    breakWatch();
    await vi.waitFor(() => expect(lw.lastError).toBe('connection lost mid-list'));
    expect(seen).toEqual(['+p/k0=changed']);
    store.failAfter = Infinity;
    await vi.waitFor(() => expect(seen).toEqual(['+p/k0=changed', '-p/k6']));
    expect(lw.keys().sort()).toEqual([...data.keys()].sort());
    await lw.stop();
  });
});

describe('ListWatcher and records the store refuses while listing', () => {
  it('counts them, and a key whose value is refused keeps its previous value instead of being removed', async () => {
    const data = new Map([['p/a', '1'], ['p/b', '2']]);
    const { store, breakWatch } = pagedStore(data);
    const state = new Map<string, string>();
    const lw = new ListWatcher(store, 'p/', { upsert: (k, v) => state.set(k, v), remove: (k) => state.delete(k) });
    void lw.start();
    await lw.firstSync();
    store.refuse.add('p/a');
    breakWatch();
    await vi.waitFor(() => expect(store.lists).toBe(2));
    await vi.waitFor(() => expect(lw.rejectedEvents).toBe(1));
    expect([...state]).toEqual([['p/a', '1'], ['p/b', '2']]);
    await lw.stop();
  });
});
