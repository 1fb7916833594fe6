import { describe, expect, it } from 'vitest';
import { checkShape, clusterPodCIDRs, quantilesBySecond } from '../../bench/cp-load.js';
import { parsePrefix, prefixCovers, type Prefix } from '../../src/net/ip.js';

// Oracle: two prefixes overlap exactly when one covers the other; every cluster's pod CIDRs must sit inside
// 100.64.0.0/10 and overlap no other cluster's (kvstoremesh refuses records in a contested range).
const overlap = (a: Prefix, b: Prefix) => prefixCovers(a, b) || prefixCovers(b, a);
const CGNAT = parsePrefix('100.64.0.0/10');

describe('bench cp-load shapes', () => {
  it('accepts shapes whose clusters own disjoint pod CIDRs and refuses those that would overlap the agent\'s /24', () => {
    for (const [k, n] of [[16, 1000], [8, 2046], [32, 511], [1, 2046]]) {
      expect(() => checkShape(k, n)).not.toThrow();
      const per = Array.from({ length: k }, (_, i) => clusterPodCIDRs({ nodes: n }, i + 1).map((c) => parsePrefix(c)));
      for (const p of per.flat()) expect(prefixCovers(CGNAT, p)).toBe(true);
      for (let x = 0; x < k; x++) for (let y = x + 1; y < k; y++) for (const a of per[x]!) for (const b of per[y]!) expect(overlap(a, b)).toBe(false);
    }
    // c17 of 1000 nodes would get 100.127.0.0/16, holding c1's 100.127.255.0/24
    expect(() => checkShape(17, 1000)).toThrow(/pod \/24s/);
    expect(() => checkShape(33, 10)).toThrow(/--clusters/);
    expect(() => checkShape(2, 2047)).toThrow(/--nodes/);
    expect(() => checkShape(0, 10)).toThrow(/--clusters/);
  });
});

describe('bench quantilesBySecond (the churn read by second)', () => {
  it('buckets samples by whole second of their send time and reads the element at rank floor(q * n) of each', () => {
    const t0 = 1_700_000_000_000;
    // second 0: 2..100 ms given out of order (53 is prime to 99, so (i * 53) % 99 runs through 0..98), and 1000 ms
    // sent 5 ms before t0 (counted in second 0: without it, p99 would read 100); sorted that is 2..100, 1000:
    // p50 = rank 50 = 52, p99 = rank 99 = 1000
    const s0 = Array.from({ length: 99 }, (_, i) => [t0 + ((i * 37) % 1000), ((i * 53) % 99) + 2] as [number, number]);
    // second 1: nothing; second 2: one sample; second 3: 1..200 ms, where rank floor(0.99 * 200) = 198 is 199, not the maximum
    const s3 = Array.from({ length: 200 }, (_, i) => [t0 + 3_000 + i, 200 - i] as [number, number]);
    const got = quantilesBySecond([...s0, [t0 - 5, 1000], [t0 + 2_999, 7], ...s3], t0);
    expect(got).toHaveLength(4);
    expect(got[0]).toEqual({ p50: 52, p99: 1000 });
    expect(got[1]).toEqual({ p50: NaN, p99: NaN });
    expect(got[2]).toEqual({ p50: 7, p99: 7 });
    expect(got[3]).toEqual({ p50: 101, p99: 199 });
    expect(quantilesBySecond([], t0)).toEqual([]);
  });
});
