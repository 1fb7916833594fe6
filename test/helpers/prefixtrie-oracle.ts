// The straightforward model of src/net/prefixtrie.ts, for test/unit/prefixtrie-packed.test.ts: every stored
// prefix as its bit string with its owners in the order they came (a Set), answers found by scanning them all.
// Order of answers, as the trie walks: covering, the shortest prefix first; within, bit strings in
// lexicographic order (a prefix before what lies inside it, a 0 branch before a 1 branch); one prefix's owners
// oldest first.
import type { Prefix } from '../../src/net/ip.js';

/** A prefix as its family and bit string ('4:0110...'), the key of `held()`. */
export const prefixBits = (p: Prefix): string => {
  let s = p.addr.length === 4 ? '4:' : '6:';
  for (let i = 0; i < p.cidr; i++) s += (p.addr[i >> 3]! >> (7 - (i & 7))) & 1;
  return s;
};

export class OraclePrefixTrie<T> {
  private readonly owners = new Map<string, Set<T>>();

  insert(p: Prefix, owner: T): void {
    const k = prefixBits(p);
    const s = this.owners.get(k) ?? new Set<T>();
    this.owners.set(k, s.add(owner));
  }

  remove(p: Prefix, owner: T): void {
    const k = prefixBits(p);
    const s = this.owners.get(k);
    if (s?.delete(owner) && s.size === 0) this.owners.delete(k);
  }

  covering(p: Prefix, except?: T): T | undefined {
    const k = prefixBits(p);
    const hits = [...this.owners.keys()].filter((x) => k.startsWith(x)).sort((a, b) => a.length - b.length);
    return this.first(hits, except);
  }

  within(p: Prefix, except?: T): T | undefined {
    const k = prefixBits(p);
    return this.first([...this.owners.keys()].filter((x) => x.startsWith(k)).sort(), except);
  }

  overlapping(p: Prefix, except?: T): T | undefined {
    return this.covering(p, except) ?? this.within(p, except);
  }

  /** Owners of each stored prefix, oldest first, by bit string ('4:0110...'): what the trie's structure must hold. */
  held(): Map<string, T[]> {
    return new Map([...this.owners].map(([k, s]) => [k, [...s]]));
  }

  private first(prefixes: string[], except: T | undefined): T | undefined {
    for (const x of prefixes) for (const o of this.owners.get(x)!) if (o !== except) return o;
    return undefined;
  }
}
