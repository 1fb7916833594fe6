// ListWatcher's key → digest table (src/controlplane/digesttable.ts: a Map of Smi indices and a Float64 column)
// against a Map as the oracle on seeded random sequences: same answers, keys in the same order, freed slots reused.
import { describe, expect, it } from 'vitest';
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
          // create revisions: 0 (unknown), small, and up to 2^53 - 1
          const cr = step % 5 === 0 ? 0 : step % 7 === 0 ? 2 ** 53 - 1 : step;
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
