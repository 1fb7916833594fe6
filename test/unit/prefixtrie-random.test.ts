// The path-compressed prefix trie (src/net/prefixtrie.ts) against an independent oracle: a plain list of
// (prefix, owner) in insertion order, answering by a linear scan with its own bit comparison (nothing shared
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
import { familyNodes, nodesNeeded, trieShape } from '../helpers/prefixtrie-shape.js';

const bitAt = (a: Buffer, i: number): number => (a[Math.floor(i / 8)]! >> (7 - (i % 8))) & 1;
/** Whether a and b agree on their first n bits. */
function agree(a: Buffer, b: Buffer, n: number): boolean {
  for (let i = 0; i < n; i++) if (bitAt(a, i) !== bitAt(b, i)) return false;
  return true;
}
const samePrefix = (a: Prefix, b: Prefix): boolean =>
  a.addr.length === b.addr.length && a.cidr === b.cidr && agree(a.addr, b.addr, a.cidr);
/** Prefixes in the order a trie walk meets them: a 0 bit before a 1 bit, a prefix before what extends it. */
function lexOrder(a: Prefix, b: Prefix): number {
  for (let i = 0; i < Math.min(a.cidr, b.cidr); i++) if (bitAt(a.addr, i) !== bitAt(b.addr, i)) return bitAt(a.addr, i) - bitAt(b.addr, i);
  return a.cidr - b.cidr;
}
const keyOf = (p: Prefix): string => {
  let s = p.addr.length === 4 ? '4:' : '6:';
  for (let i = 0; i < p.cidr; i++) s += String(bitAt(p.addr, i));
  return s;
};

class ListOracle {
  readonly entries: { p: Prefix; owner: string }[] = [];

  insert(p: Prefix, owner: string): void {
    if (!this.entries.some((e) => e.owner === owner && samePrefix(e.p, p))) this.entries.push({ p, owner });
  }

  remove(p: Prefix, owner: string): void {
    const i = this.entries.findIndex((e) => e.owner === owner && samePrefix(e.p, p));
    if (i >= 0) this.entries.splice(i, 1);
  }

  /** The shortest stored prefix containing p, its oldest owner (not `except`). */
  covering(p: Prefix, except?: string): string | undefined {
    let best: { p: Prefix; owner: string } | undefined;
    for (const e of this.entries) {
      if (e.owner === except || e.p.addr.length !== p.addr.length || e.p.cidr > p.cidr || !agree(e.p.addr, p.addr, e.p.cidr)) continue;
      if (!best || e.p.cidr < best.p.cidr) best = e; // equal length: the same prefix, the older entry kept
    }
    return best?.owner;
  }

  /** The first stored prefix inside p in walk order, its oldest owner (not `except`). */
  within(p: Prefix, except?: string): string | undefined {
    let best: { p: Prefix; owner: string } | undefined;
    for (const e of this.entries) {
      if (e.owner === except || e.p.addr.length !== p.addr.length || e.p.cidr < p.cidr || !agree(e.p.addr, p.addr, p.cidr)) continue;
      if (!best || lexOrder(e.p, best.p) < 0) best = e;
    }
    return best?.owner;
  }

  overlapping(p: Prefix, except?: string): string | undefined {
    return this.covering(p, except) ?? this.within(p, except);
  }
}

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

/** The trie holds exactly the oracle's pairs, sound, with the nodes a path-compressed trie needs and within its bound. */
function expectStructure(t: PrefixTrie<string>, o: ListOracle): void {
  const held = new Map<string, string[]>();
  for (const e of o.entries) {
    const k = keyOf(e.p);
    held.set(k, [...(held.get(k) ?? []), e.owner]);
  }
  const pairs = (six: boolean) => o.entries.filter((e) => (e.p.addr.length === 16) === six).length;
  const { faults, rootCount, nodes, owners } = trieShape(t);
  expect({ faults, rootCount, nodes, owners }).toEqual({
    faults: [],
    rootCount: { v4: pairs(false), v6: pairs(true) },
    nodes: nodesNeeded(held.keys()),
    owners: held,
  });
  const stored = (family: string) => [...held.keys()].filter((k) => k.startsWith(family) && k.length > 2).length;
  const perFamily = familyNodes(t);
  for (const [fam, n] of [['4:', perFamily.v4], ['6:', perFamily.v6]] as const) {
    expect(n).toBeLessThanOrEqual(1 + Math.max(0, 2 * stored(fam) - 1));
  }
}

const EMPTY = { nodes: 2, rootCount: { v4: 0, v6: 0 }, owners: new Map(), faults: [] };

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
