/**
 * A binary trie of IP prefixes, each with its owners, and per node the number
 * of owner entries below it: "is any stored prefix covering P" and "is any
 * stored prefix inside P" cost O(prefix length), whatever the number stored.
 * Admission (src/agent/admission.ts) uses it so that checking a node's pod
 * CIDRs and addresses against every other node is not O(nodes).
 */
import type { Prefix } from './ip.js';

interface TrieNode<T> {
  kids: [TrieNode<T> | undefined, TrieNode<T> | undefined];
  owners: Set<T> | undefined;
  /** Owner entries in this node and below. */
  count: number;
}

const fresh = <T>(): TrieNode<T> => ({ kids: [undefined, undefined], owners: undefined, count: 0 });
const bit = (addr: Buffer, i: number): 0 | 1 => ((addr[i >> 3]! >> (7 - (i & 7))) & 1) as 0 | 1;

export class PrefixTrie<T> {
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
      n = n.kids[b] ??= fresh<T>();
      path.push(n);
    }
    n.owners ??= new Set();
    if (n.owners.has(owner)) return;
    n.owners.add(owner);
    for (const x of path) x.count++;
  }

  remove(p: Prefix, owner: T): void {
    let n: TrieNode<T> | undefined = this.root(p);
    const path: TrieNode<T>[] = [n];
    for (let i = 0; i < p.cidr && n; i++) {
      n = n.kids[bit(p.addr, i)];
      if (n) path.push(n);
    }
    if (!n || !n.owners?.delete(owner)) return;
    for (const x of path) x.count--;
    // prune empty branches so the trie holds only what is stored
    for (let i = path.length - 1; i > 0; i--) {
      if (path[i]!.count > 0) break;
      const parent = path[i - 1]!;
      parent.kids[parent.kids[0] === path[i] ? 0 : 1] = undefined;
    }
  }

  /** An owner (other than `except`) of a stored prefix that equals or contains p. */
  covering(p: Prefix, except?: T): T | undefined {
    let n: TrieNode<T> | undefined = this.root(p);
    for (let i = 0; n; i++) {
      for (const o of n.owners ?? []) if (o !== except) return o;
      if (i === p.cidr) return undefined;
      n = n.kids[bit(p.addr, i)];
    }
    return undefined;
  }

  /** An owner (other than `except`) of a stored prefix that equals or lies inside p. */
  within(p: Prefix, except?: T): T | undefined {
    let n: TrieNode<T> | undefined = this.root(p);
    for (let i = 0; i < p.cidr && n; i++) n = n.kids[bit(p.addr, i)];
    return n ? this.anyBelow(n, except) : undefined;
  }

  /** Overlap either way: covering, else within. */
  overlapping(p: Prefix, except?: T): T | undefined {
    return this.covering(p, except) ?? this.within(p, except);
  }

  private anyBelow(n: TrieNode<T>, except: T | undefined): T | undefined {
    if (n.count === 0) return undefined;
    for (const o of n.owners ?? []) if (o !== except) return o;
    for (const k of n.kids) {
      const o = k ? this.anyBelow(k, except) : undefined;
      if (o !== undefined) return o;
    }
    return undefined;
  }
}
