import { describe, expect, it } from 'vitest';
import { checkShape, clusterPodCIDRs } from '../../bench/cp-load.js';
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
