// A plain list of (prefix, owner) in insertion order, answering by a linear scan with its own bit comparison
// (nothing shared with src/net/prefixtrie.ts or test/helpers/prefixtrie-oracle.ts): the independent reference
// of test/unit/prefixtrie-random.test.ts and test/unit/prefixtrie-churn.test.ts, with the check that a trie holds
// exactly its pairs, sound and within its node bound.
import { expect } from 'vitest';
import type { PrefixTrie } from '../../src/net/prefixtrie.js';
import type { Prefix } from '../../src/net/ip.js';
import { familyNodes, nodesNeeded, trieShape } from './prefixtrie-shape.js';

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

export class ListOracle {
  readonly entries: { p: Prefix; owner: string }[] = [];

  insert(p: Prefix, owner: string): void {
    if (!this.entries.some((e) => e.owner === owner && samePrefix(e.p, p))) this.entries.push({ p, owner });
  }

  remove(p: Prefix, owner: string): void {
    const i = this.entries.findIndex((e) => e.owner === owner && samePrefix(e.p, p));
    if (i >= 0) this.entries.splice(i, 1);
  }

  /** Whether p itself is stored with `owner`. */
  holds(p: Prefix, owner: string): boolean {
    return this.entries.some((e) => e.owner === owner && samePrefix(e.p, p));
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

/** The trie holds exactly the oracle's pairs, sound, with the nodes a path-compressed trie needs and within its bound. */
export function expectStructure(t: PrefixTrie<string>, o: ListOracle): void {
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

export const EMPTY = { nodes: 2, rootCount: { v4: 0, v6: 0 }, owners: new Map(), faults: [] };
