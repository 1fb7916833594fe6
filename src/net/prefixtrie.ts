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
 * Memory (issue 16, bench/prefixtrie.ts): a family's nodes live in typed arrays by index (src/net/trienodes.ts:
 * prefix words, children and count as int32s, the length as a byte, the owner in one array slot; a Set only
 * when a prefix has several owners, which is rare): 25–28 B per IPv4 node, 37–42 B per IPv6 node with the
 * slack of growth (measured 26–27 B and 39–40 B), instead of a ~72 B / ~96 B object each, plus ~1.3 kB per trie;
 * freed nodes are reused first, and the arrays shrink once no more than a quarter is in use (capacity ≤
 * max(16, 4 × nodes in use) per family).
 * Owners are answered oldest first, as a single Set of them would.
 */
import type { Prefix } from './ip.js';
import { TrieNodes } from './trienodes.js';

/** Several owners of one prefix, oldest first. Module-private, so no owner value can be one. */
class Many<T> extends Set<T> {}

/** A node's owner slot: its one owner, or all of them when several; undefined when none. */
type Own<T> = T | Many<T>;
type Nodes<T> = TrieNodes<Own<T>>;

/**
 * The prefix being looked up, as int32 words (one for IPv4, four for IPv6), not masked: its bits past `cidr`
 * never change an answer, as before (callers need not mask), since firstDiff compares below a limit and make() masks
 * what it stores. Set by load(); the methods call nothing that could reenter.
 */
const q = new Int32Array(4);

/** The int32 mask of a word's first `bits` bits (any number: ≤ 0 none, ≥ 32 all). */
const mask = (bits: number): number => (bits <= 0 ? 0 : bits >= 32 ? -1 : -1 << (32 - bits));
const wordAt = (a: Buffer, i: number): number => (a[i]! << 24) | (a[i + 1]! << 16) | (a[i + 2]! << 8) | a[i + 3]!;
const queryBit = (i: number): 0 | 1 => ((q[i >> 5]! >>> (31 - (i & 31))) & 1) as 0 | 1;
const nodeBit = <T>(s: Nodes<T>, n: number, i: number): 0 | 1 =>
  ((s.words[n * s.stride + (i >> 5)]! >>> (31 - (i & 31))) & 1) as 0 | 1;

/**
 * The first bit (< limit) where n's prefix and the query differ, else limit. Unrolled by word: most calls
 * (IPv4, or IPv6 differing in its first word) end at the first, without a loop or a call to inline.
 */
function firstDiff(w: Int32Array, o: number, limit: number): number {
  let d = Math.clz32(w[o]! ^ q[0]!);
  if (d === 32 && limit > 32) {
    d = 32 + Math.clz32(w[o + 1]! ^ q[1]!);
    if (d === 64 && limit > 64) {
      d = 64 + Math.clz32(w[o + 2]! ^ q[2]!);
      if (d === 96 && limit > 96) d = 96 + Math.clz32(w[o + 3]! ^ q[3]!);
    }
  }
  return d < limit ? d : limit;
}

/** Adds d to the count of each node on the query's path, from the root down to `at`. */
function addCounts<T>(s: Nodes<T>, at: number, d: number): void {
  const { words, cidrs, stride, nw } = s;
  for (let x = 0; ; x = words[x * stride + nw + queryBit(cidrs[x]!)]!) {
    words[x * stride + nw + 2]! += d;
    if (x === at) break;
  }
}

/** A node for the query's first `cidr` bits (the arrays may be replaced: read them after). */
function make<T>(s: Nodes<T>, cidr: number): number {
  const n = s.alloc();
  const o = n * s.stride;
  s.cidrs[n] = cidr;
  s.words[o] = q[0]! & mask(cidr);
  if (s.nw === 4) for (let w = 1; w < 4; w++) s.words[o + w] = q[w]! & mask(cidr - 32 * w);
  return n;
}

/** The two nodes above the one `exact` last found, on its path (-1: none): remove rewires them. */
let parentOf = -1;
let grandOf = -1;

/**
 * The node holding exactly the loaded query's first `qc` bits (load() first), or -1 when none is stored; sets
 * parentOf and grandOf. O(qc).
 */
function exact<T>(s: Nodes<T>, qc: number): number {
  const { words, cidrs, stride, nw } = s;
  let n = 0;
  parentOf = grandOf = -1;
  for (let nc = 0; nc < qc; nc = cidrs[n]!) {
    // down to the query's node: the child on its path, if a prefix of it
    const c = words[n * stride + nw + queryBit(nc)]!;
    if (c === 0) return -1;
    const cc = cidrs[c]!;
    if (cc > qc || firstDiff(words, c * stride, cc) !== cc) return -1;
    grandOf = parentOf;
    parentOf = n;
    n = c;
  }
  return n;
}

/** Owners compare as a Set's members do (SameValueZero: NaN is one owner), whether one is held or several (Many). */
const same = (a: unknown, b: unknown): boolean => a === b || (a !== a && b !== b);

/** An owner of a node (its slot `o`) other than `except`, oldest first. */
function ownerOf<T>(o: Own<T> | undefined, except: T | undefined): T | undefined {
  if (!(o instanceof Many)) return same(o, except) ? undefined : o;
  for (const x of o) if (!same(x, except)) return x;
  return undefined;
}

/** Adds `owner` as n's newest; false when n holds it already. */
function addOwner<T>(s: Nodes<T>, n: number, owner: T): boolean {
  const o = s.owners[n];
  if (o === undefined) s.owners[n] = owner;
  else if (o instanceof Many) {
    if (o.has(owner)) return false;
    o.add(owner);
  } else {
    if (same(o, owner)) return false;
    s.owners[n] = new Many<T>([o, owner]);
  }
  return true;
}

/** Drops `owner` from n's owners, keeping the rest oldest first; false when n did not hold it. */
function dropOwner<T>(s: Nodes<T>, n: number, owner: T): boolean {
  const o = s.owners[n];
  if (!(o instanceof Many)) {
    if (o === undefined || !same(o, owner)) return false;
    s.owners[n] = undefined;
    return true;
  }
  if (!o.delete(owner)) return false;
  if (o.size === 1) s.owners[n] = o.values().next().value;
  return true;
}

/** Puts `by` in place of parent's child `old` (0: drops it), and frees `old`. */
function replaceKid<T>(s: Nodes<T>, parent: number, old: number, by: number): void {
  s.setKid(parent, s.kid(parent, 0) === old ? 0 : 1, by);
  s.release(old);
}

/** n's one child (0: none), when it has no more than one. */
const onlyKid = <T>(s: Nodes<T>, n: number): number => s.kid(n, 0) || s.kid(n, 1);

/**
 * Owners are any values but undefined (the agent's are texts), compared as a Set compares (SameValueZero); insert
 * ignores undefined, as before. A prefix's length must be an integer within its family's bits (0..32, 0..128) and
 * its address 4 or 16 bytes: anything else throws RangeError (parsePrefix gives only such prefixes; a length kept in
 * a byte would otherwise wrap, and a wrong one place a node above its parent).
 * Cost: covering, holds and insert/remove O(prefix length); within(p, except) also visits the nodes below p that only
 * `except` owns (admission's except is one node: bounded by what one node may claim).
 */
export class PrefixTrie<T> {
  private readonly v4: Nodes<T> = new TrieNodes(false);
  private readonly v6: Nodes<T> = new TrieNodes(true);

  /** Loads p's address into `q` and answers its family's nodes (the root is node 0). */
  private load(p: Prefix): Nodes<T> {
    const a = p.addr;
    const bits = a.length * 8;
    if ((bits !== 32 && bits !== 128) || !Number.isInteger(p.cidr) || p.cidr < 0 || p.cidr > bits) throw new RangeError(`PrefixTrie: not a prefix (${a.length}-byte address, length ${p.cidr})`);
    if (a.length === 4) {
      q[0] = wordAt(a, 0);
      return this.v4;
    }
    for (let w = 0; w < 4; w++) q[w] = wordAt(a, 4 * w);
    return this.v6;
  }

  insert(p: Prefix, owner: T): void {
    // an undefined owner would make a node that counts an entry but has no owner to remove
    if (owner === undefined) return;
    const s = this.load(p);
    // the arrays in locals for the descent: they are only read until a node is made, and then it ends
    const { words, cidrs, stride, nw } = s;
    const qc = p.cidr;
    let n = 0;
    let at: number;
    for (;;) {
      const nc = cidrs[n]!;
      if (nc === qc) {
        at = n;
        break;
      }
      const b = queryBit(nc);
      const c = words[n * stride + nw + b]!;
      if (c === 0) {
        s.setKid(n, b, (at = make(s, qc)));
        break;
      }
      const cc = cidrs[c]!;
      const d = firstDiff(words, c * stride, cc < qc ? cc : qc);
      if (d === cc) {
        n = c;
        continue;
      }
      // c leaves the query's path at bit d, or lies inside the query (d === qc): a node at d takes c's place,
      // with c below it and, unless it is the query's own node, a new one for the query beside c
      const j = make(s, d);
      s.setKid(j, nodeBit(s, c, d), c);
      s.addCount(j, s.count(c));
      if (d === qc) at = j;
      else s.setKid(j, queryBit(d), (at = make(s, qc)));
      s.setKid(n, b, j);
      break;
    }
    // a duplicate can only be found on a node that existed: nothing was made for it
    if (addOwner(s, at, owner)) addCounts(s, at, 1);
  }

  remove(p: Prefix, owner: T): void {
    const s = this.load(p);
    const n = exact(s, p.cidr);
    const parent = parentOf;
    const grand = grandOf;
    if (n < 0 || !dropOwner(s, n, owner)) return;
    addCounts(s, n, -1);
    // keep the shape: a node neither owned nor branching goes, its one child (if any) in its place. Only when n
    // had no child can its parent be left so: an unowned non-root node had two children (the shape), now one,
    // and it goes the same way
    if (parent < 0 || s.owners[n] !== undefined || (s.kid(n, 0) !== 0 && s.kid(n, 1) !== 0)) return;
    const only = onlyKid(s, n);
    replaceKid(s, parent, n, only);
    if (only === 0 && grand >= 0 && s.owners[parent] === undefined) replaceKid(s, grand, parent, onlyKid(s, parent));
    s.shrinkIfSparse();
  }

  /**
   * Whether p itself (not a prefix covering it) is stored with `owner` among its owners, compared as a Set compares
   * (SameValueZero; an undefined owner is never stored: false). O(prefix length). Throws RangeError on a malformed
   * prefix, as every method.
   */
  holds(p: Prefix, owner: T): boolean {
    const s = this.load(p);
    const n = exact(s, p.cidr);
    if (n < 0) return false;
    const o = s.owners[n];
    return o instanceof Many ? o.has(owner) : o !== undefined && same(o, owner);
  }

  /** An owner (other than `except`) of a stored prefix that equals or contains p. */
  covering(p: Prefix, except?: T): T | undefined {
    // the arrays in locals: a lookup makes no node, so they are not replaced meanwhile
    const { words, cidrs, owners, stride, nw } = this.load(p);
    const qc = p.cidr;
    for (let n = 0; ; ) {
      const at = n * stride;
      if (words[at + nw + 2] === 0) return undefined;
      const o = ownerOf(owners[n], except);
      if (o !== undefined) return o;
      const nc = cidrs[n]!;
      if (nc === qc) return undefined;
      // the child on the query's path, if it is a prefix of the query
      n = words[at + nw + queryBit(nc)]!;
      if (n === 0) return undefined;
      const cc = cidrs[n]!;
      if (cc > qc || firstDiff(words, n * stride, cc) !== cc) return undefined;
    }
  }

  /** An owner (other than `except`) of a stored prefix that equals or lies inside p. */
  within(p: Prefix, except?: T): T | undefined {
    const s = this.load(p);
    const { words, cidrs, stride, nw } = s;
    const qc = p.cidr;
    let n = 0;
    for (let nc = 0; nc < qc; nc = cidrs[n]!) {
      const c = words[n * stride + nw + queryBit(nc)]!;
      if (c === 0) return undefined;
      // c is the next node on the query's path (a prefix of p, or inside p) only if its first bits are p's
      const cc = cidrs[c]!;
      const lim = cc < qc ? cc : qc;
      if (firstDiff(words, c * stride, lim) < lim) return undefined;
      n = c;
    }
    return anyBelow(s, n, except);
  }

  /** Overlap either way: covering, else within. */
  overlapping(p: Prefix, except?: T): T | undefined {
    return this.covering(p, except) ?? this.within(p, except);
  }
}

/** The first owner (other than `except`) at or below n: its own, then its 0 side's, then its 1 side's. */
function anyBelow<T>(s: Nodes<T>, n: number, except: T | undefined): T | undefined {
  if (s.count(n) === 0) return undefined;
  const o = ownerOf(s.owners[n], except);
  if (o !== undefined) return o;
  const k0 = s.kid(n, 0);
  const k1 = s.kid(n, 1);
  const b = k0 !== 0 ? anyBelow(s, k0, except) : undefined;
  return b !== undefined ? b : k1 !== 0 ? anyBelow(s, k1, except) : undefined;
}
