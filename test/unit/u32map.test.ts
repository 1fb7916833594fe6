// U32Map (src/net/u32map.ts) against a Map<number, number> on seeded random sequences: same answers after every
// step, every key reachable after every backward shift, capacity within its stated bound (a power of two from 16,
// at most 3/4 full, at least 1/4 full once past the minimum). Its hash against tabulation written out here, and
// the spread of keys a remote could choose (a dense /16, keys differing only in one byte) with the real tables. Keys dense (one pod CIDR, runs that wrap
// the table), spread, and at the ends of the space (0, 2^31, 2^32 - 1: int32's sign bit).
import { describe, expect, it } from 'vitest';
import { randomFillSync } from 'node:crypto';
import { tabulate, U32Map } from '../../src/net/u32map.js';
import { prng } from '../helpers/prng.js';

/** Plain comparisons first (this runs after every step), an assertion only to report a failure. */
function checkBound(m: U32Map, label: string): void {
  const cap = m.capacity;
  // a power of two from 16; grown past 3/4 of it; shrunk below 1/4 of it
  const ok = (cap & (cap - 1)) === 0 && cap >= 16 && m.size * 4 <= cap * 3 && (cap === 16 || m.size * 4 >= cap);
  if (!ok) expect({ size: m.size, capacity: cap }, label).toBe('within the bound');
}

/** One change to both maps (set `value`, or delete when it is undefined), then every key of the Map looked up in m. */
function mirror(m: U32Map, o: Map<number, number>, k: number, value: number | undefined, label: string): void {
  if (value !== undefined) {
    m.set(k, value);
    o.set(k, value);
  } else expect(m.delete(k)).toBe(o.delete(k));
  for (const [key, v] of o) if (m.get(key) !== v) expect(m.get(key), label).toBe(v);
}

function run(seed: number, steps: number, keys: readonly number[]): void {
  const rnd = prng(seed);
  const pick = (): number => keys[Math.floor(rnd() * keys.length)]!;
  const m = new U32Map();
  const o = new Map<number, number>();
  // phases: mostly inserts, then mostly deletes, so the table grows and shrinks through several capacities
  for (let step = 0; step < steps; step++) {
    const label = `seed ${seed} step ${step}`;
    const k = pick();
    const growing = Math.floor(step / (steps / 4)) % 2 === 0;
    const r = rnd();
    if (r < (growing ? 0.7 : 0.25)) {
      const v = Math.floor(rnd() * 2 ** 31);
      m.set(k, v);
      o.set(k, v);
    } else if (r < 0.9) {
      const [got, want] = [m.delete(k), o.delete(k)];
      if (got !== want) expect(got, label).toBe(want);
    } else if (m.get(k) !== o.get(k)) expect(m.get(k), label).toBe(o.get(k));
    if (m.size !== o.size) expect(m.size, label).toBe(o.size);
    checkBound(m, label);
    if (step % 97 === 0) {
      for (const [key, v] of o) if (m.get(key) !== v) expect(m.get(key), `${label} key ${key}`).toBe(v);
      expect(new Map(m.entries()), label).toEqual(o);
      expect([...m.values()].sort((a, b) => a - b), label).toEqual([...o.values()].sort((a, b) => a - b));
    }
  }
  for (const k of keys) expect(m.get(k)).toBe(o.get(k));
  for (const k of [...o.keys()]) {
    m.delete(k);
    o.delete(k);
    checkBound(m, `drain seed ${seed}`);
  }
  expect(m.size).toBe(0);
  expect(m.capacity).toBe(16);
}

const dense = Array.from({ length: 3000 }, (_, i) => ((100 << 24) | (64 << 16) | i) >>> 0);
const ends = [0, 1, 0x7fffffff, 0x80000000, 0x80000001, 0xffffffff, 0xfffffffe];

describe('U32Map against a Map', () => {
  it('agrees on dense keys (one pod CIDR) through growth and shrinking', () => {
    for (let seed = 1; seed <= 6; seed++) run(seed, 12_000, dense);
  });

  it('agrees on spread keys and the ends of the key space', () => {
    const rnd = prng(99);
    const spread = [...Array.from({ length: 2000 }, () => Math.floor(rnd() * 2 ** 32)), ...ends];
    for (let seed = 10; seed <= 14; seed++) run(seed, 10_000, spread);
  });

  it('agrees on few keys (long runs of one cluster of positions, wrap-around at the end of the table)', () => {
    for (let seed = 20; seed <= 60; seed++) run(seed, 600, [...ends, ...dense.slice(0, 9)]);
  });

  it('refuses a value it cannot hold without changing anything', () => {
    const m = new U32Map();
    m.set(5, 7);
    for (const v of [-1, 2 ** 31, 1.5, NaN]) expect(() => m.set(5, v)).toThrow(RangeError);
    expect(m.get(5)).toBe(7);
    expect(m.size).toBe(1);
  });

  it('keeps every key reachable when runs wrap around the end of the table', () => {
    // tables fixed so that a key's home is 14, 15, 0 or 1 by its low byte, and at most 12 keys (capacity stays
    // 16): runs cross the end of the table, so the backward shift meets entries whose home lies cyclically
    // between the freed position and theirs (they stay) and entries whose home does not (they move)
    const tables = new Uint32Array(1024);
    for (let b = 0; b < 256; b++) tables[b] = [14, 15, 0, 1][b % 4]!;
    const keys = Array.from({ length: 12 }, (_, i) => (i % 4) + 0x100 * Math.floor(i / 4));
    for (let seed = 70; seed <= 110; seed++) {
      const rnd = prng(seed);
      const m = new U32Map(tables);
      const o = new Map<number, number>();
      for (let step = 0; step < 400; step++) {
        const k = keys[Math.floor(rnd() * keys.length)]!;
        mirror(m, o, k, rnd() < 0.6 ? step : undefined, `seed ${seed} step ${step}`);
        if (m.size !== o.size) expect(m.size).toBe(o.size);
        expect(m.capacity).toBe(16);
      }
    }
  });

  it('keeps keys apart whose homes interleave (homes from the low byte: runs that meet and merge)', () => {
    const tables = new Uint32Array(1024);
    for (let b = 0; b < 256; b++) tables[b] = b;
    const rnd = prng(5);
    const keys = Array.from({ length: 40 }, () => Math.floor(rnd() * 24) + Math.floor(rnd() * 4) * 0x100);
    const m = new U32Map(tables);
    const o = new Map<number, number>();
    for (let step = 0; step < 5000; step++) {
      const k = keys[Math.floor(rnd() * keys.length)]!;
      mirror(m, o, k, rnd() < 0.5 ? step : undefined, `step ${step}`);
      checkBound(m, `step ${step}`);
    }
  });

  it('refuses tables of the wrong size', () => {
    expect(() => new U32Map(new Uint32Array(256))).toThrow(RangeError);
  });

  it('hashes as simple tabulation over all four bytes (the oracle splits the key with arithmetic, not shifts)', () => {
    const tab = randomFillSync(new Uint32Array(1024));
    const rnd = prng(8);
    for (let i = 0; i < 20_000; i++) {
      const k = i < 7 ? ends[i]! : Math.floor(rnd() * 2 ** 32);
      let want = 0;
      for (let b = 0, rest = k; b < 4; b++, rest = Math.floor(rest / 256)) want = (want ^ tab[256 * b + (rest % 256)]!) >>> 0;
      if (tabulate(tab, k) !== want) expect(tabulate(tab, k), `key ${k}`).toBe(want);
    }
  });

  it('spreads the keys a remote chooses: mean distance from home as for random keys (~1.5 at 3/4 full)', () => {
    // linear probing at load α has an expected displacement of (1/(1-α) - 1)/2 = 1.5 at 3/4 for random homes;
    // a hash that lost a byte or half the table would pile these sets into runs (tens to hundreds)
    // 12,288 keys each (3/4 of 16,384), varying two bytes, so every byte's table is needed to spread them; with
    // random tables the mean stayed within 1.2-2.4 over 2,000 draws per set
    const two = (hi: number, lo: number) => Array.from({ length: 12_288 }, (_, i) => ((i >> 7) + 64) * 2 ** (8 * hi) + (i & 127) * 2 ** (8 * lo) + (hi !== 0 && lo !== 0 ? 1 : 0));
    const sets: Record<string, number[]> = {
      'a dense /16 (one pod CIDR)': Array.from({ length: 49_152 }, (_, i) => ((100 << 24) | (64 << 16)) + i),
      'top and second bytes (from 64.0.0.0 to past 128.0.0.0)': two(3, 2),
      'top and third bytes': two(3, 1),
      'top and low bytes': two(3, 0),
      'second and third bytes': two(2, 1),
    };
    for (const [name, keys] of Object.entries(sets)) {
      const m = new U32Map();
      keys.forEach((k, i) => m.set(k, i));
      expect(m.size * 4, name).toBe(m.capacity * 3); // each set fills its table to the 3/4 point (no duplicates)
      expect(m.meanDisplacement, name).toBeLessThan(4);
    }
  });
});
