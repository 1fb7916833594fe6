// The path-compressed prefix trie (src/net/prefixtrie.ts) against an independent oracle (test/helpers/prefixtrie-list.ts):
// a plain list of (prefix, owner) in insertion order, answering by a linear scan with its own bit comparison (nothing shared
// with the trie or test/helpers/prefixtrie-oracle.ts). Seeded random insert/remove sequences over IPv4 and
// IPv6 prefixes of mixed lengths (0 and full included), addresses clustered (long shared prefixes) and spread,
// bits past a prefix's length left random (the trie reads only the first `cidr` bits), duplicate owners on one
// prefix and removals of absent things; after every step all three queries on random probes with and without
// `except`, the structure (test/helpers/prefixtrie-shape.ts) and its bound: per family at most
// 2 × stored prefixes − 1 nodes plus the root, whatever the addresses.
import { describe, expect, it } from 'vitest';
import { PrefixTrie } from '../../src/net/prefixtrie.js';
import type { Prefix } from '../../src/net/ip.js';
import { prng } from '../helpers/prng.js';
import { familyNodes, trieShape } from '../helpers/prefixtrie-shape.js';
import { EMPTY, expectStructure, ListOracle } from '../helpers/prefixtrie-list.js';

type Rand = () => number;

/** A universe of prefixes: per family, clustered ones (under one random base, differing in a few late bits) and spread ones. */
function universe(rand: Rand, size: number): Prefix[] {
  const out: Prefix[] = [];
  const base4 = Buffer.from([...Array(4)].map(() => Math.floor(rand() * 256)));
  const base6 = Buffer.from([...Array(16)].map(() => Math.floor(rand() * 256)));
  for (let i = 0; i < size; i++) {
    const six = rand() < 0.5;
    const full = six ? 128 : 32;
    const addr = Buffer.from([...Array(six ? 16 : 4)].map(() => Math.floor(rand() * 256)));
    const r = rand();
    const cidr = r < 0.015 ? 0 : r < 0.45 ? full : r < 0.6 ? full - 1 - Math.floor(rand() * 8) : Math.floor(rand() * (full + 1));
    if (rand() < 0.6) {
      // clustered: the base's bits up to a point late in the prefix, random after
      const keep = Math.max(0, cidr - 1 - Math.floor(rand() * 6));
      const base = six ? base6 : base4;
      for (let b = 0; b < keep; b++) {
        const byte = b >> 3;
        const m = 0x80 >> (b & 7);
        addr[byte] = (addr[byte]! & ~m) | (base[byte]! & m);
      }
    }
    out.push({ addr, cidr });
  }
  return out;
}

/** p's address with other random bits past its length. */
function junkPast(rand: Rand, p: Prefix): Buffer {
  const addr = Buffer.from(p.addr);
  for (let b = p.cidr; b < addr.length * 8; b++) if (rand() < 0.5) addr[b >> 3]! ^= 0x80 >> (b & 7);
  return addr;
}

/** A probe: a stored prefix (other junk past its length, maybe shortened or lengthened), or a fresh one. */
function probe(rand: Rand, pool: Prefix[]): Prefix {
  if (rand() < 0.3) return universe(rand, 1)[0]!;
  const p = pool[Math.floor(rand() * pool.length)]!;
  const full = p.addr.length * 8;
  const addr = junkPast(rand, p);
  const r = rand();
  const cidr = r < 0.4 ? p.cidr : r < 0.7 ? Math.floor(rand() * (p.cidr + 1)) : p.cidr + Math.floor(rand() * (full - p.cidr + 1));
  return { addr, cidr };
}


describe('PrefixTrie (path-compressed) against a list oracle', () => {
  for (const seed of [7, 11, 12345, 271828, 31337, 4242]) {
    it(`answers as the list on random changes, keeps its shape and bound, and drains to its roots (seed ${seed})`, () => {
      const rand = prng(seed);
      const pool = universe(rand, 48);
      const owners = ['a', 'b', 'c', 'd'];
      const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const t = new PrefixTrie<string>();
      const o = new ListOracle();
      for (let step = 0; step < 700; step++) {
        // a prefix of the pool, given as stored or with other bits past its length
        const p0 = pick(pool);
        const q = rand() < 0.3 ? { addr: junkPast(rand, p0), cidr: p0.cidr } : p0;
        const owner = pick(owners);
        if (rand() < 0.55) {
          t.insert(q, owner);
          o.insert(q, owner);
        } else {
          t.remove(q, owner); // often absent: no such pair, or no such prefix
          o.remove(q, owner);
        }
        const got: unknown[] = [];
        const want: unknown[] = [];
        for (let i = 0; i < 10; i++) {
          const x = probe(rand, pool);
          for (const except of [undefined, pick(owners)]) {
            got.push([t.covering(x, except), t.within(x, except), t.overlapping(x, except)]);
            want.push([o.covering(x, except), o.within(x, except), o.overlapping(x, except)]);
          }
          for (const w of owners) {
            got.push(t.holds(x, w));
            want.push(o.holds(x, w));
          }
        }
        expect({ step, got }).toEqual({ step, got: want });
        expectStructure(t, o);
      }
      while (o.entries.length > 0) {
        const e = o.entries[Math.floor(rand() * o.entries.length)]!;
        t.remove(e.p, e.owner);
        o.remove(e.p, e.owner);
        expectStructure(t, o);
      }
      expect(trieShape(t)).toEqual(EMPTY);
    });
  }

  it('holds ≤ 2 nodes per stored prefix however spread: random IPv4 /32s, IPv6 /128s under one /64, and drains', () => {
    const rand = prng(99);
    const t = new PrefixTrie<string>();
    const stored: Prefix[] = [];
    const slash64 = Buffer.from([...Array(8)].map(() => Math.floor(rand() * 256)));
    for (let i = 0; i < 3000; i++) {
      const six = i % 2 === 1;
      const addr = six
        ? Buffer.concat([slash64, Buffer.from([...Array(8)].map(() => Math.floor(rand() * 256)))])
        : Buffer.from([...Array(4)].map(() => Math.floor(rand() * 256)));
      stored.push({ addr, cidr: six ? 128 : 32 });
      t.insert(stored[i]!, `n${i}`);
    }
    const n = familyNodes(t);
    expect(n.v4).toBeLessThanOrEqual(1 + 2 * 1500 - 1);
    expect(n.v6).toBeLessThanOrEqual(1 + 2 * 1500 - 1);
    expect(trieShape(t).faults).toEqual([]);
    for (const [i, p] of stored.entries()) expect(t.covering(p)).toBe(`n${i}`);
    for (const [i, p] of stored.entries()) t.remove(p, `n${i}`);
    expect(trieShape(t)).toEqual(EMPTY);
  });

  it('regression (review of s19trie): an undefined owner is ignored, as before, and leaves no node counting an entry', () => {
    const t = new PrefixTrie<string | undefined>();
    const p8: Prefix = { addr: Buffer.from([100, 64, 0, 0]), cidr: 10 };
    const p16: Prefix = { addr: Buffer.from([100, 65, 0, 0]), cidr: 16 };
    t.insert(p8, undefined);
    t.insert(p16, 'b');
    expect(t.covering(p16)).toBe('b');
    t.remove(p16, 'b');
    t.remove(p8, undefined);
    expect(trieShape(t as PrefixTrie<string>)).toEqual(EMPTY);
  });
});
