/**
 * A path-compressed binary trie (Patricia) of IP prefixes, each with its owners, and per node the number of
 * owner entries below it: "is any stored prefix covering P" and "is any stored prefix inside P" cost
 * O(prefix length), whatever the number stored. Admission (src/agent/admission.ts) uses it so that checking a
 * node's pod CIDRs and addresses against every other node is not O(nodes); RouteTable.covers too.
 *
 * Shape: each node holds its full prefix (length + address bits, masked), as the native allowed-IPs table
 * does (native/src/wireguard/allowedips.h), and a child only where the stored prefixes below it branch, so the
 * bits between a node and its child are skipped, not one node each. Every node but a family's root either has
 * owners or two children. Bound: per family, with P distinct prefixes stored (however many owners each),
 * nodes ≤ the root + max(0, 2P − 1), whatever the addresses: a remote choosing addresses whose neighbours
 * differ early (an IPv4 /32 cost up to 32 nodes of a plain bit trie, an IPv6 /128 up to 64 more under a /64
 * already held, 128 alone) no longer multiplies what each of them costs.
 *
 * Memory (issue 16, bench/prefixtrie.ts): a node is one object; its prefix bits are numbers inline (one
 * 32-bit word for IPv4, four for IPv6: Smis, no Buffer per node), its two children inline, its owner inline
 * (a Set only when a prefix has several, which is rare). ~72 B per IPv4 node, ~96 B per IPv6 node.
 * Owners are answered oldest first, as a single Set of them would.
 */
import type { Prefix } from './ip.js';

/** Several owners of one prefix, oldest first. Module-private, so no owner value can be one. */
class Many<T> extends Set<T> {}

class Node<T> {
  k0: Node<T> | undefined = undefined;
  k1: Node<T> | undefined = undefined;
  /** The owner of the prefix ending here, or all of them when several; undefined when none. */
  own: T | Many<T> | undefined = undefined;
  /** Owner entries in this node and below. */
  count = 0;
  /** w0: the prefix's first 32 bits (int32, bits past `cidr` zero). */
  constructor(readonly cidr: number, readonly w0: number) {}
}

/** An IPv6 node: its further three words (a separate shape, so IPv4 nodes do not carry them). */
class Node6<T> extends Node<T> {
  constructor(cidr: number, w0: number, readonly w1: number, readonly w2: number, readonly w3: number) {
    super(cidr, w0);
  }
}

/**
 * The prefix being looked up, as int32 words (one for IPv4, four for IPv6), not masked: its bits past `cidr`
 * never change an answer, as before (callers need not mask), since firstDiff compares below a limit and make() masks
 * what it stores. Set by load(); the methods call nothing that could reenter.
 */
const q = new Int32Array(4);
let qSix = false;

/** The int32 mask of a word's first `bits` bits (any number: ≤ 0 none, ≥ 32 all). */
const mask = (bits: number): number => (bits <= 0 ? 0 : bits >= 32 ? -1 : -1 << (32 - bits));
const wordAt = (a: Buffer, i: number): number => (a[i]! << 24) | (a[i + 1]! << 16) | (a[i + 2]! << 8) | a[i + 3]!;
const word = <T>(n: Node<T>, w: number): number =>
  w === 0 ? n.w0 : w === 1 ? (n as Node6<T>).w1 : w === 2 ? (n as Node6<T>).w2 : (n as Node6<T>).w3;
const queryBit = (i: number): 0 | 1 => ((q[i >> 5]! >>> (31 - (i & 31))) & 1) as 0 | 1;
const nodeBit = <T>(n: Node<T>, i: number): 0 | 1 => ((word(n, i >> 5) >>> (31 - (i & 31))) & 1) as 0 | 1;
const kid = <T>(n: Node<T>, b: 0 | 1): Node<T> | undefined => (b === 0 ? n.k0 : n.k1);

function setKid<T>(n: Node<T>, b: 0 | 1, c: Node<T> | undefined): void {
  if (b === 0) n.k0 = c;
  else n.k1 = c;
}

/**
 * The first bit (< limit) where n's prefix and the query differ, else limit. Unrolled by word: most calls
 * (IPv4, or IPv6 differing in its first word) end at the first, without a loop or a call to inline.
 */
function firstDiff<T>(n: Node<T>, limit: number): number {
  let d = Math.clz32(n.w0 ^ q[0]!);
  if (d === 32 && limit > 32) {
    const six = n as Node6<T>;
    d = 32 + Math.clz32(six.w1 ^ q[1]!);
    if (d === 64 && limit > 64) {
      d = 64 + Math.clz32(six.w2 ^ q[2]!);
      if (d === 96 && limit > 96) d = 96 + Math.clz32(six.w3 ^ q[3]!);
    }
  }
  return d < limit ? d : limit;
}

/** Whether n lies on the query's path: its prefix is the query's first n.cidr bits (n.cidr ≤ the query's). */
const onPath = <T>(n: Node<T>): boolean => firstDiff(n, n.cidr) === n.cidr;

/** n's child on the query's path that is a prefix of it (its length ≤ qc), or undefined. */
function nextCovering<T>(n: Node<T>, qc: number): Node<T> | undefined {
  const c = kid(n, queryBit(n.cidr));
  return c !== undefined && c.cidr <= qc && onPath(c) ? c : undefined;
}

/** A node for the query's first `cidr` bits. */
function make<T>(cidr: number): Node<T> {
  const w0 = q[0]! & mask(cidr);
  if (!qSix) return new Node<T>(cidr, w0);
  return new Node6<T>(cidr, w0, q[1]! & mask(cidr - 32), q[2]! & mask(cidr - 64), q[3]! & mask(cidr - 96));
}

/** An owner of n itself other than `except`, oldest first. */
function ownerOf<T>(n: Node<T>, except: T | undefined): T | undefined {
  const o = n.own;
  if (!(o instanceof Many)) return o !== except ? o : undefined;
  for (const x of o) if (x !== except) return x;
  return undefined;
}

/** Adds `owner` as n's newest; false when n holds it already. */
function addOwner<T>(n: Node<T>, owner: T): boolean {
  const o = n.own;
  if (o === undefined) n.own = owner;
  else if (o instanceof Many) {
    if (o.has(owner)) return false;
    o.add(owner);
  } else {
    if (o === owner) return false;
    n.own = new Many<T>([o, owner]);
  }
  return true;
}

/** Drops `owner` from n's owners, keeping the rest oldest first; false when n did not hold it. */
function dropOwner<T>(n: Node<T>, owner: T): boolean {
  const o = n.own;
  if (!(o instanceof Many)) {
    if (o === undefined || o !== owner) return false;
    n.own = undefined;
    return true;
  }
  if (!o.delete(owner)) return false;
  if (o.size === 1) n.own = o.values().next().value;
  return true;
}

/** Puts `by` in place of parent's child `old` (undefined: drops it). */
function replaceKid<T>(parent: Node<T>, old: Node<T>, by: Node<T> | undefined): void {
  if (parent.k0 === old) parent.k0 = by;
  else parent.k1 = by;
}

/** Owners are any values but undefined (the agent's are texts); insert ignores undefined, as before. */
export class PrefixTrie<T> {
  private readonly v4 = new Node<T>(0, 0);
  private readonly v6: Node<T> = new Node6<T>(0, 0, 0, 0, 0);

  /** Loads p's address into `q` and answers its family's root. */
  private load(p: Prefix): Node<T> {
    const a = p.addr;
    qSix = a.length !== 4;
    if (!qSix) {
      q[0] = wordAt(a, 0);
      return this.v4;
    }
    for (let w = 0; w < 4; w++) q[w] = wordAt(a, 4 * w);
    return this.v6;
  }

  insert(p: Prefix, owner: T): void {
    // an undefined owner would make a node that counts an entry but has no owner to remove
    if (owner === undefined) return;
    const root = this.load(p);
    const qc = p.cidr;
    let n = root;
    let at: Node<T>;
    for (;;) {
      if (n.cidr === qc) {
        at = n;
        break;
      }
      const b = queryBit(n.cidr);
      const c = kid(n, b);
      if (c === undefined) {
        setKid(n, b, (at = make<T>(qc)));
        break;
      }
      const d = firstDiff(c, Math.min(c.cidr, qc));
      if (d === c.cidr) {
        n = c;
        continue;
      }
      // c leaves the query's path at bit d, or lies inside the query (d === qc): a node at d takes c's place,
      // with c below it and, unless it is the query's own node, a new one for the query beside c
      const j = make<T>(d);
      setKid(j, nodeBit(c, d), c);
      j.count = c.count;
      if (d === qc) at = j;
      else setKid(j, queryBit(d), (at = make<T>(qc)));
      setKid(n, b, j);
      break;
    }
    // a duplicate can only be found on a node that existed: nothing was made for it
    if (!addOwner(at, owner)) return;
    for (let x = root; ; x = kid(x, queryBit(x.cidr))!) {
      x.count++;
      if (x === at) break;
    }
  }

  remove(p: Prefix, owner: T): void {
    const root = this.load(p);
    const qc = p.cidr;
    let n = root;
    let parent: Node<T> | undefined;
    let grand: Node<T> | undefined;
    while (n.cidr < qc) {
      const c = nextCovering(n, qc);
      if (c === undefined) return;
      grand = parent;
      parent = n;
      n = c;
    }
    if (!dropOwner(n, owner)) return;
    for (let x = root; ; x = kid(x, queryBit(x.cidr))!) {
      x.count--;
      if (x === n) break;
    }
    // keep the shape: a node neither owned nor branching goes, its one child (if any) in its place. Only when n
    // had no child can its parent be left so: an unowned non-root node had two children (the shape), now one,
    // and it goes the same way
    if (parent === undefined || n.own !== undefined || (n.k0 !== undefined && n.k1 !== undefined)) return;
    const only = n.k0 ?? n.k1;
    replaceKid(parent, n, only);
    if (only === undefined && grand !== undefined && parent.own === undefined) replaceKid(grand, parent, parent.k0 ?? parent.k1);
  }

  /** An owner (other than `except`) of a stored prefix that equals or contains p. */
  covering(p: Prefix, except?: T): T | undefined {
    let n = this.load(p);
    const qc = p.cidr;
    for (;;) {
      if (n.count === 0) return undefined;
      const o = ownerOf(n, except);
      if (o !== undefined) return o;
      if (n.cidr === qc) return undefined;
      const c = nextCovering(n, qc);
      if (c === undefined) return undefined;
      n = c;
    }
  }

  /** An owner (other than `except`) of a stored prefix that equals or lies inside p. */
  within(p: Prefix, except?: T): T | undefined {
    let n = this.load(p);
    const qc = p.cidr;
    while (n.cidr < qc) {
      const c = kid(n, queryBit(n.cidr));
      if (c === undefined) return undefined;
      // c is the next node on the query's path (a prefix of p, or inside p) only if its first bits are p's
      const lim = c.cidr < qc ? c.cidr : qc;
      if (firstDiff(c, lim) < lim) return undefined;
      n = c;
    }
    return anyBelow(n, except);
  }

  /** Overlap either way: covering, else within. */
  overlapping(p: Prefix, except?: T): T | undefined {
    return this.covering(p, except) ?? this.within(p, except);
  }
}

/** The first owner (other than `except`) at or below n: its own, then its 0 side's, then its 1 side's. */
function anyBelow<T>(n: Node<T>, except: T | undefined): T | undefined {
  if (n.count === 0) return undefined;
  const o = ownerOf(n, except);
  if (o !== undefined) return o;
  const b = n.k0 ? anyBelow(n.k0, except) : undefined;
  return b !== undefined ? b : n.k1 ? anyBelow(n.k1, except) : undefined;
}
