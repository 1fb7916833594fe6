// Maglev tables built by the native code (native/src/services/maglev.cc), as
// the data path uses them: balance, weights, disruption, order independence.
import { describe, expect, it } from 'vitest';
import { testhooks } from '../../src/native/testhooks.js';
import { backendRows } from '../../src/native/rows.js';

const backends = (n: number, weight = (_i: number) => 1) =>
  Array.from({ length: n }, (_, i) => [{ ip: `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, port: 8080 }, weight(i)] as const);

function counts(table: Uint32Array, n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const b of table) c[b]!++;
  return c;
}

describe('Maglev', () => {
  it.each([
    [251, 7],
    [16381, 100],
    [65537, 1000],
  ])('M=%i, N=%i: every slot is filled and entries per backend differ by at most 1', (m, n) => {
    const t = testhooks.maglevBuild(backendRows(backends(n)), m);
    expect(t.length).toBe(m);
    const c = counts(t, n);
    expect(Math.max(...c) - Math.min(...c)).toBeLessThanOrEqual(1);
  });

  it('respects weights', () => {
    const w = (i: number) => [1, 2, 5, 0][i % 4]!;
    const n = 40;
    const t = testhooks.maglevBuild(backendRows(backends(n, w)), 16381);
    const c = counts(t, n);
    const total = Array.from({ length: n }, (_, i) => w(i)).reduce((a, b) => a + b, 0);
    for (let i = 0; i < n; i++) {
      const expected = (16381 * w(i)) / total;
      if (w(i) === 0) expect(c[i]).toBe(0); // weight 0: no new flows
      else expect(Math.abs(c[i]! - expected) / expected).toBeLessThan(0.02);
    }
  });

  // Measured, not universal: at M = 16381 and N = 100 a removal moves ~1.4 %
  // (the same with SHA-256 permutations: it is Maglev's cascade, docs/benchmarks.md);
  // these sizes stay near 0.6 %.
  it.each([
    [16381, 10],
    [65537, 100],
    [65537, 1000],
  ])('M=%i, N=%i: removing one backend moves under 1 %% of the survivors\' slots', (m, n) => {
    const all = backends(n);
    const before = testhooks.maglevBuild(backendRows(all), m);
    for (const gone of [0, n >> 1, n - 1]) {
      const rest = all.filter((_, i) => i !== gone);
      const after = testhooks.maglevBuild(backendRows(rest), m);
      let survivorSlots = 0;
      let moved = 0;
      for (let s = 0; s < m; s++) {
        if (before[s] === gone) continue;
        survivorSlots++;
        const was = before[s]!;
        const now = after[s]! >= gone ? after[s]! + 1 : after[s]!; // indices of rest, mapped back
        if (was !== now) moved++;
      }
      expect(moved / survivorSlots).toBeLessThan(0.01);
    }
  });

  it('builds the same table whatever the order of the backends (every node agrees)', () => {
    const all = backends(50, (i) => 1 + (i % 3));
    const a = testhooks.maglevBuild(backendRows(all), 16381);
    const perm = [...all.keys()].sort((x, y) => ((x * 7919) % 50) - ((y * 7919) % 50));
    const b = testhooks.maglevBuild(backendRows(perm.map((i) => all[i]!)), 16381);
    const key = (i: number, list: typeof all) => `${list[i]![0].ip}:${list[i]![0].port}`;
    for (let s = 0; s < a.length; s++) expect(key(b[s]!, perm.map((i) => all[i]!))).toBe(key(a[s]!, all));
  });

  // maglev.cc fills with an occupancy bitmap, batched 8-wide or vector (AVX2, AVX-512) walks and an exact tail;
  // the reference walks the slot table as the paper writes it (the oracle). Same table, whichever walk this CPU
  // runs (a walk the CPU lacks falls back to a narrower one, so every CPU checks what it runs).
  it.each(['avx512', 'avx2', 'scalar'] as const)('the %s walk builds the reference table, slot for slot (seeded random backend sets, weights, M)', (walk) => {
    let seed = 0x5eed;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    // small primes: lanes past M wrap several times, and more backends than slots; M mod 32 = 31, 5, 1 (31, 37,
    // 97, 65537): the scalar walk's copy of the bitmap at bit offset M straddles words (maglev.cc double_bitmap)
    const primes = [3, 5, 7, 13, 31, 37, 97, 251, 1021, 4093, 16381, 65537, 131071];
    for (let round = 0; round < 40; round++) {
      const n = 1 + rnd(round % 3 === 0 ? 1200 : 60);
      const weighted = round % 2 === 1;
      const rows = backendRows(backends(n, () => (weighted ? rnd(6) : 1)));
      const m = primes[rnd(primes.length)]!;
      expect(Array.from(testhooks.maglevBuild(rows, m, walk)), `round ${round}: n=${n} m=${m}`).toEqual(Array.from(testhooks.maglevBuild(rows, m, 'reference')));
    }
  });

  // regression (review of s5maglev): the running remainder wrapped in 32 bits for weights near 2^32, so a
  // backend lost its turns (weights {0xffffffff, 0x80000001}, M = 7: backend 1 got no slot, the reference 2)
  it.each(['avx512', 'avx2', 'scalar'] as const)('the %s walk gives weights near 2^32 their turns', (walk) => {
    for (const ws of [[0xffffffff, 0x80000001], [0x80000001, 0xffffffff, 0xfffffffe], [0xffffffff, 1, 0x7fffffff]]) {
      const rows = backendRows(backends(ws.length, (i) => ws[i]!));
      for (const m of [7, 251, 65537]) expect(Array.from(testhooks.maglevBuild(rows, m, walk)), `${ws} m=${m}`).toEqual(Array.from(testhooks.maglevBuild(rows, m, 'reference')));
    }
  });

  it('rejects a table size that is not prime and malformed rows', () => {
    expect(() => testhooks.maglevBuild(backendRows(backends(3)), 16384)).toThrow(/prime/);
    expect(() => testhooks.maglevBuild(Buffer.alloc(23), 251)).toThrow(/24-byte/);
    expect(() => testhooks.maglevBuild(backendRows(backends(3)), 251, 'sse9' as 'scalar')).toThrow(/build is/);
    expect(() => testhooks.maglevBuild(backendRows(backends(3)), 251, true as unknown as 'reference')).toThrow(/build is/); // the old boolean form
  });

  it('an empty or all-zero-weight backend set gives an empty table', () => {
    expect(testhooks.maglevBuild(Buffer.alloc(0), 251).length).toBe(0);
    expect(testhooks.maglevBuild(backendRows(backends(3, () => 0)), 251).length).toBe(0);
  });
});
