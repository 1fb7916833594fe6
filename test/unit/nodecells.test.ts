// A node's table as cells (src/agent/nodecells.ts) against a Map as the oracle on seeded random sequences: keys that
// are short IPv4 forms of one base (cells), of another base or plain texts (the table falls back to a KeyTable and
// comes back), packed records whose address is the key's or not, other values held as they are, across SMALL_MAX
// both ways. Same values (a packed record back field for field, its labels and ports the very objects), same order.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MAX_POOLED, MAX_STEMS, NodeCells, ntDelete, ntEntries, ntGet, ntKeys, ntSet, ntSize, pooledProfiles, suffixCode, suffixOf, type NodeTable } from '../../src/agent/nodecells.js';
import { formatIPv4Value } from '../../src/net/ip.js';
import { SMALL_MAX } from '../../src/agent/keytable.js';
import { packEndpoint, PackedEndpoint } from '../../src/agent/packedendpoint.js';
import { shortIPv4Form } from '../../src/controlplane/compactkeys.js';
import { internLabels, internList } from '../../src/controlplane/records/intern.js';
import { prng } from '../helpers/prng.js';

/** A value as the oracle compares it: a packed record by its class and own fields (read back as a new object). */
function view(v: unknown): unknown {
  if (!(v instanceof PackedEndpoint)) return v;
  return { cls: v.constructor.name, ...Object.fromEntries(Object.entries(v)) };
}

/** Same value: === for anything but a packed record, whose fields must be === one by one. */
function same(a: unknown, b: unknown): boolean {
  if (!(a instanceof PackedEndpoint) || !(b instanceof PackedEndpoint)) return a === b;
  const ka = Object.keys(a);
  return a.constructor === b.constructor && ka.length === Object.keys(b).length && ka.every((k) => (a as unknown as Record<string, unknown>)[k] === (b as unknown as Record<string, unknown>)[k]);
}

describe('NodeCells', () => {
  // bases at both ends of the 3-character index; addresses at the ends of the space and across the sign bit (a cell
  // holds an address as a signed 32-bit Smi)
  for (const [seed, base] of [[1, 7], [2, 0], [3, 0xffffff], [42, 1], [9001, 0x800000]] as const) {
    it(`agrees with a Map on random changes (seed ${seed}, base ${base})`, () => {
      const rand = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const ends = [0, 0x7fffffff, 0x80000000, 0xffffffff, 0xc0a80001, 0x80000001];
      const addr = (i: number) => (i < ends.length ? ends[i]! : (0x64400000 + i) >>> 0);
      const ipText = (i: number) => formatIPv4Value(addr(i));
      // mostly one base; now and then another base or a plain text, which turns the table into a KeyTable
      const keys = Array.from({ length: SMALL_MAX * 2 }, (_, i) => shortIPv4Form(base, addr(i)));
      const odd = [shortIPv4Form(base ^ 1, addr(1)), 'wiremesh/cache/ip/v2/c1/n1/100.64.0.1', 'x'];
      const labels = [internLabels({ app: 'a' }), internLabels({ app: 'b', tier: 'web' })];
      const ports = [undefined, internList([{ name: 'http', port: 80, protocol: 'TCP' }])];
      const held = [{ held: 1 }, { held: 2 }, 'a string', 7];
      // names held as a stem and a suffix's number (1-5 of [0-9a-z] after the last '-', or the whole name) and names
      // held as strings (a suffix too long, empty or of other characters; a name of a number's text)
      const names: ((i: number) => string)[] = [
        (i) => `pod-${i}-${Math.floor(rand() * 4)}`, (i) => `web-7d9f8c6b5-${(i * 7919).toString(36).slice(-5)}`,
        () => pick(['0', 'zzzzz', '00000', 'a', 'x-0', '-z', 'a--b', '--', '-', '', 'abc-', 'web-zzzzzz', 'web-ABCDE', 'web-é', 'ds-4xq8n', '7', 'web-1.5']),
        (i) => `${'s'.repeat(i % 40)}-${i}`,
      ];
      const recordFor = (i: number, node: string) => {
        const rec: Record<string, unknown> = { ip: ipText(i), cluster: 'c1', node, namespace: pick(['default', 'kube-system']), name: pick(names)(i), labels: pick(labels) };
        if (rand() < 0.7) rec.identity = pick([0, 300, 2 ** 31 - 1]);
        const p = pick(ports);
        if (p) rec.ports = p;
        return packEndpoint(rec as never, `c1/${node}`);
      };
      let t: NodeTable | undefined;
      const m = new Map<string, unknown>();
      const seen = { cells: false, table: false, back: false, map: false };
      for (let step = 0; step < 3000; step++) {
        const fill = Math.floor(step / 500) % 2 === 0 ? 0.75 : 0.25;
        const useOdd = rand() < 0.03;
        const ki = Math.floor(rand() * keys.length);
        const k = useOdd ? pick(odd) : keys[ki]!;
        if (rand() < fill) {
          // a packed record of the key's address, of another address (held as is), or a value that is no record
          const r = rand();
          const v = r < 0.7 ? recordFor(ki, 'n1') : r < 0.8 ? recordFor(ki + 1, 'n1') : pick(held);
          expect(v).toBeDefined();
          t = ntSet(t, k, v);
          m.set(k, v);
        } else {
          t = ntDelete(t, k);
          m.delete(k);
        }
        seen.back ||= seen.table && t instanceof NodeCells;
        seen.cells ||= t instanceof NodeCells;
        seen.table ||= Array.isArray(t) && !(t instanceof NodeCells); // (a NodeCells is an Array too)
        seen.map ||= t instanceof Map;
        expect(ntSize(t), `seed ${seed} step ${step}`).toBe(m.size);
        expect(t === undefined).toBe(m.size === 0);
        expect([...ntKeys(t)]).toEqual([...m.keys()]);
        expect([...ntEntries(t)].map(([key, v]) => [key, view(v)])).toEqual([...m].map(([key, v]) => [key, view(v)]));
        expect(same(ntGet(t, k), m.get(k)), `seed ${seed} step ${step}`).toBe(true);
        for (const [key, v] of m) expect(same(ntGet(t, key), v)).toBe(true);
        // with a namespace: every entry of it, in order (the rest may come too: the caller filters)
        const ns = pick(['default', 'kube-system']);
        const of = (v: unknown) => !(v instanceof PackedEndpoint) || v.namespace === ns;
        const got = [...ntEntries(t, ns)];
        expect(got.filter(([, v]) => of(v)).map(([key]) => key)).toEqual([...m].filter(([, v]) => of(v)).map(([key]) => key));
        const all = [...m.keys()];
        expect(got.map(([key]) => all.indexOf(key))).toEqual(got.map(([key]) => all.indexOf(key)).sort((a, b) => a - b));
      }
      expect(seen).toEqual({ cells: true, table: true, back: true, map: true });
    });
  }

  it('holds a packed record as its address, name and one shared profile: no key string, no object per record', () => {
    const labels = internLabels({ app: 'web' });
    let t: NodeTable | undefined;
    for (let i = 0; i < 10; i++) {
      const rec = { ip: `100.64.0.${i}`, cluster: 'c1', node: 'n1', namespace: 'default', name: `web-${i}`, labels, identity: 300 };
      t = ntSet(t, shortIPv4Form(3, (0x64400000 + i) >>> 0), packEndpoint(rec, 'c1/n1'));
    }
    expect(t).toBeInstanceOf(NodeCells);
    const cells = [...(t as NodeCells)];
    expect(cells.length).toBe(30);
    // the names are the suffixes' numbers: no string per record
    expect(cells.filter((c) => typeof c === 'string')).toEqual([]);
    expect(new Set(cells.filter((c) => typeof c === 'object')).size).toBe(1);
    expect([...ntEntries(t)].map(([, v]) => (v as PackedEndpoint).name)).toEqual(Array.from({ length: 10 }, (_, i) => `web-${i}`));
    // a name that is no stem and suffix is held as its string, beside the others
    const rec = { ip: '100.64.0.10', cluster: 'c1', node: 'n1', namespace: 'default', name: 'web-ABCDEF', labels, identity: 300 };
    t = ntSet(t, shortIPv4Form(3, 0x6440000a), packEndpoint(rec, 'c1/n1'));
    expect((t as NodeCells).filter((c) => typeof c === 'string')).toEqual(['web-ABCDEF']);
  });

  it('is an Array of exactly its cells, whose slice, concat and filter are plain arrays (s37: NodeCells extends Array)', () => {
    const labels = internLabels({ app: 'sub' });
    const put = (t: NodeTable | undefined, i: number) =>
      ntSet(t, shortIPv4Form(5, 0x64410000 + i), packEndpoint({ ip: formatIPv4Value(0x64410000 + i), cluster: 'c1', node: 'n1', namespace: 'default', name: `sub-${i}`, labels, identity: 301 }, 'c1/n1'));
    let t: NodeTable | undefined;
    for (let i = 0; i < 6; i++) t = put(t, i);
    const cells = t as NodeCells;
    expect([cells instanceof NodeCells, Array.isArray(cells), cells.length, cells.base, Object.keys(cells).length]).toEqual([true, true, 18, 5, 18 + 2]);
    for (const made of [cells.slice(0, 3), cells.concat([1]), cells.filter(() => true)]) expect([made instanceof NodeCells, made.constructor]).toEqual([false, Array]);
    // Array's makers would call its constructor with Array's arguments (review of s37: NodeCells.of(9, 8, 7) had base 3)
    for (const f of [NodeCells.from, NodeCells.of] as Array<(...a: unknown[]) => unknown>) expect(() => f.call(NodeCells, 9, 8, 7)).toThrow(TypeError);
    // a delete at the start, in the middle and at the end: the rest in order, exactly sized, every slot filled
    for (const at of [0, 3, 5]) {
      const left = ntDelete(t, shortIPv4Form(5, 0x64410000 + at)) as NodeCells;
      expect([left.length, Object.keys(left).length - 2, left.base, left.admitted]).toEqual([15, 15, 5, 0]);
      expect([...ntEntries(left)].map(([, v]) => (v as PackedEndpoint).name)).toEqual([0, 1, 2, 3, 4, 5].filter((i) => i !== at).map((i) => `sub-${i}`));
    }
  });

  it('no two field sets share a profile: a stem and a namespace split differently, a name that is no string (review of s29)', () => {
    const labels = internLabels({ app: 'split' });
    const recs = [
      { ip: '100.66.0.1', cluster: 'c1', node: 'n1', namespace: 'system', name: 'kube-x2kjz', labels, identity: 300 },
      { ip: '100.66.0.2', cluster: 'c1', node: 'n1', namespace: 'kube-system', name: 'coredns', labels, identity: 300 },
      { ip: '100.66.0.3', cluster: 'c1', node: 'n1', namespace: 'e-system', name: 'kub-x2kjz', labels, identity: 300 },
      { ip: '100.66.0.4', cluster: 'c1', node: 'n1', namespace: 'system', name: 'x2kjz', labels, identity: 300 },
    ];
    let t: NodeTable | undefined;
    recs.forEach((r, i) => (t = ntSet(t, shortIPv4Form(4, 0x64420001 + i), packEndpoint(r, 'c1/n1'))));
    expect([...ntEntries(t)].map(([, v]) => [(v as PackedEndpoint).namespace, (v as PackedEndpoint).name])).toEqual(recs.map((r) => [r.namespace, r.name]));
    // a packed record whose name is a number (no codec makes one) is read back as that number, not as a suffix
    const odd = new PackedEndpoint(0x64420009, 'default', 12345 as unknown as string, labels, 300);
    t = ntSet(t, shortIPv4Form(4, 0x64420009), odd);
    expect(ntGet(t, shortIPv4Form(4, 0x64420009))).toBe(odd);
  });

  it('pools at most MAX_STEMS stems per set of the other fields: names of a stem of their own each are held as strings', () => {
    const labels = internLabels({ app: 'runner' });
    let t: NodeTable | undefined;
    const names = Array.from({ length: 20 }, (_, i) => `arc-${(i * 7919 + 99).toString(36).slice(-5)}-runner-${(i * 104729 + 7).toString(36).slice(-5)}`);
    names.forEach((name, i) => (t = ntSet(t, shortIPv4Form(6, 0x64430001 + i), packEndpoint({ ip: formatIPv4Value(0x64430001 + i), cluster: 'c1', node: 'n1', namespace: 'ci', name, labels, identity: 301 }, 'c1/n1'))));
    const cells = [...(t as NodeCells)];
    expect(cells.filter((c) => typeof c === 'number').length).toBe(20 + MAX_STEMS); // addresses, then MAX_STEMS codes
    expect(cells.filter((c) => typeof c === 'string')).toEqual(names.slice(MAX_STEMS));
    expect([...ntEntries(t)].map(([, v]) => (v as PackedEndpoint).name)).toEqual(names);
  });

  it("counts a set's stems down as their profiles are collected: a workload's later rollouts get stems again", async () => {
    // (the counts go down by the pool's reaper, after a GC: a count that never did would hold every later name of a
    // long-lived workload as its string once it had rolled out MAX_STEMS times)
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const labels = internLabels({ app: 'rollout' });
    const round = (r: number) => {
      let t: NodeTable | undefined;
      for (let i = 0; i < MAX_STEMS; i++) {
        const rec = { ip: formatIPv4Value(0x64440001 + i), cluster: 'c1', node: 'n1', namespace: 'prod', name: `web-r${r}s${i}-x2kjz`, labels, identity: 302 };
        t = ntSet(t, shortIPv4Form(7, 0x64440001 + i), packEndpoint(rec, 'c1/n1'));
      }
      return (t as NodeCells).filter((c) => typeof c === 'string').length;
    };
    expect(round(0)).toBe(0);
    for (let r = 1; r <= 3; r++) {
      // the last round's table is garbage: its profiles are collected, and their counts go down
      for (let k = 0; k < 6; k++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(round(r), `round ${r}`).toBe(0);
    }
  });

  it('gives every suffix of 1-5 characters of [0-9a-z] its own number, below 2^30, and back', () => {
    const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
    const rand = prng(5);
    const seen = new Map<number, string>();
    const some = ['0', 'z', '00', 'z0', '0z', '00000', 'zzzzz', 'x2kjz', '10', '01'];
    for (let i = 0; i < 20_000; i++) some.push(Array.from({ length: 1 + Math.floor(rand() * 5) }, () => alphabet[Math.floor(rand() * 36)]).join(''));
    for (const s of some) {
      const code = suffixCode(`pre-${s}`, 4);
      expect(code, s).toBeGreaterThan(0);
      expect(code).toBeLessThan(2 ** 30);
      expect(seen.get(code) ?? s).toBe(s);
      seen.set(code, s);
      expect(suffixOf(code)).toBe(s);
    }
    for (const s of ['', '000000', 'A', '-', '.', 'é', 'a b', '\u0000']) expect(suffixCode(s, 0), s).toBe(-1);
  });

  // last: it fills the pool (this file's module instance), so no later case here would share a profile
  it('pools at most MAX_POOLED profiles: a cluster giving every record a set of its own gets records of their own', () => {
    // (review of s28: each pooled profile costs ~275 B with its entry; unbounded, a hostile cluster paid 2.3-3.1x main)
    const labels = internLabels({ app: 'own' });
    const tables: NodeTable[] = [];
    const n = MAX_POOLED + 500;
    for (let i = 0; i < n; i++) {
      const rec = { ip: formatIPv4Value(0x64800000 + i), cluster: 'c9', node: `n${i >> 4}`, namespace: 'x', name: `p${i}`, labels, identity: 1_000_000 + i };
      tables.push(ntSet(undefined, shortIPv4Form(9, 0x64800000 + i), packEndpoint(rec, `c9/n${i >> 4}`)));
    }
    expect(pooledProfiles()).toBeLessThanOrEqual(MAX_POOLED);
    for (const i of [0, MAX_POOLED - 1, MAX_POOLED, n - 1]) {
      const v = ntGet(tables[i], shortIPv4Form(9, 0x64800000 + i)) as PackedEndpoint;
      expect([v.identity, v.name, v.labels, v.namespace]).toEqual([1_000_000 + i, `p${i}`, labels, 'x']);
    }
    // past the pool, a generated name (a stem and a suffix) comes back whole too: held as its string
    for (let i = 0; i < 40; i++) {
      const name = `own-${i % 3}-${(i * 7919).toString(36).slice(-5)}`;
      const rec = { ip: formatIPv4Value(0x64900000 + i), cluster: 'c9', node: 'm', namespace: `ns${i}`, name, labels, identity: 2_000_000 + i };
      const t = ntSet(undefined, shortIPv4Form(10, 0x64900000 + i), packEndpoint(rec, 'c9/m'));
      expect(pooledProfiles()).toBeLessThanOrEqual(MAX_POOLED);
      expect((t as NodeCells)[1]).toBe(name);
      expect((ntGet(t, shortIPv4Form(10, 0x64900000 + i)) as PackedEndpoint).name).toBe(name);
    }
  });
});
