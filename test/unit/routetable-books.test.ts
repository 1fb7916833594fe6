// RouteTable's books (src/agent/routetable.ts): since s21peer the claim counts and the installed routes are one Map
// (count × 2 + installed) instead of a Map of counts and a Set of installed routes; since s39 without the CIDRs at 3
// (claimed once, installed: the claims' trie tells those, booksOf), so the books are read here through booksOf over
// every CIDR of the pool and the Map checked to hold no 3 and no 0. On seeded random claim/release/
// flush sequences, with a runner that applies each batch at once to a fake kernel and fails lines at random (never
// the whole run, so what the table books as installed is exactly what the kernel holds), the books are checked after
// every step against the reference computed independently: the counts from the claims and releases made (a plain
// multiset kept here), the installed bit from the fake kernel; no entry for a CIDR neither claimed nor installed.
// With whole runs failing too (ip killed: the kernel may hold what is not booked) the counts are still exact, and
// once the failures stop and the table settles the books are exact again.
import { describe, expect, it } from 'vitest';
import { RouteTable, type BatchRunner, type RouteClaims } from '../../src/agent/routetable.js';
import { silentLogger } from '../../src/log.js';
import { cidrPool, prng, randomClaims, readBooks } from '../helpers/routeclaims.js';

function run(seed: number, killRuns: boolean): Promise<void> {
  const rnd = prng(seed);
  const kernel = new Set<string>();
  let lineFail = 0.1;
  const runner: BatchRunner = (ops) => {
    const killed = killRuns && rnd() < 0.2;
    const failed = new Map<number, string>();
    ops.forEach((line, i) => {
      const [, verb, cidr] = line.split(' ');
      if (rnd() < (killed ? 0.5 : lineFail)) return void failed.set(i, 'RTNETLINK answers: Network is down');
      if (verb === 'replace') kernel.add(cidr!);
      else if (!kernel.delete(cidr!)) failed.set(i, 'RTNETLINK answers: No such process');
    });
    return killed ? Promise.reject(new Error('ip -batch exited with SIGKILL')) : Promise.resolve({ failed });
  };
  const t = new RouteTable('wm0', runner, silentLogger, { retryMs: 1e9 });
  const counts = new Map<string, number>(); // the reference multiset of claims
  const counting: RouteClaims = {
    claim: (rs) => (rs.forEach((r) => counts.set(r, (counts.get(r) ?? 0) + 1)), t.claim(rs)),
    release: (rs) => (rs.forEach((r) => (counts.get(r) === 1 ? counts.delete(r) : counts.set(r, counts.get(r)! - 1))), t.release(rs)),
    flush: () => t.flush(),
    covers: (a) => t.covers(a),
  };
  const pool = cidrPool(16);
  /** The books as count × 2 + installed per CIDR, 0 left out (read through booksOf: see the file's comment). */
  const books = (): Map<string, number> => {
    const raw: Map<string, number> = t['books'];
    for (const v of raw.values()) expect(v === 0 || v === 3, `a books entry of ${v}`).toBe(false);
    return readBooks(t, [...pool, ...kernel]);
  };
  const expected = (): Map<string, number> => {
    const m = new Map<string, number>();
    for (const c of new Set([...counts.keys(), ...kernel])) m.set(c, (counts.get(c) ?? 0) * 2 + (kernel.has(c) ? 1 : 0));
    return new Map([...m].sort());
  };
  let step = 0;
  return randomClaims(counting, rnd, {
    steps: 300,
    peers: 10,
    pool,
    between: async () => {
      await new Promise((r) => setImmediate(r)); // the batch started (if any) is booked
      const ctx = `seed ${seed} step ${step++}`;
      if (!killRuns) expect(new Map([...books()].sort()), ctx).toEqual(expected());
      else expect(new Map([...books()].map(([c, v]) => [c, v >> 1] as const).filter(([, n]) => n > 0).sort()), ctx).toEqual(new Map([...counts].sort()));
      for (const v of books().values()) expect(v, ctx).toBeGreaterThan(0);
    },
  }).then(async () => {
    // the failures stop: failed lines and a killed run's CIDRs are written again on the next flushes
    killRuns = false;
    lineFail = 0;
    for (let i = 0; i < 10 && t.pending > 0; i++) (t.flush(), await t.flushed(), await new Promise((r) => setImmediate(r)));
    expect(t.pending).toBe(0);
    expect([...kernel].sort(), `seed ${seed} kernel`).toEqual([...counts.keys()].sort());
    expect(new Map([...books()].sort()), `seed ${seed} settled`).toEqual(expected());
    await t.close();
  });
}

describe('RouteTable books: claim counts and installed routes in one map', () => {
  for (let seed = 1; seed <= 12; seed++) it(`seed ${seed}, lines failing`, () => run(seed, false));
  for (let seed = 13; seed <= 20; seed++) it(`seed ${seed}, lines and whole runs failing`, () => run(seed, true));
});
