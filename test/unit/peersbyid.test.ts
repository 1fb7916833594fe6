import { describe, expect, it } from 'vitest';
import { PeersById } from '../../src/wireguard/peersbyid.js';
import { prng } from '../helpers/prng.js';

describe('PeersById (the device peers by id: a sorted array)', () => {
  it('answers as a Map over random adds, gets and deletes, ids increasing with gaps', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const r = prng(seed);
      const t = new PeersById<{ id: number }>();
      const ref = new Map<number, { id: number }>();
      let next = 1;
      for (let op = 0; op < 3000; op++) {
        const x = r();
        if (x < 0.45) {
          next += 1 + Math.floor(r() * 3); // ids are never reused; some are skipped (a peer added and removed elsewhere)
          const p = { id: next };
          t.add(p);
          ref.set(p.id, p);
        } else if (x < 0.75) {
          const id = Math.floor(r() * (next + 3)); // held, deleted, never held, past the last
          expect(t.delete(id)).toBe(ref.delete(id));
        } else {
          const id = Math.floor(r() * (next + 3));
          expect(t.get(id)).toBe(ref.get(id));
        }
        expect(t.size).toBe(ref.size);
        expect(t.slots).toBeLessThanOrEqual(2 * t.size + 17);
      }
      for (const [id, p] of ref) expect(t.get(id)).toBe(p);
    }
  });

  it('deletes the first, a middle and the last peer, and gets what is left', () => {
    const t = new PeersById<{ id: number }>();
    const ps = [1, 2, 5, 9, 10].map((id) => ({ id }));
    ps.forEach((p) => t.add(p));
    expect(t.delete(1)).toBe(true);
    expect(t.delete(5)).toBe(true);
    expect(t.delete(10)).toBe(true);
    expect(t.delete(10)).toBe(false);
    expect([t.get(1), t.get(2), t.get(5), t.get(9), t.get(10)]).toEqual([undefined, ps[1], undefined, ps[3], undefined]);
    expect(t.size).toBe(2);
  });

  it('deletes oldest first (a reconcile dropping most peers) within its bound, answering right throughout', () => {
    const t = new PeersById<{ id: number }>();
    const ps = Array.from({ length: 5000 }, (_, i) => ({ id: 2 * i + 1 }));
    ps.forEach((p) => t.add(p));
    ps.forEach((p, i) => {
      expect(t.delete(p.id)).toBe(true);
      expect(t.delete(p.id)).toBe(false); // a tombstone is not a peer
      if (i % 97 === 0) {
        expect(t.get(p.id)).toBeUndefined();
        if (i + 1 < ps.length) expect(t.get(ps[i + 1]!.id)).toBe(ps[i + 1]);
        expect(t.get(p.id + 1)).toBeUndefined(); // an id never held, between two
      }
      expect(t.slots).toBeLessThanOrEqual(2 * t.size + 17);
    });
    expect([t.size, t.slots]).toEqual([0, 0]);
    t.add({ id: 10_001 }); // ids go on above the last deleted
    expect(t.get(10_001)).toEqual({ id: 10_001 });
  });

  it('refuses an id not above the last one held (the search relies on the order)', () => {
    const t = new PeersById<{ id: number }>();
    t.add({ id: 3 });
    expect(() => t.add({ id: 3 })).toThrow(RangeError);
    expect(() => t.add({ id: 2 })).toThrow(RangeError);
    expect(() => t.add({ id: Number.NaN })).toThrow(RangeError);
    expect(() => t.add({ id: Infinity })).toThrow(RangeError); // it would refuse every later peer
    t.add({ id: 4 });
    expect(t.size).toBe(2);
  });
});
