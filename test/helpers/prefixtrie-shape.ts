// The structure of a PrefixTrie (src/net/prefixtrie.ts), read through its private fields, for tests that check
// more than its answers: a trie that answers right can still leak (a branch never pruned, a count never back
// to 0, an owner counted twice), and one that churns pod CIDRs would then grow without bound.
import type { PrefixTrie } from '../../src/net/prefixtrie.js';

/** A trie node as src/net/prefixtrie.ts lays it out (its type is private there). */
interface Node {
  k0: Node | undefined;
  k1: Node | undefined;
  one: unknown;
  more: Set<unknown> | undefined;
  count: number;
}

export interface TrieShape {
  /** Trie nodes, both roots included. */
  nodes: number;
  /** Owner entries counted at each family's root. */
  rootCount: { v4: number; v6: number };
  /** Owners of each stored prefix, oldest first, by bit string ('4:0110...', as the oracle keys them). */
  owners: Map<string, unknown[]>;
  /** Broken invariants, each as `<bit string>: <what>`; empty for a sound trie. */
  faults: string[];
}

/**
 * Walks both roots. Invariants checked per node: its count is its own owners plus its children's counts; a
 * node other than a root has some owner entry below it (else it should have been pruned); `more` exists only
 * beside `one`, is never empty and never repeats `one`.
 */
export function trieShape<T>(t: PrefixTrie<T>): TrieShape {
  const shape: TrieShape = { nodes: 0, rootCount: { v4: 0, v6: 0 }, owners: new Map(), faults: [] };
  const walk = (n: Node, key: string, root: boolean): number => {
    shape.nodes++;
    const own = n.one === undefined ? [] : [n.one, ...(n.more ?? [])];
    if (own.length > 0) shape.owners.set(key, own);
    if (n.more !== undefined && (n.one === undefined || n.more.size === 0)) shape.faults.push(`${key}: a Set of further owners with ${own.length} owner(s)`);
    if (n.more?.has(n.one)) shape.faults.push(`${key}: its first owner repeated in the Set`);
    const below = own.length + (n.k0 ? walk(n.k0, key + '0', false) : 0) + (n.k1 ? walk(n.k1, key + '1', false) : 0);
    if (n.count !== below) shape.faults.push(`${key}: count ${n.count}, ${below} owner entries held`);
    if (!root && below === 0) shape.faults.push(`${key}: an empty branch not pruned`);
    return n.count;
  };
  const fields = t as unknown as { v4: Node; v6: Node };
  walk(fields.v4, '4:', true);
  walk(fields.v6, '6:', true);
  shape.rootCount = { v4: fields.v4.count, v6: fields.v6.count };
  return shape;
}

/** The nodes a trie holding these bit strings needs: every prefix of each, and both roots. */
export function nodesNeeded(keys: Iterable<string>): number {
  const needed = new Set(['4:', '6:']);
  for (const k of keys) for (let i = 2; i <= k.length; i++) needed.add(k.slice(0, i));
  return needed.size;
}
