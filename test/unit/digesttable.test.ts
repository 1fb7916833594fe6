// ListWatcher's key → digest table (src/controlplane/digesttable.ts: a Map or a PairMap of indices, three 32-bit words per key)
// against a Map as the oracle on seeded random sequences: same answers, keys in the same order (plain keys: the Map
// part keeps insertion order), freed slots reused. Then short IPv4 compact forms (held as two numbers in a PairMap)
// mixed with plain keys and strings that only look like such forms: same answers, the same keys (as a set: forms
// come back in PairMap order, after the plain keys in theirs).
import { describe, expect, it } from 'vitest';
import { formBase, isShortIPv4Form, shortIPv4Form } from '../../src/controlplane/compactkeys.js';
import { DigestTable } from '../../src/controlplane/digesttable.js';
import { prng } from '../helpers/prng.js';

describe('DigestTable', () => {
  for (const seed of [1, 2, 3, 42, 9001]) {
    it(`agrees with a Map on random changes (seed ${seed})`, () => {
      const rand = prng(seed);
      // more keys than one chunk (4096), so indices cross chunks and freed ones are reused across them
      const keys = Array.from({ length: 6000 }, (_, i) => `wiremesh/cache/ip/v2/c1/n${i % 37}/100.64.${i >> 8}.${i & 255}`);
      const t = new DigestTable();
      const m = new Map<string, number>();
      const c = new Map<string, number>();
      let peak = 0;
      for (let step = 0; step < 20_000; step++) {
        // phases that fill and drain
        const fill = Math.floor(step / 4000) % 2 === 0 ? 0.8 : 0.3;
        const k = keys[Math.floor(rand() * keys.length)]!;
        const r = rand();
        if (r < fill) {
          // 48-bit digests (as valueDigest), and the edges
          const d = r < 0.01 ? [0, 2 ** 48 - 1, 2 ** 53 - 1][step % 3]! : Math.floor(rand() * 2 ** 48);
          // create revisions: 0 (unknown), small, past 2^32 (inline: both halves), and up to 2^53 - 1 (spilled)
          const cr = step % 5 === 0 ? 0 : step % 7 === 0 ? 2 ** 53 - 1 : step % 3 === 0 ? step * 2 ** 20 + 1 : step;
          t.set(k, d, cr);
          m.set(k, d);
          c.set(k, cr);
        } else {
          expect(t.delete(k)).toBe(m.delete(k));
          c.delete(k);
        }
        expect(t.size).toBe(m.size);
        peak = Math.max(peak, m.size);
        expect(t.get(k)).toBe(m.get(k));
        expect(t.createRevision(k)).toBe(c.get(k));
        if (step % 4000 === 0) {
          expect([...t.keys()]).toEqual([...m.keys()]);
          for (const key of keys) expect([t.get(key), t.createRevision(key)]).toEqual([m.get(key), c.get(key)]);
        }
      }
      expect([...t.keys()]).toEqual([...m.keys()]);
      // freed indices are reused: storage stays at the most keys held at once (review: a remote creating and
      // deleting keys must not grow the columns without bound)
      expect((t as unknown as { next: number }).next).toBeLessThanOrEqual(peak);
    });
  }
});

describe('DigestTable with compact forms', () => {
  // forms of 40 bases × 150 addresses (dense, one pod CIDR each, and the ends of the space), plain keys, and
  // strings a plain key could be that are not short forms (9 characters, a two-byte character, another mark)
  const forms = Array.from({ length: 6000 }, (_, i) => shortIPv4Form(i % 40 === 39 ? 2 ** 24 - 1 : i % 40, i < 12 ? [0, 0xffffffff, 0x80000000][i % 3]! : ((100 << 24) | (64 << 16)) + Math.floor(i / 40)));
  const plain = Array.from({ length: 1500 }, (_, i) => `wiremesh/cache/ip/v2/c1/n${i % 37}/2001:db8::${i.toString(16)}`);
  const looks = ['\u0000abcdefgh', '\u0000abc\u0100efg', '\u0001abcdefg', '\u0002\u0000abcdef', '\u0000abcdef'];
  const keys = [...new Set([...forms, ...plain, ...looks])];
  const sorted = (xs: Iterable<string>) => [...xs].sort();

  it('answers for forms before it holds any (its PairMap made with the first)', () => {
    const t = new DigestTable();
    t.set('plain', 1, 2);
    expect([t.get(forms[0]!), t.createRevision(forms[0]!), t.delete(forms[0]!), t.size, t.keys()]).toEqual([undefined, undefined, false, 1, ['plain']]);
    t.set(forms[0]!, 3, 4);
    expect([t.get(forms[0]!), t.createRevision(forms[0]!), t.size, t.keys()]).toEqual([3, 4, 2, ['plain', forms[0]]]);
  });

  for (const seed of [5, 6, 7]) {
    it(`agrees with a Map on random changes (seed ${seed})`, () => {
      expect(forms.filter(isShortIPv4Form).length).toBe(6000);
      expect(new Set(forms.map(formBase)).size).toBe(40);
      const rand = prng(seed);
      const t = new DigestTable();
      const m = new Map<string, [number, number]>();
      let peak = 0;
      for (let step = 0; step < 30_000; step++) {
        const k = keys[Math.floor(rand() * keys.length)]!;
        if (rand() < (Math.floor(step / 5000) % 2 === 0 ? 0.8 : 0.25)) {
          const v: [number, number] = [Math.floor(rand() * 2 ** 48), step % 5 === 0 ? 0 : step];
          t.set(k, ...v);
          m.set(k, v);
        } else expect(t.delete(k)).toBe(m.delete(k));
        peak = Math.max(peak, m.size);
        if (t.size !== m.size) expect(t.size).toBe(m.size);
        const want = m.get(k);
        if (t.get(k) !== want?.[0] || t.createRevision(k) !== want?.[1]) expect([t.get(k), t.createRevision(k)]).toEqual(want ?? [undefined, undefined]);
        if (step % 5000 === 0) {
          expect(sorted(t.keys())).toEqual(sorted(m.keys()));
          for (const key of keys) expect([t.get(key), t.createRevision(key)]).toEqual(m.get(key) ?? [undefined, undefined]);
        }
      }
      const got = [...t.keys()];
      expect(sorted(got)).toEqual(sorted(m.keys()));
      // the plain keys first, in the Map's order
      const plainHeld = [...m.keys()].filter((k) => !isShortIPv4Form(k));
      expect(got.slice(0, plainHeld.length)).toEqual(plainHeld);
      expect((t as unknown as { next: number }).next).toBeLessThanOrEqual(peak);
      for (const k of got) t.delete(k);
      expect([t.size, [...t.keys()]]).toEqual([0, []]);
    });
  }
});

describe('DigestTable columns (s37: three 32-bit words per key, a side map for what does not pack)', () => {
  // the edges of both 48-bit halves, the side map's own values (-0, fractions, negatives, past 2^48, NaN), and a
  // create revision at and past the inline limit (its high half 0xffff marks a spilled key)
  const digests = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 48 - 1, 2 ** 48, 2 ** 53 - 1, -0, -1, 0.5, NaN, Infinity];
  const revisions = [0, 1, 2 ** 32 - 1, 2 ** 32, 0xffff * 2 ** 32 - 1, 0xffff * 2 ** 32, 2 ** 48 - 1, 2 ** 53 - 1, -0, 1.5];
  /** The side map's size (a private field: what the bound is about). */
  const spilled = (t: DigestTable) => (t as unknown as { spill: Map<number, unknown> }).spill.size;

  it('gives back every pair exactly, in forms and plain keys alike, each key in its own words', () => {
    const t = new DigestTable();
    const pairs = digests.flatMap((d) => revisions.map((c) => [d, c] as const));
    // a form and a plain key per pair, all set before any is read: a write into a neighbour's words shows
    const keys = pairs.flatMap((_, i) => [shortIPv4Form(i % 7, 0x64400000 + i), `plain/${i}`]);
    keys.forEach((k, j) => t.set(k, ...pairs[j >> 1]!));
    keys.forEach((k, j) => expect([t.get(k), t.createRevision(k)], k).toEqual([...pairs[j >> 1]!]));
    const packs = pairs.filter(([d, c]) => Number.isInteger(d) && d >= 0 && d < 2 ** 48 && !Object.is(d, -0) && Number.isInteger(c) && c >= 0 && c < 0xffff * 2 ** 32 && !Object.is(c, -0));
    expect(spilled(t)).toBe(2 * (pairs.length - packs.length));
  });

  it('holds a key in the side map only while its pair does not pack', () => {
    const t = new DigestTable();
    const f = shortIPv4Form(1, 0x64400002);
    t.set(f, 2 ** 48, 5);
    t.set('a', 7, 0xffff * 2 ** 32);
    expect(spilled(t)).toBe(2);
    t.set(f, 2 ** 48 - 1, 0xffff * 2 ** 32 - 1); // packs again: out of the side map, the words hold it
    expect([spilled(t), t.get(f), t.createRevision(f)]).toEqual([1, 2 ** 48 - 1, 0xffff * 2 ** 32 - 1]);
    t.delete('a');
    expect(spilled(t)).toBe(0);
    // 'b' takes the index 'a' freed, whose third word still has the SPILLED mark: set() must write it again
    t.set('b', 9, 10);
    expect([t.get('b'), t.createRevision('b'), spilled(t)]).toEqual([9, 10, 0]);
  });
});
