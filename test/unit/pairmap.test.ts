// PairMap (src/net/pairmap.ts, on probetable.ts) against a Map<string, number> keyed by the two words' text, on
// seeded random sequences that fill and drain the table: same answers after every step, the capacity within its
// bound, entries() the Map's. Key sets a remote could aim at a two-word hash: every key with one low word, every
// key with one high word, dense runs in both, pairs swapped ((a, b) and (b, a)) and equal ((a, a)), the ends of
// the 32-bit space. Fixed tables: homes from one byte, so runs wrap the end of the table and merge; the hash
// against simple tabulation of the 8 bytes written out with arithmetic.
import { randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PairMap } from '../../src/net/pairmap.js';
import { prng } from '../helpers/prng.js';

type Pair = readonly [number, number];
const text = ([lo, hi]: Pair): string => `${lo >>> 0},${hi >>> 0}`;

/** One step on both (value undefined: delete), then the size, the bound and (every `full` steps) every key and entries(). */
function step(m: PairMap, o: Map<string, number>, k: Pair, value: number | undefined, label: string, full: boolean): void {
  if (value === undefined) {
    const [got, want] = [m.delete(k[0], k[1]), o.get(text(k))]; // the value it held
    o.delete(text(k));
    if (got !== want) expect(got, label).toBe(want);
  } else {
    // set, or add (a held key keeps its value) on every third step
    if (value % 3 === 0) expect(m.add(k[0], k[1], value), label).toBe(o.get(text(k)));
    else m.set(k[0], k[1], value);
    if (value % 3 !== 0 || !o.has(text(k))) o.set(text(k), value);
  }
  const cap = m.capacity;
  if (m.size !== o.size || (cap & (cap - 1)) !== 0 || cap < 16 || m.size * 4 > cap * 3 || (cap > 16 && m.size * 4 < cap))
    expect({ size: m.size, want: o.size, cap }, label).toBe('a power of two from 16, 1/4 to 3/4 full');
  if (m.get(k[0], k[1]) !== o.get(text(k))) expect(m.get(k[0], k[1]), label).toBe(o.get(text(k)));
  if (!full) return;
  for (const [key, v] of o) {
    const [lo, hi] = key.split(',').map(Number) as [number, number];
    if (m.get(lo, hi) !== v) expect(m.get(lo, hi), `${label} key ${key}`).toBe(v);
  }
  const seen = new Map<string, number>();
  m.forEach((lo, hi, v) => seen.set(text([lo, hi]), v));
  expect(seen, label).toEqual(o);
}

function run(seed: number, steps: number, keys: readonly Pair[], tables?: Uint32Array): void {
  const rnd = prng(seed);
  const m = new PairMap(tables);
  const o = new Map<string, number>();
  for (let s = 0; s < steps; s++) {
    const growing = Math.floor(s / (steps / 4)) % 2 === 0; // phases of mostly sets, then mostly deletes
    const k = keys[Math.floor(rnd() * keys.length)]!;
    step(m, o, k, rnd() < (growing ? 0.7 : 0.3) ? Math.floor(rnd() * 2 ** 31) : undefined, `seed ${seed} step ${s}`, s % 101 === 0);
  }
  for (const key of [...o.keys()]) step(m, o, key.split(',').map(Number) as unknown as Pair, undefined, `drain seed ${seed}`, false);
  expect([m.size, m.capacity]).toEqual([0, 16]);
}

const ENDS = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const POD = (100 << 24) | (64 << 16);
const sets: Record<string, Pair[]> = {
  'one low word, 3000 high words': Array.from({ length: 3000 }, (_, i) => [POD + 1, i]),
  'one high word, 3000 low words (one base, a pod CIDR)': Array.from({ length: 3000 }, (_, i) => [POD + i, 7]),
  'dense in both (60 bases × 50 addresses)': Array.from({ length: 3000 }, (_, i) => [POD + (i % 50), Math.floor(i / 50)]),
  'swapped and equal pairs': Array.from({ length: 1500 }, (_, i) => [i & 1 ? [i, 1500 - i] : [1500 - i, i], [i, i]] as Pair[]).flat(),
  'the ends of the space': ENDS.flatMap((a) => ENDS.map((b): Pair => [a, b])),
};

describe('PairMap against a Map', () => {
  for (const [name, keys] of Object.entries(sets))
    it(`agrees through growth and shrinking: ${name}`, () => {
      for (let seed = 1; seed <= 4; seed++) run(seed, 10_000, keys);
    });

  it('agrees when homes come from one byte of the low word (runs wrap the end of the table and merge)', () => {
    const wrap = new Uint32Array(2048);
    for (let b = 0; b < 256; b++) wrap[b] = [14, 15, 0, 1][b % 4]!;
    const few: Pair[] = Array.from({ length: 12 }, (_, i) => [i % 4, Math.floor(i / 4)]);
    for (let seed = 70; seed <= 100; seed++) run(seed, 400, few, wrap);
    const low = new Uint32Array(2048);
    for (let b = 0; b < 256; b++) low[b] = b;
    const rnd = prng(5);
    run(5, 5000, Array.from({ length: 40 }, (): Pair => [Math.floor(rnd() * 24), Math.floor(rnd() * 4)]), low);
  });

  it('refuses a value it cannot hold without changing anything, and tables of another size', () => {
    const m = new PairMap();
    m.set(5, 6, 7);
    for (const v of [-1, 2 ** 31, 1.5, NaN]) expect(() => m.set(5, 6, v)).toThrow(RangeError);
    for (const v of [-1, 2 ** 31]) expect(() => m.add(8, 9, v)).toThrow(RangeError);
    expect([m.get(5, 6), m.get(8, 9), m.size]).toEqual([7, undefined, 1]);
    for (const n of [1024, 2047, 4096]) expect(() => new PairMap(new Uint32Array(n))).toThrow(RangeError);
  });

  it('hashes as simple tabulation of the 8 key bytes over 8 tables (oracle: arithmetic, not shifts)', () => {
    const tab = randomFillSync(new Uint32Array(2048));
    const rnd = prng(8);
    const m = new PairMap(tab);
    const internal = m as unknown as { t: { hash(lo: number, hi: number): number } };
    for (let i = 0; i < 20_000; i++) {
      const [lo, hi] = [Math.floor(rnd() * 2 ** 32), i < 36 ? ENDS[i % 6]! : Math.floor(rnd() * 2 ** 32)];
      let want = 0;
      for (const [w, word] of [lo, hi].entries())
        for (let b = 0, rest = word; b < 4; b++, rest = Math.floor(rest / 256)) want = (want ^ tab[1024 * w + 256 * b + (rest % 256)]!) >>> 0;
      if (internal.t.hash(lo, hi) !== want) expect(internal.t.hash(lo, hi), `key ${lo},${hi}`).toBe(want);
    }
  });

  it('spreads the pairs a remote chooses: mean distance from home as for random keys (~1.5 at 3/4 full)', () => {
    // 12,288 pairs each (3/4 of 16,384); a hash that dropped a word or a byte, or XORed the words through one set
    // of tables, would pile these into runs (swapped and equal pairs: all of (a, a) at one home)
    const n = 12_288;
    const aimed: Record<string, Pair[]> = {
      'one low word': Array.from({ length: n }, (_, i) => [POD, i]),
      'one high word (one base)': Array.from({ length: n }, (_, i) => [POD + i, 3]),
      'equal words': Array.from({ length: n }, (_, i) => [POD + i, POD + i]),
      'swapped words': Array.from({ length: n / 2 }, (_, i) => [[i, i + n], [i + n, i]] as Pair[]).flat(),
      'dense in both (96 × 128)': Array.from({ length: n }, (_, i) => [POD + (i & 127), i >> 7]),
      'top bytes only': Array.from({ length: n }, (_, i) => [(i & 127) * 2 ** 24, (i >> 7) * 2 ** 24]),
    };
    for (const [name, keys] of Object.entries(aimed)) {
      const m = new PairMap();
      keys.forEach(([lo, hi], i) => m.set(lo, hi, i));
      expect(m.size * 4, name).toBe(m.capacity * 3);
      expect(m.meanDisplacement, name).toBeLessThan(4);
    }
  });
});
