// The structure of a PrefixTrie (src/net/prefixtrie.ts), read through its private fields, for tests that check
// more than its answers: a trie that answers right can still leak (a branch never pruned, a count never back
// to 0, an owner counted twice, a node neither owned nor branching, a freed index never reused or reused while
// in use, arrays never shrunk), and one that churns pod CIDRs would then grow without bound.
import type { PrefixTrie } from '../../src/net/prefixtrie.js';
import { FLOOR, type TrieNodes } from '../../src/net/trienodes.js';

/** A trie node read out of src/net/trienodes.ts's arrays: its prefix as words, its children as nodes. */
interface Node {
  cidr: number;
  w0: number;
  w1?: number;
  w2?: number;
  w3?: number;
  k0: Node | undefined;
  k1: Node | undefined;
  /** One owner, or a Set of several (the trie's private Set subclass). */
  own: unknown;
  count: number;
}


/**
 * Node i of a family's arrays, its children read the same way, recording each index reached in `seen`; an
 * index reached again (a cycle, or a node shared) is recorded but not read twice.
 */
function nodeAt(s: TrieNodes<unknown>, i: number, seen: number[]): Node {
  const again = seen.includes(i);
  seen.push(i);
  const o = i * s.stride;
  const w = s.words;
  const kid = (b: number) => (w[o + s.nw + b] !== 0 && !again ? nodeAt(s, w[o + s.nw + b]!, seen) : undefined);
  return {
    cidr: s.cidrs[i]!,
    w0: w[o]!,
    ...(s.nw === 4 ? { w1: w[o + 1]!, w2: w[o + 2]!, w3: w[o + 3]! } : {}),
    k0: kid(0),
    k1: kid(1),
    own: s.owners[i],
    count: w[o + s.nw + 2]!,
  };
}

/**
 * A family's root as a tree of nodes, and the faults of its arrays: an index reached twice, nodes reached other
 * than those in use, a free list that is not exactly the other indices handed out (each unowned), a capacity
 * above max(FLOOR, 4 × nodes in use) below the indices handed out, or
 * other than the owner array's length.
 */
function readFamily(s: TrieNodes<unknown>, family: string, faults: string[]): { root: Node; nodes: number } {
  const seen: number[] = [];
  const root = nodeAt(s, 0, seen);
  const reached = new Set(seen);
  if (reached.size !== seen.length) faults.push(`${family} an index reached twice`);
  if (seen.length !== s.live) faults.push(`${family} ${s.live} nodes in use, ${seen.length} reached`);
  const freed: number[] = [];
  for (let f = (s as unknown as { free: number }).free; f !== 0 && freed.length <= s.top; f = s.words[f * s.stride + s.nw]!) freed.push(f);
  const handedOut = s.top;
  if (freed.length + s.live !== handedOut || freed.some((f) => reached.has(f) || f >= handedOut) || new Set(freed).size !== freed.length) {
    faults.push(`${family} free list of ${freed.length} besides ${s.live} in use, ${handedOut} handed out`);
  }
  if (freed.some((f) => s.owners[f] !== undefined)) faults.push(`${family} a freed node holds an owner`);
  if (s.capacity > Math.max(FLOOR, 4 * s.live) || s.capacity < handedOut || s.owners.length !== s.capacity) faults.push(`${family} capacity ${s.capacity} for ${s.live} in use`);
  return { root, nodes: seen.length };
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

/** A node's prefix as its bit string, and whether its words hold no bit past its length. */
function bitsOf(n: Node, family: string): { key: string; masked: boolean } {
  const words = family === '4:' ? [n.w0] : [n.w0, n.w1 ?? 0, n.w2 ?? 0, n.w3 ?? 0];
  let all = '';
  for (const w of words) all += (w >>> 0).toString(2).padStart(32, '0');
  return { key: family + all.slice(0, n.cidr), masked: !all.slice(n.cidr).includes('1') };
}

/**
 * Walks both roots. Invariants checked per node: its count is its own owners plus its children's counts; its
 * prefix is masked, longer than its parent's and extends it by the bit of the side it hangs on; a node other
 * than a root holds owners or has two children (else it should have been merged or pruned); several owners
 * only in a Set, never an empty or one-owner Set.
 */
export function trieShape<T>(t: PrefixTrie<T>): TrieShape {
  const shape: TrieShape = { nodes: 0, rootCount: { v4: 0, v6: 0 }, owners: new Map(), faults: [] };
  const walk = (n: Node, family: string, parentKey: string | undefined, side: string): number => {
    shape.nodes++;
    const { key, masked } = bitsOf(n, family);
    if (!masked) shape.faults.push(`${key}: bits set past its length`);
    if (parentKey !== undefined && !(key.length > parentKey.length && key.startsWith(parentKey + side))) {
      shape.faults.push(`${key}: not below its parent ${parentKey} on side ${side}`);
    }
    const own = n.own === undefined ? [] : n.own instanceof Set ? [...(n.own as Set<unknown>)] : [n.own];
    if (own.length > 0) shape.owners.set(key, own);
    if (n.own instanceof Set && own.length < 2) shape.faults.push(`${key}: a Set of ${own.length} owner(s)`);
    const below = own.length + (n.k0 ? walk(n.k0, family, key, '0') : 0) + (n.k1 ? walk(n.k1, family, key, '1') : 0);
    if (n.count !== below) shape.faults.push(`${key}: count ${n.count}, ${below} owner entries held`);
    if (parentKey !== undefined && own.length === 0 && !(n.k0 && n.k1)) shape.faults.push(`${key}: neither owned nor branching`);
    return n.count;
  };
  const fields = t as unknown as { v4: TrieNodes<unknown>; v6: TrieNodes<unknown> };
  const v4 = readFamily(fields.v4, '4:', shape.faults).root;
  const v6 = readFamily(fields.v6, '6:', shape.faults).root;
  walk(v4, '4:', undefined, '');
  walk(v6, '6:', undefined, '');
  shape.rootCount = { v4: v4.count, v6: v6.count };
  return shape;
}

/** Nodes per family, its root included. */
export function familyNodes<T>(t: PrefixTrie<T>): { v4: number; v6: number } {
  const fields = t as unknown as { v4: TrieNodes<unknown>; v6: TrieNodes<unknown> };
  return { v4: readFamily(fields.v4, '4:', []).nodes, v6: readFamily(fields.v6, '6:', []).nodes };
}

/**
 * The nodes a path-compressed trie holding these bit strings needs: both roots, each stored prefix, and each
 * point where stored prefixes branch (a bit string that both `s0…` and `s1…` extend).
 */
export function nodesNeeded(keys: Iterable<string>): number {
  const prefixes = new Set<string>();
  const needed = new Set(['4:', '6:']);
  for (const k of keys) {
    needed.add(k);
    for (let i = 2; i <= k.length; i++) prefixes.add(k.slice(0, i));
  }
  for (const s of prefixes) if (prefixes.has(s + '0') && prefixes.has(s + '1')) needed.add(s);
  return needed.size;
}
