// The small key table (src/agent/keytable.ts: a flat array up to SMALL_MAX entries, a Map above) against a Map
// as the oracle on seeded random sequences that cross the switch both ways: same values, same order.
import { describe, expect, it } from 'vitest';
import { ktDelete, ktEntries, ktGet, ktKeys, ktSet, ktSize, SMALL_MAX, type KeyTable } from '../../src/agent/keytable.js';
import { prng } from '../helpers/prng.js';

describe('KeyTable', () => {
  for (const seed of [1, 2, 3, 42, 9001]) {
    it(`agrees with a Map on random changes (seed ${seed})`, () => {
      const rand = prng(seed);
      const keys = Array.from({ length: SMALL_MAX * 2 }, (_, i) => `wiremesh/cache/ip/v2/c1/n1/100.64.0.${i}`);
      let t: KeyTable<number> | undefined;
      const m = new Map<string, number>();
      let sawMap = false;
      let sawBack = false; // an array again after a Map
      for (let step = 0; step < 3000; step++) {
        // phases that fill and drain, so the table crosses SMALL_MAX and SMALL_MAX / 2 both ways
        const fill = Math.floor(step / 500) % 2 === 0 ? 0.75 : 0.25;
        const k = keys[Math.floor(rand() * keys.length)]!;
        if (rand() < fill) {
          const v = Math.floor(rand() * 100);
          t = ktSet(t, k, v);
          m.set(k, v);
        } else {
          t = ktDelete(t, k);
          m.delete(k);
        }
        sawBack ||= sawMap && Array.isArray(t);
        sawMap ||= t instanceof Map;
        expect(ktSize(t)).toBe(m.size);
        expect(t === undefined).toBe(m.size === 0);
        expect([...ktEntries(t)]).toEqual([...m]);
        expect([...ktKeys(t)]).toEqual([...m.keys()]);
        expect(ktGet(t, k)).toBe(m.get(k));
        if (Array.isArray(t)) expect(t.length).toBeLessThanOrEqual(SMALL_MAX * 2);
      }
      expect([sawMap, sawBack]).toEqual([true, true]);
    });
  }
});
