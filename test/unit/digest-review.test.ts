// Review of s21digest (DigestTable's short IPv4 forms in a PairMap; U32Map on probetable.ts): the short-form layout
// read as one distinct (address, base) pair and back, for every 8-character one-byte string starting with SHORT
// (a raw key of that layout and a form of the same text are one key); PairMap's word semantics and its bound under
// key sets a remote could choose. The review also ran DigestTable, U32Map and ListWatcher against main's build
// (same answers, slots, positions, sink state; docs/benchmarks.md): not kept here, as they need a second build.
import { describe, expect, it } from 'vitest';
import { CompactKeys, formAddress, formBase, isShortIPv4Form, shortIPv4Form } from '../../src/controlplane/compactkeys.js';
import { DigestTable } from '../../src/controlplane/digesttable.js';
import { PairMap } from '../../src/net/pairmap.js';
import { prng } from '../helpers/prng.js';

/** The index a key holds (private in both builds). */
const slotOf = (t: unknown, k: string): number | undefined => {
  const x = t as { indexOf?: (k: string) => number | undefined; index: Map<string, number> };
  return x.indexOf ? x.indexOf(k) : x.index.get(k);
};

describe('DigestTable: short-form layout', () => {
  it('reads every 8-character one-byte string starting with SHORT as one distinct pair, and back (no two texts one pair)', () => {
    const rand = prng(11);
    const seen = new Map<string, string>();
    for (let i = 0; i < 50_000; i++) {
      const s = String.fromCharCode(0, ...Array.from({ length: 7 }, () => (i % 3 === 0 ? [0, 255, 128][Math.floor(rand() * 3)]! : Math.floor(rand() * 256))));
      expect(isShortIPv4Form(s)).toBe(true);
      const pair = `${formAddress(s)},${formBase(s)}`;
      const before = seen.get(pair);
      if (before !== undefined && before !== s) expect(s).toBe(before);
      seen.set(pair, s);
      if (shortIPv4Form(formBase(s), formAddress(s)) !== s) expect(shortIPv4Form(formBase(s), formAddress(s))).toBe(s);
      expect(formBase(s)).toBeLessThan(2 ** 24);
      expect(formAddress(s)).toBeLessThan(2 ** 32);
    }
    for (const s of ['\u0000abc\u0100efg', '\u0000\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff\u0100', '\u0000abcdef', '\u0000abcdefgh', '\u0001abcdefg', ''])
      expect(isShortIPv4Form(s), JSON.stringify(s)).toBe(false);
  });

  it('a raw look-alike and a form with the same text are one key (a string map), set() keeps the slot', () => {
    const ck = new CompactKeys();
    const f = ck.acquire('wiremesh/cache/ip/v2/c1/n1/100.64.0.1');
    const raw = String.fromCharCode(...[...f].map((ch) => ch.charCodeAt(0)));
    const t = new DigestTable();
    t.set('a', 1, 1);
    t.set(f, 2, 2);
    t.delete('a');
    t.set(raw, 3, 3); // held: keeps its slot (1), the freed slot 0 stays free
    t.set('b', 4, 4); // takes the freed slot 0
    expect([t.size, t.get(f), slotOf(t, f), slotOf(t, 'b'), t.keys()]).toEqual([2, 3, 1, 0, ['b', f]]);
  });
});

describe('PairMap words and bound', () => {
  it('takes each word as `word | 0` and gives it back unsigned', () => {
    const m = new PairMap();
    m.set(2 ** 32 + 5, 7, 1);
    m.set(-1, -1, 2);
    m.set(NaN, 5.9, 3);
    expect([m.get(5, 7), m.get(2 ** 32 - 1, 2 ** 32 - 1), m.get(0, 5), m.size]).toEqual([1, 2, 3, 3]);
    const got: number[][] = [];
    m.forEach((lo, hi, v) => got.push([lo, hi, v]));
    expect(got.sort((x, y) => x[2]! - y[2]!)).toEqual([[5, 7, 1], [2 ** 32 - 1, 2 ** 32 - 1, 2], [0, 5, 3]]);
  });

  it('stays within its bound and spreads same-address-many-bases and dense-addresses-one-base sets', () => {
    const rand = prng(9);
    const sets: Record<string, Array<[number, number]>> = {
      'one address, 20k bases': Array.from({ length: 20_000 }, (_, i) => [0x64400001, i]),
      'one base, 20k dense addresses': Array.from({ length: 20_000 }, (_, i) => [0x64400000 + i, 7]),
      'bases and addresses moving together': Array.from({ length: 20_000 }, (_, i) => [0x64400000 + i, i]),
      'addresses differing in the top byte only, bases in the low': Array.from({ length: 20_000 }, (_, i) => [(i & 255) * 2 ** 24, i >> 8]),
    };
    for (const [name, keys] of Object.entries(sets)) {
      const m = new PairMap();
      const ref = new Map<string, number>();
      for (let step = 0; step < 60_000; step++) {
        const [lo, hi] = keys[Math.floor(rand() * keys.length)]!;
        if (rand() < (step < 30_000 ? 0.8 : 0.2)) {
          m.set(lo, hi, step);
          ref.set(`${lo},${hi}`, step);
        } else if ((m.delete(lo, hi) ?? -1) !== (ref.get(`${lo},${hi}`) ?? -1)) expect.fail(`${name}: delete ${lo},${hi}`);
        else ref.delete(`${lo},${hi}`);
        const cap = m.capacity;
        if (m.size !== ref.size || m.size * 4 > cap * 3 || (cap > 16 && m.size * 4 < cap)) expect.fail(`${name}: size ${m.size} (want ${ref.size}) capacity ${cap} at step ${step}`);
        if (step === 29_999) expect(m.meanDisplacement, name).toBeLessThan(4);
      }
    }
  });
});
