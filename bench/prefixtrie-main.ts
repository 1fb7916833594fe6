// main's PrefixTrie (src/net/prefixtrie.ts at 7057c6d, before path compression), kept only as
// bench/prefixtrie.ts's baseline: the plain bit trie, one node per bit of a stored prefix not shared with another.
/**
 * A binary trie of IP prefixes, each with its owners, and per node the number
 * of owner entries below it: "is any stored prefix covering P" and "is any
 * stored prefix inside P" cost O(prefix length), whatever the number stored.
 * Admission (src/agent/admission.ts) uses it so that checking a node's pod
 * CIDRs and addresses against every other node is not O(nodes).
 *
 * Memory (issue 16, bench/memory.ts): a trie node is one object of five
 * fields (its two children inline, not in an array; its first owner inline,
 * further owners in a Set only when a prefix has several, which is rare): ~64 B
 * per trie node instead of ~112 B plus a Set (~150 B) per stored prefix.
 * Owners are answered oldest first, as a single Set of them would.
 */
import type { Prefix } from '../src/net/ip.js';

interface TrieNode<T> {
  k0: TrieNode<T> | undefined;
  k1: TrieNode<T> | undefined;
  /** The oldest owner of the prefix ending here, if any. */
  one: T | undefined;
  /** Owners after `one`, oldest first; undefined unless there are any. */
  more: Set<T> | undefined;
  /** Owner entries in this node and below. */
  count: number;
}

const fresh = <T>(): TrieNode<T> => ({ k0: undefined, k1: undefined, one: undefined, more: undefined, count: 0 });
const bit = (addr: Buffer, i: number): 0 | 1 => ((addr[i >> 3]! >> (7 - (i & 7))) & 1) as 0 | 1;
const kid = <T>(n: TrieNode<T>, b: 0 | 1): TrieNode<T> | undefined => (b === 0 ? n.k0 : n.k1);

/** An owner of n itself other than `except`, oldest first. */
function ownerOf<T>(n: TrieNode<T>, except: T | undefined): T | undefined {
  if (n.one === undefined) return undefined;
  if (n.one !== except) return n.one;
  for (const o of n.more ?? []) if (o !== except) return o;
  return undefined;
}

/** Drops `owner` from n's owners, keeping the rest oldest first; false when n did not hold it. */
function dropOwner<T>(n: TrieNode<T>, owner: T): boolean {
  if (n.one === undefined) return false;
  if (n.one !== owner) {
    if (!n.more?.delete(owner)) return false;
    if (n.more.size === 0) n.more = undefined;
    return true;
  }
  const next = n.more?.values().next();
  n.one = next && !next.done ? next.value : undefined;
  if (n.one !== undefined) n.more!.delete(n.one);
  if (n.more?.size === 0) n.more = undefined;
  return true;
}

/** Owners are any values but undefined (the agent's are texts). */
export class MainPrefixTrie<T> {
  private readonly v4 = fresh<T>();
  private readonly v6 = fresh<T>();

  private root(p: Prefix): TrieNode<T> {
    return p.addr.length === 4 ? this.v4 : this.v6;
  }

  insert(p: Prefix, owner: T): void {
    let n = this.root(p);
    const path = [n];
    for (let i = 0; i < p.cidr; i++) {
      const b = bit(p.addr, i);
      n = kid(n, b) ?? (b === 0 ? (n.k0 = fresh<T>()) : (n.k1 = fresh<T>()));
      path.push(n);
    }
    if (n.one === owner || n.more?.has(owner)) return;
    if (n.one === undefined) n.one = owner;
    else (n.more ??= new Set()).add(owner);
    for (const x of path) x.count++;
  }

  remove(p: Prefix, owner: T): void {
    let n: TrieNode<T> | undefined = this.root(p);
    const path: TrieNode<T>[] = [n];
    for (let i = 0; i < p.cidr && n; i++) {
      n = kid(n, bit(p.addr, i));
      if (n) path.push(n);
    }
    if (!n || !dropOwner(n, owner)) return;
    for (const x of path) x.count--;
    // prune empty branches so the trie holds only what is stored
    for (let i = path.length - 1; i > 0; i--) {
      if (path[i]!.count > 0) break;
      const parent = path[i - 1]!;
      if (parent.k0 === path[i]) parent.k0 = undefined;
      else parent.k1 = undefined;
    }
  }

  /** An owner (other than `except`) of a stored prefix that equals or contains p. */
  covering(p: Prefix, except?: T): T | undefined {
    let n: TrieNode<T> | undefined = this.root(p);
    for (let i = 0; n; i++) {
      const o = ownerOf(n, except);
      if (o !== undefined) return o;
      if (i === p.cidr) return undefined;
      n = kid(n, bit(p.addr, i));
    }
    return undefined;
  }

  /** An owner (other than `except`) of a stored prefix that equals or lies inside p. */
  within(p: Prefix, except?: T): T | undefined {
    let n: TrieNode<T> | undefined = this.root(p);
    for (let i = 0; i < p.cidr && n; i++) n = kid(n, bit(p.addr, i));
    return n ? this.anyBelow(n, except) : undefined;
  }

  /** Overlap either way: covering, else within. */
  overlapping(p: Prefix, except?: T): T | undefined {
    return this.covering(p, except) ?? this.within(p, except);
  }

  private anyBelow(n: TrieNode<T>, except: T | undefined): T | undefined {
    if (n.count === 0) return undefined;
    const o = ownerOf(n, except);
    if (o !== undefined) return o;
    const b = n.k0 ? this.anyBelow(n.k0, except) : undefined;
    return b !== undefined ? b : n.k1 ? this.anyBelow(n.k1, except) : undefined;
  }
}
