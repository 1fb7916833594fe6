// The bound on one node's admitted endpoints (src/agent/endpointquota.ts, docs/security.md), as the attacker
// of the last review: a node with its own credentials registered 200,000 endpoints under its own name and
// every agent admitted them all. Expectations written from docs/security.md: at most the bound admitted per
// node, the rest refused alone (`budget`, counted once each, logged at a bounded rate) and held back, admitted
// when room frees (the one that waited longest first); other nodes unaffected.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Admission } from '../../src/agent/admission.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { DEFAULT_MAX_ENDPOINTS_PER_NODE, EndpointQuota } from '../../src/agent/endpointquota.js';
import { Rejections, LOGGED_PER_MINUTE } from '../../src/controlplane/records/rejections.js';
import { Trust } from '../../src/controlplane/records/trust.js';
import type { EndpointRecord, NodeRecord } from '../../src/controlplane/records/index.js';
import type { Logger } from '../../src/log.js';
import { prng } from '../helpers/prng.js';

const nodeKey = (n: string) => `wiremesh/cache/nodes/v1/c2/${n}`;
const epKey = (n: string, ip: string) => `wiremesh/cache/ip/v2/c2/${n}/${ip}`;
const node = (name: string, podCIDRs: string[], i: number): NodeRecord => ({ cluster: 'c2', clusterId: 2, name, addresses: [`198.18.2.${10 + i}`], port: 51820, publicKey: Buffer.alloc(32, i + 1).toString('base64'), podCIDRs, bootId: '1' });
const ep = (nodeName: string, ip: string): EndpointRecord => ({ ip, cluster: 'c2', node: nodeName, namespace: 'ns', name: `p-${ip.replace(/[.:]/g, '-')}`, labels: { app: 'x' } });
/** The i-th address of 100.66.<n>.0/16-ish space: node a owns 100.66.0.0/17, node b 100.66.128.0/17. */
const addr = (base: number, i: number) => `100.66.${base + (i >> 8)}.${i & 255}`;

function setup(max?: number, log?: Logger) {
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
  const rejections = new Rejections(log);
  const seen = new Map<string, EndpointRecord>();
  const a = new Admission(trust, rejections, { node: () => {}, endpoint: (k, r) => (r ? seen.set(k, r) : seen.delete(k)), identity: () => {}, relay: () => {} }, undefined, max);
  a.upsert('node', nodeKey('a'), 'c2', node('a', ['100.66.0.0/17'], 0));
  a.upsert('node', nodeKey('b'), 'c2', node('b', ['100.66.128.0/17'], 1));
  const budget = () => rejections.rows().find((r) => r.type === 'endpoint' && r.reason === 'budget')?.count ?? 0;
  const of = (n: string) => [...seen.keys()].filter((k) => k.includes(`/c2/${n}/`));
  return { a, seen, rejections, budget, of };
}

describe('the bound on a node\'s endpoints', () => {
  it('regression: a node registering bound + N endpoints gets exactly the bound admitted; N refused, counted, held back; another node unaffected', () => {
    const { a, rejections, budget, of } = setup();
    const max = DEFAULT_MAX_ENDPOINTS_PER_NODE;
    const N = 3000;
    for (let i = 0; i < max + N; i++) a.upsert('endpoint', epKey('a', addr(0, i)), 'c2', ep('a', addr(0, i)));
    for (let i = 0; i < 100; i++) a.upsert('endpoint', epKey('b', addr(128, i)), 'c2', ep('b', addr(128, i)));
    expect(of('a').length).toBe(max); // before: all 4,024
    expect(of('b').length).toBe(100);
    expect(budget()).toBe(N);
    // one detail for every refusal at the bound (kept per refused key: a text per key made one cost ~2x an admitted one)
    expect(rejections.recent.at(-1)).toMatchObject({ origin: 'c2', type: 'endpoint', reason: 'budget', detail: a.quota.refusal });
    expect(a.quota.status()).toEqual({ maxEndpointsPerNode: max, heldBack: { c2: N }, nodesOverBound: [{ node: 'c2/a', admitted: max, heldBack: N }] });
    // the first ones keep their places: an admitted endpoint is never displaced by a newer one
    expect(of('a')).toEqual(Array.from({ length: max }, (_, i) => epKey('a', addr(0, i))));
    // seen again (a relist, an update): counted once, still held back
    a.recheck('c2');
    expect(budget()).toBe(N);
    expect(of('a').length).toBe(max);
    // the same record again (a relist) is no new refusal; a new incarnation is, and waits anew (behind the others)
    const last = epKey('a', addr(0, max + N - 1));
    a.upsert('endpoint', last, 'c2', ep('a', addr(0, max + N - 1)));
    expect(budget()).toBe(N);
    a.upsert('endpoint', last, 'c2', ep('a', addr(0, max + N - 1)), true);
    expect(budget()).toBe(N + 1);
    expect(a.quota.status().heldBack).toEqual({ c2: N });
  });

  it('deletion frees room: the endpoint held back longest is admitted, one per freed place', () => {
    const { a, seen, budget, of } = setup(4);
    for (const i of [0, 1, 2, 3, 9, 7, 8]) a.upsert('endpoint', epKey('a', addr(0, i)), 'c2', ep('a', addr(0, i)));
    expect(budget()).toBe(3);
    a.remove('endpoint', epKey('a', addr(0, 1)));
    expect(seen.has(epKey('a', addr(0, 9)))).toBe(true); // held back first, not the lowest key
    expect(of('a').length).toBe(4);
    // a held-back one deleted leaves the queue; a withdrawn one (refused update of a new incarnation) frees room too
    a.remove('endpoint', epKey('a', addr(0, 7)));
    a.upsert('endpoint', epKey('a', addr(0, 2)), 'c2', { ...ep('a', addr(0, 2)), ip: '100.66.200.1' }, true);
    expect(seen.has(epKey('a', addr(0, 2)))).toBe(false);
    expect(seen.has(epKey('a', addr(0, 8)))).toBe(true);
    expect(a.quota.status().heldBack).toEqual({});
    a.upsert('endpoint', epKey('a', addr(0, 10)), 'c2', ep('a', addr(0, 10)));
    expect(a.quota.status().heldBack).toEqual({ c2: 1 });
    // the node going withdraws all; back, it is filled again up to the bound, in the order the keys came
    a.remove('node', nodeKey('a'));
    expect(a.quota.status().heldBack).toEqual({});
    expect(of('a')).toEqual([]);
    a.upsert('node', nodeKey('a'), 'c2', node('a', ['100.66.0.0/17'], 0));
    expect(of('a')).toEqual([0, 3, 9, 8].map((i) => epKey('a', addr(0, i)))); // addr 2 (reborn, now outside): a claim refused, not held
    expect(a.quota.status().heldBack).toEqual({ c2: 1 });
  });

  // Rejections counts log lines per calendar minute (Date.now() / 60 s): the clock is held still inside one minute,
  // or a run that crossed a minute's end logged a second minute's lines (10 + 1 + 10 > 11; it failed once so)
  afterEach(() => void vi.useRealTimers());
  const lineCounter = () => {
    const lines: string[] = [];
    const fields: Array<Record<string, unknown>> = [];
    const log = { warn: (o: Record<string, unknown>, m: string) => void (lines.push(m), fields.push(o)), info: () => {}, error: () => {}, debug: () => {} } as unknown as Logger;
    return { lines, fields, log };
  };

  it('20,000 refusals log at most LOGGED_PER_MINUTE lines a minute (per origin, type, reason)', () => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2026-12-04T11:00:30Z') });
    const { lines, log } = lineCounter();
    const { a, budget } = setup(1, log);
    a.upsert('endpoint', epKey('a', addr(0, 0)), 'c2', ep('a', addr(0, 0)));
    for (let i = 1; i <= 20_000; i++) a.upsert('endpoint', epKey('a', addr(0, i)), 'c2', ep('a', addr(0, i)));
    expect(budget()).toBe(20_000);
    expect(lines.length).toBe(LOGGED_PER_MINUTE);
  });

  it('the next minute: one line counts what the last one did not log, then LOGGED_PER_MINUTE lines again', () => {
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2026-12-04T11:00:59Z') });
    const { lines, fields, log } = lineCounter();
    const { a } = setup(1, log);
    a.upsert('endpoint', epKey('a', addr(0, 0)), 'c2', ep('a', addr(0, 0)));
    for (let i = 1; i <= 100; i++) a.upsert('endpoint', epKey('a', addr(0, i)), 'c2', ep('a', addr(0, i)));
    vi.setSystemTime(new Date('2026-12-04T11:01:00Z'));
    for (let i = 101; i <= 200; i++) a.upsert('endpoint', epKey('a', addr(0, i)), 'c2', ep('a', addr(0, i)));
    const refused = Array(LOGGED_PER_MINUTE).fill('record rejected');
    expect(lines).toEqual([...refused, 'more records rejected (not logged one by one)', ...refused]);
    expect(fields[LOGGED_PER_MINUTE]).toMatchObject({ origin: 'c2', type: 'endpoint', reason: 'budget', suppressed: 100 - LOGGED_PER_MINUTE });
  });

  it('agent config: admission.maxEndpointsPerNode, 1024 by default, at least 1', () => {
    const base = 'cluster: { name: c1, id: 1 }\nnode: { name: n1, addresses: [198.18.1.10], podCIDRs: [100.65.1.0/24] }\netcd: { endpoints: [http://198.18.1.2:2379] }\n';
    expect(parseAgentConfig(base).admission).toEqual({ maxEndpointsPerNode: 1024 });
    expect(parseAgentConfig(base + 'admission: { maxEndpointsPerNode: 300 }\n').admission).toEqual({ maxEndpointsPerNode: 300 });
    expect(() => parseAgentConfig(base + 'admission: { maxEndpointsPerNode: 0 }\n')).toThrow(/admission.maxEndpointsPerNode/);
    expect(() => parseAgentConfig(base + 'admission: { maxEndpointsPerNod: 5 }\n')).toThrow(/admission/);
  });

  for (const seed of [7, 8]) {
    it(`the held-back queue keeps first-held-first order through deletes and its rebuilds (seed ${seed})`, () => {
      const rand = prng(seed);
      const q = new EndpointQuota(1, () => 0); // (no endpoint admitted: the held-back queue alone)
      const model: string[] = [];
      for (let step = 0; step < 20_000; step++) {
        const k = `wiremesh/cache/ip/v2/c2/a/100.66.0.${Math.floor(rand() * 400)}`;
        const r = rand();
        if (r < 0.5) {
          q.holdBack('c2/a', k);
          if (!model.includes(k)) model.push(k);
        } else if (r < 0.8) {
          q.release('c2/a', k);
          if (model.includes(k)) model.splice(model.indexOf(k), 1);
        } else expect(q.next('c2/a')).toBe(model.shift());
        expect(q.status().heldBack).toEqual(model.length ? { c2: model.length } : {});
      }
    });
  }

  // The invariants on seeded random sequences (a failure reproduces from its seed): per node at most the bound
  // admitted; work-conserving (a node under its bound holds no endpoint back); every admitted endpoint holds;
  // node b, always under its bound, admits exactly its valid endpoints whatever node a does.
  for (const seed of [1, 2, 3, 42, 9001]) {
    it(`random changes keep every node within its bound, and the others whole (seed ${seed})`, () => {
      const rand = prng(seed);
      const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const MAX = 5;
      const { a, seen, of } = setup(MAX);
      const cidrs: Record<string, string[]> = { a: ['100.66.0.0/28'], b: ['100.66.128.0/28'] };
      const nodes = new Set(['a', 'b']);
      for (const [i, n] of ['a', 'b'].entries()) a.upsert('node', nodeKey(n), 'c2', node(n, cidrs[n]!, i));
      const cand = new Map<string, string>(); // key -> ip
      const keys = ['a', 'b'].flatMap((n) => Array.from({ length: 20 }, (_, i) => [n, epKey(n, addr(n === 'a' ? 0 : 128, i))] as const));
      const inside = (n: string, ip: string) => Number(ip.split('.')[3]) < (cidrs[n]![0]!.endsWith('/28') ? 16 : 8);
      for (let step = 0; step < 600; step++) {
        const r = rand();
        const [n, k] = pick(keys);
        if (r < 0.5) {
          // node b stays under its bound: at most 4 of its endpoints exist
          if (n === 'b' && !cand.has(k) && [...cand.keys()].filter((x) => x.includes('/c2/b/')).length >= MAX - 1) continue;
          const ip = k.slice(k.lastIndexOf('/') + 1);
          a.upsert('endpoint', k, 'c2', ep(n, ip), rand() < 0.2);
          cand.set(k, ip);
        } else if (r < 0.8) {
          a.remove('endpoint', k);
          cand.delete(k);
        } else if (r < 0.9) {
          // node a shrinks or grows its pod CIDR (a /29 holds fewer of its endpoints)
          cidrs.a = [rand() < 0.5 ? '100.66.0.0/29' : '100.66.0.0/28'];
          if (nodes.has('a')) a.upsert('node', nodeKey('a'), 'c2', node('a', cidrs.a, 0));
        } else if (nodes.has('a')) {
          a.remove('node', nodeKey('a'));
          nodes.delete('a');
        } else {
          a.upsert('node', nodeKey('a'), 'c2', node('a', cidrs.a!, 0));
          nodes.add('a');
        }
        for (const nn of ['a', 'b']) {
          const valid = [...cand].filter(([x, ip]) => x.includes(`/c2/${nn}/`) && nodes.has(nn) && inside(nn, ip)).map(([x]) => x);
          const admitted = of(nn);
          expect(admitted.length).toBe(Math.min(MAX, valid.length));
          expect(admitted.every((x) => valid.includes(x))).toBe(true);
          for (const x of admitted) expect(seen.get(x)!.ip).toBe(cand.get(x));
        }
        const held = [...cand].filter(([x, ip]) => x.includes('/c2/a/') && nodes.has('a') && inside('a', ip)).length - of('a').length;
        expect(a.quota.status().heldBack).toEqual(held > 0 ? { c2: held } : {});
      }
    });
  }
});
