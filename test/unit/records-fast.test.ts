/**
 * The hand-written fast paths (src/controlplane/records/fast.ts) against their zod schemas, the reference: on
 * seeded random valid records and their mutations (fields replaced by tricky values, removed, added; label sets
 * and address lists bent), a fast path may only answer a value zod accepts, and then exactly zod's output (keys,
 * their order, no extra undefined keys); whatever it leaves, zod decides. The codecs built on them accept and
 * refuse exactly what zod and the key check do.
 */
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import {
  endpointCheckCodec,
  endpointCodec,
  endpointSchema,
  fastEndpoint,
  fastIdentity,
  fastNode,
  identityCodec,
  identitySchema,
  nodeCheckCodec,
  nodeCodec,
  nodeSchema,
  tryDecode,
  type Codec,
} from '../../src/controlplane/records/index.js';
import { prng } from '../helpers/prng.js';

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

const STRINGS = ['', 'a', 'A', '-a', 'a-', 'a.b', 'a_b', 'a/b', 'x'.repeat(63), 'x'.repeat(64), 'x'.repeat(254), 'c2', 'n1', '__proto__', 'constructor', 'toString', 'é', ' a', 'a ', '1', '01', 'a--b', 'ab.'];
const IPS = ['100.64.0.10', '198.18.0.1', '0.0.0.0', '255.255.255.255', '256.1.1.1', '01.2.3.4', '1.2.3', '1.2.3.4.5', '1.2.3.04', 'fd64::1', 'fd64:0::1', 'FD64::1', '::ffff:1.2.3.4', '::ffff:102:304', '::', '::1', '1::', 'fe80::1%eth0', '1.2.3.4/32', ' 1.2.3.4', '1.2.3.4 ', '١.2.3.4'];
const CIDRS = ['100.64.0.0/24', '100.64.0.1/24', '100.64.0.0/32', '100.64.0.0/33', '100.64.0.0/0', '100.64.0.0/032', '100.64.0.0/', '100.64.0.0', '/24', 'fd64::/64', 'fd64::1/128', 'fd64::/129', '01.2.3.4/8', '1.2.3.4/08', '::ffff:1.2.3.4/120'];
const NUMBERS = [0, -0, 1, -1, 1.5, 255, 256, 511, 512, 65535, 65536, 2 ** 24 - 1, 2 ** 24, 2 ** 53, 1e300, -1e300];
const KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

function oddValue(r: Rand): unknown {
  switch (Math.floor(r() * 8)) {
    case 0:
      return pick(r, STRINGS);
    case 1:
      return pick(r, IPS);
    case 2:
      return pick(r, CIDRS);
    case 3:
      return pick(r, NUMBERS);
    case 4:
      return pick(r, [null, true, false, {}, [], [1], ['a']]);
    case 5:
      return [pick(r, IPS), pick(r, CIDRS)];
    case 6:
      return labelSetOf(r, Math.floor(r() * 4));
    default:
      return String(Math.floor(r() * 1e6));
  }
}

/** Sets an own property, "__proto__" included (a plain assignment would set the prototype). */
function setOwn(o: object, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function labelSetOf(r: Rand, n: number): Record<string, unknown> {
  const l: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) setOwn(l, r() < 0.8 ? `k${i}` : pick(r, ['io.cilium.k8s.namespace.labels.team', 'example.com/app', '7', '10', 'constructor', 'a'.repeat(64), 'a/b/c', 'A_b', '__proto__']), r() < 0.85 ? `v${Math.floor(r() * 50)}` : oddValue(r));
  return l;
}

/** The JSON text of a random record of the kind, valid unless mutated; mutations may reach into labels and lists. */
function sample(kind: 'node' | 'endpoint' | 'identity', r: Rand): string {
  const c = `c${1 + Math.floor(r() * 20)}`;
  const base: Record<string, unknown> =
    kind === 'node'
      ? { cluster: c, clusterId: 1 + Math.floor(r() * 20), name: `n${Math.floor(r() * 100)}`, addresses: ['198.18.0.1'], port: 51820, publicKey: KEY, podCIDRs: ['100.64.0.0/24'], bootId: String(Math.floor(r() * 1e13)) }
      : kind === 'endpoint'
        ? { ip: `100.64.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}`, cluster: c, node: `n${Math.floor(r() * 100)}`, namespace: 'bench', name: `p${Math.floor(r() * 100)}`, labels: labelSetOf(r, Math.floor(r() * 5)) }
        : { id: 256 + Math.floor(r() * 100_000), labels: labelSetOf(r, Math.floor(r() * 5)) };
  if (kind === 'endpoint' && r() < 0.3) base.identity = 256 + Math.floor(r() * 1000);
  if (kind === 'endpoint' && r() < 0.15) base.ports = r() < 0.7 ? [{ name: 'http', containerPort: 8080 }] : [{ name: 'http', containerPort: 80 }, { name: 'http', containerPort: 81, protocol: 'UDP' }];
  if (kind === 'node' && r() < 0.3) base.addresses = ['198.18.0.1', pick(r, IPS)];
  if (kind === 'node' && r() < 0.3) base.podCIDRs = [pick(r, CIDRS)];
  const mutations = r() < 0.3 ? 0 : 1 + Math.floor(r() * 3);
  const fields = Object.keys(base);
  for (let m = 0; m < mutations; m++) {
    const f = pick(r, [...fields, 'extra', '__proto__', 'labels', 'addresses']);
    const op = r();
    if (op < 0.15) Reflect.deleteProperty(base, f);
    else if (op < 0.3 && f !== '__proto__' && base[f] && typeof base[f] === 'object') setOwn(base[f] as object, pick(r, ['0', '1', '__proto__', 'x', 'constructor']), oddValue(r));
    else if (op < 0.4 && Array.isArray(base[f])) base[f] = Array.from({ length: pick(r, [0, 16, 17]) }, () => (base[f] as unknown[])[0]);
    else if (op < 0.45 && f === 'labels') base[f] = labelSetOf(r, pick(r, [64, 65]));
    else setOwn(base, f, oddValue(r));
  }
  // JSON text, as etcd hands it over: a "__proto__" key is an own property again, as JSON.parse makes it
  return JSON.stringify(base);
}

function keyOf(kind: 'node' | 'endpoint' | 'identity', raw: unknown): string {
  const v = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  if (kind === 'node') return `wiremesh/state/nodes/v1/${String(v.cluster)}/${String(v.name)}`;
  if (kind === 'endpoint') return `wiremesh/state/ip/v2/${String(v.cluster)}/${String(v.node)}/${String(v.ip)}`;
  return `wiremesh/state/identities/v1/c1/${String(v.id)}`;
}

const CASES = [
  { kind: 'node', schema: nodeSchema, fast: fastNode, codecs: [nodeCheckCodec, nodeCodec] },
  { kind: 'endpoint', schema: endpointSchema, fast: fastEndpoint, codecs: [endpointCheckCodec, endpointCodec] },
  { kind: 'identity', schema: identitySchema, fast: fastIdentity, codecs: [identityCodec] },
] as const;
type FastCase = (typeof CASES)[number];

describe('record fast paths against zod (the reference)', () => {
  for (const { kind, schema, fast, codecs } of CASES) {
    it(`${kind}: the same output as zod, or zod decides (seeded random and mutated records)`, () => {
      for (const seed of [1, 2, 3, 4]) {
        const r = prng(seed * 7919);
        let fastAnswered = 0;
        let zodAccepted = 0;
        for (let i = 0; i < 2000; i++) {
          const text = sample(kind, r);
          const raw: unknown = JSON.parse(text);
          const ref = (schema as z.ZodType<unknown>).safeParse(raw);
          const got = (fast as (v: unknown) => unknown)(raw);
          if (ref.success) zodAccepted++;
          if (got !== undefined) {
            fastAnswered++;
            expect(ref.success, `seed ${seed} #${i}: fast path accepted what zod refuses: ${text}`).toBe(true);
            expect(got, `seed ${seed} #${i}: ${text}`).toStrictEqual(ref.data);
            expect(JSON.stringify(got), `seed ${seed} #${i}: key order`).toBe(JSON.stringify(ref.data));
          }
          // the codecs: accepted iff zod accepts and the key agrees; a schema refusal is zod's own message
          const key = keyOf(kind, raw);
          for (const codec of codecs as readonly Codec<unknown>[]) {
            const d = tryDecode(codec, key, text);
            if (!ref.success) expect(d.ok ? 'accepted' : d.error.reason, `seed ${seed} #${i}: ${text}`).toBe('schema');
            else if (d.ok) expect(JSON.stringify(d.value)).toBe(JSON.stringify(ref.data));
            else expect(d.error.reason, `seed ${seed} #${i}: ${text}`).toBe('key');
          }
        }
        // not vacuous: both sides see plenty of valid records, and the fast path answers most of them
        expect(zodAccepted).toBeGreaterThan(400);
        expect(fastAnswered).toBeGreaterThan(zodAccepted * 0.6);
      }
    });
  }

  it('covers every field of its schema (a field added to a schema needs its fast path changed too)', () => {
    expect(Object.keys(nodeSchema.shape)).toEqual(['cluster', 'clusterId', 'name', 'addresses', 'port', 'publicKey', 'podCIDRs', 'bootId']);
    expect(Object.keys(endpointSchema.shape)).toEqual(['ip', 'cluster', 'node', 'namespace', 'name', 'labels', 'identity', 'ports']);
    expect(Object.keys(identitySchema.shape)).toEqual(['id', 'labels']);
  });

  it('agrees with zod at each limit and one past it (label count, label key and value length, bootId, names)', () => {
    const labels = (n: number, key = (i: number) => `k${i}`, value = 'v') => Object.fromEntries(Array.from({ length: n }, (_, i) => [key(i), value]));
    const node = { cluster: 'c1', clusterId: 1, name: 'n1', addresses: ['198.18.0.1'], port: 51820, publicKey: KEY, podCIDRs: ['100.64.0.0/24'], bootId: '1' };
    const endpoint = { ip: '100.64.0.10', cluster: 'c1', node: 'n1', namespace: 'bench', name: 'p1', labels: {} };
    const values: Array<[FastCase, unknown]> = [];
    for (const d of [-1, 0, 1]) {
      values.push([CASES[2], { id: 300, labels: labels(64 + d) }], [CASES[1], { ...endpoint, labels: labels(64 + d) }]);
      values.push([CASES[0], { ...node, bootId: 'b'.repeat(64 + d) }], [CASES[0], { ...node, name: 'n'.repeat(253 + d) }]);
      for (const len of [63, 64, 253, 316, 317, 318]) {
        const k = (i: number) => `${'a'.repeat(Math.max(1, len + d - 2))}${i}`.slice(-(len + d));
        values.push([CASES[2], { id: 300, labels: labels(1, k) }], [CASES[1], { ...endpoint, labels: labels(1, k) }]);
      }
      values.push([CASES[2], { id: 300, labels: { a: 'v'.repeat(63 + d) } }], [CASES[1], { ...endpoint, labels: { a: 'v'.repeat(63 + d) } }]);
    }
    for (const [{ schema, fast }, raw] of values) {
      const ref = (schema as z.ZodType<unknown>).safeParse(raw);
      const got = (fast as (v: unknown) => unknown)(raw);
      if (got !== undefined) {
        expect(ref.success, `fast path accepted what zod refuses: ${JSON.stringify(raw).slice(0, 200)}`).toBe(true);
        expect(JSON.stringify(got)).toBe(JSON.stringify(ref.data));
      }
    }
  });

  it('leaves to zod what zod accepts in its own ways (a __proto__ label is dropped, IPv6 and odd prefixes checked the long way)', () => {
    const withProto = JSON.parse('{"id":300,"labels":{"__proto__":"x","a":"b"}}') as unknown;
    expect(fastIdentity(withProto)).toBeUndefined();
    expect(identitySchema.safeParse(withProto).success).toBe(true);
    const node = { cluster: 'c1', clusterId: 1, name: 'n1', addresses: ['fd64::1'], port: 1, publicKey: KEY, podCIDRs: ['fd64::/64', '100.64.0.0/032'], bootId: '1', extra: 1 };
    expect(fastNode(node)).toStrictEqual(nodeSchema.parse(node));
    expect(fastNode({ ...node, addresses: ['::ffff:1.2.3.4'] })).toBeUndefined();
  });
});
