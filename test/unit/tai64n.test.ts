import { describe, expect, it } from 'vitest';
import { tai64n, tai64nAfter } from '../../src/wireguard/tai64n.js';

describe('TAI64N', () => {
  it('encodes the TAI64 label and whitened nanoseconds', () => {
    const t = tai64n(1_700_000_000_123);
    expect(t.length).toBe(12);
    expect(t.readBigUInt64BE(0)).toBe(0x400000000000000an + 1_700_000_000n);
    const ns = t.readUInt32BE(8);
    expect(ns % 0x1000000).toBe(0);
    expect(ns).toBeLessThanOrEqual(123_000_000);
    expect(123_000_000 - ns).toBeLessThan(0x1000000);
  });
  it('orders timestamps and is strictly monotonic beyond the whitening step', () => {
    const a = tai64n(1_700_000_000_000);
    const b = tai64n(1_700_000_000_020);
    const c = tai64n(1_700_000_001_000);
    expect(tai64nAfter(b, a)).toBe(true);
    expect(tai64nAfter(a, b)).toBe(false);
    expect(tai64nAfter(a, a)).toBe(false);
    expect(tai64nAfter(c, b)).toBe(true);
    // within one 16.8 ms step two stamps are equal: not "after"
    expect(tai64nAfter(tai64n(1_700_000_000_001), tai64n(1_700_000_000_000))).toBe(false);
  });
});
