// What a node over its endpoint bound costs every agent (endpointquota.ts, docs/security.md "Bounds"): as the
// attacker, a node with its own credentials writes bound + N endpoints with large records. Before, every agent kept
// all N held-back records in memory (for our own cluster bounded only by etcd's quota); now at most
// HELD_VALUES_PER_NODE of them, the others as keys only, read again (one point read each) when their turn comes.
// Real ListWatcher, decoding sink and compact key forms over an in-memory etcd (MemKV). Oracle, from the docs: the
// first-held-first order of admission is kept; what is admitted is what etcd holds then (a record changed while
// held as a key is admitted with its new value, never the old one); each refusal counted once; reads no more
// than the room freed; a node under its bound is untouched (nothing read, every record kept).
import { describe, expect, it, vi } from 'vitest';
import { Admission } from '../../src/agent/admission.js';
import { HELD_VALUES_PER_NODE } from '../../src/agent/endpointquota.js';
import { refetcher, type ReadKey } from '../../src/agent/refetch.js';
import { decoded, ListWatcher } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { endpointCodec, type EndpointRecord, type NodeRecord } from '../../src/controlplane/records/index.js';
import { Rejections } from '../../src/controlplane/records/rejections.js';
import { Trust } from '../../src/controlplane/records/trust.js';
import { silentLogger } from '../../src/log.js';

const MAX = 8;
const N = 200;
const nodeKey = (n: string) => `wiremesh/cache/nodes/v1/c2/${n}`;
const epKey = (n: string, ip: string) => `wiremesh/cache/ip/v2/c2/${n}/${ip}`;
const node = (name: string, podCIDRs: string[], i: number): NodeRecord => ({ cluster: 'c2', clusterId: 2, name, addresses: [`198.18.2.${10 + i}`], port: 51820, publicKey: Buffer.alloc(32, i + 1).toString('base64'), podCIDRs, bootId: '1' });
// large records: 40 labels of 60 bytes each
const labels = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`l${i}`, 'v'.repeat(60)]));
const ep = (n: string, ip: string, app = 'x'): EndpointRecord => ({ ip, cluster: 'c2', node: n, namespace: 'ns', name: `p-${ip.replace(/\./g, '-')}`, labels: { ...labels, app } });
const addr = (base: number, i: number) => `100.66.${base + (i >> 8)}.${i & 255}`;
const soon = { timeout: 5000, interval: 5 };

async function setup() {
  const kv = new MemKV();
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
  const rejections = new Rejections();
  const admitted = new Map<string, EndpointRecord>();
  const a = new Admission(trust, rejections, { node: () => {}, endpoint: (k, r) => void (r ? admitted.set(a.endpointKeys.full(k), r) : admitted.delete(a.endpointKeys.full(k))), identity: () => {}, relay: () => {} }, undefined, MAX);
  a.upsert('node', nodeKey('a'), 'c2', node('a', ['100.66.0.0/17'], 0));
  a.upsert('node', nodeKey('b'), 'c2', node('b', ['100.66.128.0/17'], 1));
  const sink = decoded(endpointCodec, { upsert: (k, v, reborn) => a.upsert('endpoint', k, 'c2', v, reborn), remove: (k) => a.remove('endpoint', k) }, rejections, () => 'c2', a.endpointKeys);
  const w = new ListWatcher(kv, 'wiremesh/cache/ip/', sink);
  const reads: string[] = [];
  const read: ReadKey = async (key) => {
    reads.push(key);
    const e = kv.get(key);
    return e && { key, value: e.value, createRevision: String(e.createRevision) };
  };
  a.quota.refetch = refetcher(read, [w], (f) => a.endpointKeys.full(f), silentLogger);
  /** Endpoint records admission holds (candidates, admitted or not) per node. */
  const held = (n: string) => [...(a as unknown as { cand: { endpoint: Iterable<[string, unknown]> } }).cand.endpoint].filter(([k]) => a.endpointKeys.full(k).includes(`/c2/${n}/`)).length;
  const budget = () => rejections.rows().find((r) => r.type === 'endpoint' && r.reason === 'budget')?.count ?? 0;
  const of = (n: string) => [...admitted.keys()].filter((k) => k.includes(`/c2/${n}/`));
  return { kv, a, w, reads, held, budget, of, admitted };
}

describe("a node over its endpoint bound costs every agent keys, not records, past a few", () => {
  it('the attacker: bound + N large records; at most HELD_VALUES_PER_NODE kept; each admitted in turn with what etcd holds then', async () => {
    const f = await setup();
    for (let i = 0; i < MAX + N; i++) await f.kv.put(epKey('a', addr(0, i)), endpointCodec.encode(ep('a', addr(0, i))));
    // the first list hands them over in key order: the order they are admitted and held back in
    const order = Array.from({ length: MAX + N }, (_, i) => addr(0, i)).sort((x, y) => (epKey('a', x) < epKey('a', y) ? -1 : 1));
    for (let i = 0; i < 5; i++) await f.kv.put(epKey('b', addr(128, i)), endpointCodec.encode(ep('b', addr(128, i))));
    void f.w.start();
    await f.w.firstSync();
    expect(f.of('a')).toHaveLength(MAX);
    expect(f.budget()).toBe(N);
    // before: MAX + N records held for node a; now the admitted ones and HELD_VALUES_PER_NODE held back
    expect(f.held('a')).toBe(MAX + HELD_VALUES_PER_NODE);
    expect(f.held('b')).toBe(5);
    expect(f.a.quota.status().heldBack).toEqual({ c2: N });

    // a record held as a key only changes meanwhile: the watch's value is the one admitted at its turn
    const changed = epKey('a', order[MAX + HELD_VALUES_PER_NODE + 1]!);
    await f.kv.put(changed, endpointCodec.encode(ep('a', order[MAX + HELD_VALUES_PER_NODE + 1]!, 'changed')));
    expect(f.held('a')).toBe(MAX + HELD_VALUES_PER_NODE); // came in, held back again as a key
    expect(f.budget()).toBe(N); // not counted again

    // room frees one place at a time: the held-back endpoints are admitted in the order they were held back
    for (let i = 0; i < N; i++) {
      await f.kv.delete(epKey('a', order[i]!));
      const next = epKey('a', order[MAX + i]!);
      await vi.waitFor(() => expect(f.admitted.has(next), `turn ${i}`).toBe(true), soon);
      if (next === changed) expect(f.admitted.get(changed)?.labels.app).toBe('changed');
      expect(f.of('a')).toHaveLength(MAX);
      expect(f.held('a')).toBeLessThanOrEqual(MAX + HELD_VALUES_PER_NODE);
    }
    // each admitted record is what etcd holds
    for (const [k, r] of f.admitted) expect(endpointCodec.encode(r)).toBe(f.kv.get(k)!.value);
    // reads: only of keys held without their record, one per place freed at most; none of node b's
    expect(f.reads.length).toBeLessThanOrEqual(N);
    expect(f.reads.length).toBeGreaterThanOrEqual(N - HELD_VALUES_PER_NODE - 1);
    expect(f.reads.filter((k) => k.includes('/c2/b/'))).toEqual([]);
    expect(f.budget()).toBe(N);
    expect(f.a.quota.status().heldBack).toEqual({});
    await f.w.stop();
  });

  it('its node withdrawn and back: the held-back keys keep their places unread; the node is filled up to its bound again', async () => {
    const f = await setup();
    for (let i = 0; i < MAX + 100; i++) await f.kv.put(epKey('a', addr(0, i)), endpointCodec.encode(ep('a', addr(0, i))));
    void f.w.start();
    await f.w.firstSync();
    f.a.remove('node', nodeKey('a'));
    expect(f.of('a')).toEqual([]);
    expect(f.reads).toEqual([]); // before the drain's guard: every key held without its record was read here
    expect(f.held('a')).toBe(MAX + HELD_VALUES_PER_NODE);
    f.a.upsert('node', nodeKey('a'), 'c2', node('a', ['100.66.0.0/17'], 0));
    expect(f.of('a')).toHaveLength(MAX);
    expect(f.a.quota.status().heldBack).toEqual({ c2: 100 });
    expect(f.reads).toEqual([]);
    await f.w.stop();
  });

  it('a key asked for again that was deleted meanwhile holds no place: the next one is admitted', async () => {
    const f = await setup();
    const n = MAX + HELD_VALUES_PER_NODE + 3;
    const order = Array.from({ length: n }, (_, i) => addr(0, i)).sort((x, y) => (epKey('a', x) < epKey('a', y) ? -1 : 1));
    for (const ip of order) await f.kv.put(epKey('a', ip), endpointCodec.encode(ep('a', ip)));
    void f.w.start();
    await f.w.firstSync();
    // free the places of the kept ones, so the next turn is a key held without its record
    for (let i = 0; i < HELD_VALUES_PER_NODE; i++) await f.kv.delete(epKey('a', order[i]!));
    await vi.waitFor(() => expect(f.of('a')).toContain(epKey('a', order[MAX + HELD_VALUES_PER_NODE - 1]!)), soon);
    expect(f.reads).toEqual([]); // the kept ones came in without a read
    // the first key-only one deleted before its turn; then a place frees: the one after it comes in
    await f.kv.delete(epKey('a', order[MAX + HELD_VALUES_PER_NODE]!));
    await f.kv.delete(epKey('a', order[HELD_VALUES_PER_NODE]!));
    await vi.waitFor(() => expect(f.of('a')).toContain(epKey('a', order[MAX + HELD_VALUES_PER_NODE + 1]!)), soon);
    expect(f.of('a')).toHaveLength(MAX);
    await f.w.stop();
  });
});
