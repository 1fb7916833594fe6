// The prefix trie's node store (src/net/trienodes.ts: nodes by index in typed arrays, a free list, shrinking)
// under heavy churn, against the plain list of test/helpers/prefixtrie-list.ts: long seeded insert/remove
// sequences over a small working set of IPv4 and IPv6 prefixes mixed, with adversarial addresses (neighbours
// differing in their first bits, in their last bit, at IPv6 word boundaries 31/32, 63/64, 95/96; lengths at
// those boundaries), so that nodes are freed and reused all the time. After every step: all three queries on
// probes, with and without `except`; every few steps the structure, the node bound per family
// (root + max(0, 2P − 1)) and the store's own (no index leaked or shared, free list exact, capacity
// ≤ max(16, 4 × nodes in use)): test/helpers/prefixtrie-shape.ts.
import { describe, expect, it } from 'vitest';
import { PrefixTrie } from '../../src/net/prefixtrie.js';
import type { Prefix } from '../../src/net/ip.js';
import type { TrieNodes } from '../../src/net/trienodes.js';
import { prng } from '../helpers/prng.js';
import { trieShape } from '../helpers/prefixtrie-shape.js';
import { EMPTY, expectStructure, ListOracle } from '../helpers/prefixtrie-list.js';

type Rand = () => number;
const flip = (a: Buffer, bit: number): void => void (a[bit >> 3]! ^= 0x80 >> (bit & 7));
const randomAddr = (rand: Rand, six: boolean): Buffer => Buffer.from([...Array(six ? 16 : 4)].map(() => Math.floor(rand() * 256)));

/**
 * An adversarial prefix near one of a few bases: the base with one early bit flipped (neighbours split at the
 * root), or its last bit flipped (they share all but one), or a bit at an IPv6 word boundary; lengths full,
 * at a word boundary, 0, or random. Bits past the length are left random.
 */
function adversarial(rand: Rand, bases: Buffer[]): Prefix {
  const base = bases[Math.floor(rand() * bases.length)]!;
  const full = base.length * 8;
  const addr = Buffer.from(base);
  const r = rand();
  const at =
    r < 0.25 ? Math.floor(rand() * 3) : r < 0.5 ? full - 1 - Math.floor(rand() * 2) : full === 128 && r < 0.75 ? [31, 32, 63, 64, 95, 96][Math.floor(rand() * 6)]! : Math.floor(rand() * full);
  flip(addr, at);
  const c = rand();
  const bounds = full === 128 ? [32, 64, 96] : [8, 16, 24];
  const cidr = c < 0.5 ? full : c < 0.7 ? bounds[Math.floor(rand() * 3)]! : c < 0.72 ? 0 : Math.floor(rand() * (full + 1));
  for (let b = cidr; b < full; b++) if (rand() < 0.5) flip(addr, b);
  return { addr, cidr };
}

const storeOf = (t: PrefixTrie<string>, six: boolean): TrieNodes<unknown> =>
  (t as unknown as { v4: TrieNodes<unknown>; v6: TrieNodes<unknown> })[six ? 'v6' : 'v4'];

describe('PrefixTrie node store under churn against a list', () => {
  for (const seed of [3, 77, 2024, 65537]) {
    it(`answers as the list, keeps its bounds and reuses freed nodes over long churn (seed ${seed})`, () => {
      const rand = prng(seed);
      const bases = [randomAddr(rand, false), randomAddr(rand, false), randomAddr(rand, true), randomAddr(rand, true)];
      const owners = ['a', 'b', 'c'];
      const t = new PrefixTrie<string>();
      const o = new ListOracle();
      const peak = [1, 1];
      for (let step = 0; step < 4000; step++) {
        // a working set of ~40 pairs: inserts when below, removals of a held pair when above
        const held = o.entries.length;
        if (rand() < (held < 40 ? 0.7 : 0.3)) {
          const p = adversarial(rand, bases);
          const owner = owners[Math.floor(rand() * owners.length)]!;
          t.insert(p, owner);
          o.insert(p, owner);
        } else if (held > 0) {
          const e = o.entries[Math.floor(rand() * held)]!;
          t.remove(e.p, e.owner);
          o.remove(e.p, e.owner);
        }
        const got: unknown[] = [];
        const want: unknown[] = [];
        for (let i = 0; i < 6; i++) {
          const x = i < 3 || o.entries.length === 0 ? adversarial(rand, bases) : o.entries[Math.floor(rand() * o.entries.length)]!.p;
          const except = i % 2 === 0 ? undefined : owners[Math.floor(rand() * owners.length)];
          got.push([t.covering(x, except), t.within(x, except), t.overlapping(x, except)]);
          want.push([o.covering(x, except), o.within(x, except), o.overlapping(x, except)]);
        }
        expect({ step, got }).toEqual({ step, got: want });
        if (step % 8 === 7) expectStructure(t, o);
        // freed indices are reused before new ones: never more handed out than were ever in use at once
        for (const six of [false, true]) {
          const s = storeOf(t, six);
          peak[+six] = Math.max(peak[+six]!, s.live);
          expect(s.top).toBeLessThanOrEqual(peak[+six]!);
        }
      }
      while (o.entries.length > 0) {
        const e = o.entries[Math.floor(rand() * o.entries.length)]!;
        t.remove(e.p, e.owner);
        o.remove(e.p, e.owner);
      }
      expect(trieShape(t)).toEqual(EMPTY);
    });
  }

  it('reuses the latest freed nodes first: a prefix removed and inserted again takes back the same indices', () => {
    const t = new PrefixTrie<string>();
    const a: Prefix = { addr: Buffer.from([100, 64, 0, 1]), cidr: 32 };
    const b: Prefix = { addr: Buffer.from([198, 18, 0, 1]), cidr: 32 };
    const c: Prefix = { addr: Buffer.from([100, 64, 0, 0]), cidr: 32 };
    t.insert(a, 'a');
    t.insert(b, 'b');
    t.insert(c, 'c'); // a branch node 100.64.0.0/31 and c's node
    const s = storeOf(t, false);
    const handedOut = s.top;
    t.remove(c, 'c'); // frees c's node, then the branch (now unowned with one child)
    expect(s.live).toBe(3);
    t.insert(c, 'c'); // the branch node made first: it takes the index freed last (the branch's, 3)
    expect({ handedOut: s.top, live: s.live, branch: s.kid(0, 0) }).toEqual({ handedOut, live: 5, branch: 3 });
    expect(trieShape(t).faults).toEqual([]);
    expect([t.covering(a), t.covering(b), t.covering(c)]).toEqual(['a', 'b', 'c']);
  });

  it('shrinks once mostly freed (capacity ≤ max(16, 4 × nodes in use)), keeps every answer, and grows again', () => {
    const rand = prng(5150);
    const t = new PrefixTrie<string>();
    const stored: Prefix[] = [];
    for (let i = 0; i < 4000; i++) {
      stored.push({ addr: randomAddr(rand, i % 2 === 1), cidr: i % 2 === 1 ? 128 : 32 });
      t.insert(stored[i]!, `n${i}`);
    }
    expect([storeOf(t, false).capacity, storeOf(t, true).capacity].every((c) => c >= 3999)).toBe(true);
    // remove all but every 100th: a node in use per ~50 allocated, so both families' arrays are copied smaller
    for (let i = 0; i < stored.length; i++) if (i % 100 >= 2) t.remove(stored[i]!, `n${i}`);
    for (const six of [false, true]) {
      const s = storeOf(t, six);
      expect(s.capacity).toBeLessThanOrEqual(Math.max(16, 4 * s.live));
      expect(s.capacity).toBeLessThan(1000); // from ≥ 3999
    }
    expect(trieShape(t).faults).toEqual([]);
    for (let i = 0; i < stored.length; i++) expect(t.covering(stored[i]!)).toBe(i % 100 < 2 ? `n${i}` : undefined);
    for (let i = 0; i < stored.length; i++) if (i % 100 >= 2) t.insert(stored[i]!, `m${i}`);
    expect(trieShape(t).faults).toEqual([]);
    for (let i = 0; i < stored.length; i++) expect(t.covering(stored[i]!)).toBe(i % 100 < 2 ? `n${i}` : `m${i}`);
    for (let i = 0; i < stored.length; i++) t.remove(stored[i]!, i % 100 < 2 ? `n${i}` : `m${i}`);
    expect(trieShape(t)).toEqual(EMPTY);
    expect([storeOf(t, false).capacity, storeOf(t, true).capacity]).toEqual([16, 16]);
  });
});
