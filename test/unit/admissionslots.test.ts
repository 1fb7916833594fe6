/**
 * AdmissionSlots (src/agent/admissionslots.ts) against what it replaced: a Map of candidates (the record, or a
 * wrapper naming its source when the record does not) and a Map of admitted values, on random sequences of the
 * calls admission makes. Every read and the candidates' iteration must answer alike; the admitted keys as a set
 * (the one Map's order is not the two Maps').
 */
import { describe, expect, it } from 'vitest';
import { AdmissionSlots } from '../../src/agent/admissionslots.js';
import { prng } from '../helpers/prng.js';

/** The two Maps admission held before (admission.ts Candidates and a Map). */
class Reference {
  readonly cand = new Map<string, { cluster: string; rec: unknown }>();
  readonly admitted = new Map<string, unknown>();
}

describe('AdmissionSlots', () => {
  it('answers as a Map of candidates and a Map of admitted values would, on random sequences', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
      const t = new AdmissionSlots();
      const ref = new Reference();
      const keys = ['k0', 'k1', 'k2', 'k3', 'k4'];
      const clusters = ['c1', 'c2'];
      // records that name their cluster (nodes), one that names another, and ones that name none (identities)
      const recs: unknown[] = [{ cluster: 'c1', n: 1 }, { cluster: 'c1', n: 2 }, { cluster: 'c2', n: 3 }, { n: 4 }, { n: 5 }];
      for (let step = 0; step < 400; step++) {
        const key = pick(keys);
        switch (Math.floor(r() * 5)) {
          case 0: {
            const cluster = pick(clusters), rec = pick(recs);
            t.candidates.set(key, cluster, rec);
            ref.cand.set(key, { cluster, rec });
            break;
          }
          case 1:
            t.candidates.delete(key);
            ref.cand.delete(key);
            break;
          case 2: {
            // admission admits the candidate itself (nodes) or what Trust made of it (another object)
            const rec = ref.cand.get(key)?.rec ?? pick(recs);
            const v = r() < 0.7 ? rec : { madeOf: rec };
            t.admitted.set(key, v);
            ref.admitted.set(key, v);
            break;
          }
          case 3:
            t.admitted.delete(key);
            ref.admitted.delete(key);
            break;
          default:
            break;
        }
        for (const k of keys) {
          expect(t.candidates.get(k)).toEqual(ref.cand.get(k));
          expect(t.candidates.get(k)?.rec).toBe(ref.cand.get(k)?.rec);
          expect(t.admitted.get(k)).toBe(ref.admitted.get(k));
        }
        expect(new Map([...t.candidates].map(([k, c]) => [k, c.rec]))).toEqual(new Map([...ref.cand].map(([k, c]) => [k, c.rec])));
        expect(new Set(t.admitted.keys())).toEqual(new Set(ref.admitted.keys()));
      }
    }
  });

  it('holds an honest record, candidate and admitted, as one value: no wrapper', () => {
    const t = new AdmissionSlots();
    const rec = { cluster: 'c1', name: 'n1' };
    t.candidates.set('k', 'c1', rec);
    t.admitted.set('k', rec);
    expect((t as unknown as { m: Map<string, unknown> }).m.get('k')).toBe(rec);
    // a record that names another cluster than its source is never taken as its own
    t.candidates.set('k', 'c2', rec);
    expect(t.candidates.get('k')).toEqual({ cluster: 'c2', rec });
    expect((t as unknown as { m: Map<string, unknown> }).m.get('k')).not.toBe(rec);
  });

  it("visits every candidate once while each visit admits or withdraws values (recheck's and release's pattern)", () => {
    const t = new AdmissionSlots();
    const recs = Array.from({ length: 50 }, (_, i) => ({ cluster: 'c1', n: i }));
    recs.forEach((r, i) => t.candidates.set(`k${i}`, 'c1', r));
    for (let i = 0; i < 50; i += 3) t.admitted.set(`k${i}`, recs[i]);
    const visited: string[] = [];
    for (const [k, c] of t.candidates) {
      visited.push(k);
      // admit this one, withdraw another (as a conflict's withdrawal does): no key is added or moved
      t.admitted.set(k, c.rec);
      t.admitted.delete(`k${(Number(k.slice(1)) + 7) % 50}`);
    }
    expect(visited).toEqual(recs.map((_, i) => `k${i}`));
  });

  it('keeps an admitted value while its candidate goes, and drops the key when both have', () => {
    const t = new AdmissionSlots();
    const rec = { cluster: 'c1' };
    t.candidates.set('k', 'c1', rec);
    t.admitted.set('k', rec);
    t.candidates.delete('k');
    expect(t.candidates.get('k')).toBeUndefined();
    expect(t.admitted.get('k')).toBe(rec);
    expect([...t.candidates]).toEqual([]);
    t.admitted.delete('k');
    expect((t as unknown as { m: Map<string, unknown> }).m.size).toBe(0);
  });
});
