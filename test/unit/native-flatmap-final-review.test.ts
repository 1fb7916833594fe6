// Review of s23final's flatmapProbeCost bounds (native/src/testhooks/flatmap_probe_wrap.cc, 81833b3): `tables` read as
// a double and checked an integer in 1..10,000, keys ≤ 2^22, keys × tables ≤ 2^28, before allocating. The odd numbers
// a hostile or careless caller passes; all held at 0a43c0d (each rejected with a TypeError, the bounds themselves run).
import { describe, expect, it } from 'vitest';
import { testhooks } from '../../src/native/testhooks.js';

const one = new Uint32Array([1]);

describe('s23final review: flatmapProbeCost table count and key bounds', () => {
  it('rejects -0, ±Infinity, NaN, 1e4 + 0.5, 2^53 (+2), 2^31, 1 - 2^-53, 1e4 + ε, the smallest double and non-numbers', () => {
    const bad: unknown[] = [-0, 0, Infinity, -Infinity, Number.NaN, 1e4 + 0.5, 2 ** 53, 2 ** 53 + 2, 2 ** 31, -(2 ** 32) + 5, 1 - 2 ** -53, 10000.000000000002, Number.MIN_VALUE];
    for (const t of bad) expect(() => testhooks.flatmapProbeCost('identity', one, t as number), String(t)).toThrow(TypeError);
    for (const t of ['3', 3n, undefined, new Number(3)]) expect(() => testhooks.flatmapProbeCost('identity', one, t as unknown as number)).toThrow(TypeError);
  });

  it('runs at the bounds: 1 and 10,000 tables; 2^22 keys x 64 tables = 2^28; one more table is refused', () => {
    expect(testhooks.flatmapProbeCost('identity', one, 1).meanHit).toHaveLength(1);
    expect(testhooks.flatmapProbeCost('identity', one, 10000).meanHit).toHaveLength(10000);
    const many = new Uint32Array(2 ** 22); // all zero: one distinct key, the bound counts the array
    expect(testhooks.flatmapProbeCost('identity', many, 64).slots).toBe(16);
    expect(() => testhooks.flatmapProbeCost('identity', many, 65)).toThrow(TypeError);
  });
});
