/**
 * The nodes of one address family of a PrefixTrie (src/net/prefixtrie.ts), held in typed arrays by index
 * instead of one JS object each: a trie node object cost ~72 B (IPv4) / ~96 B (IPv6) of heap, and the agent
 * keeps ~2 per remote node address or pod CIDR (issue 16: ~57 B per remote endpoint at 4 × 1000 × 10).
 *
 * Shape: node i is `stride` int32s at words[i × stride]: its prefix's words (nw = 1 for IPv4, 4 for IPv6;
 * bits past its length zero), then k0, k1 (its children's indices; 0 is none, since node 0, the family's root,
 * is no one's child), then count (owner entries in it and below); cidrs[i] its prefix length; owners[i] its
 * owner, or the trie's Set of several, or undefined. A freed node goes on a free list threaded through its k0,
 * the latest freed reused first, before the arrays grow.
 *
 * Memory, per node: IPv4 4 × 4 + 1 + 8 (the owner slot: a pointer) = 25 B, IPv6 7 × 4 + 1 + 8 = 37 B, times the
 * slack of growth: all three arrays grow together by an eighth (+16 nodes), the owner array copied to exactly
 * that size (V8 would grow a pushed array by half), so an IPv4 node costs 25–28 B (bench/prefixtrie.ts). Bound
 * when nodes are freed: once a removal leaves no more than a quarter of the capacity in use (capacity above
 * FLOOR), the nodes in use are copied in walk order into arrays of twice their number (O(nodes), amortised O(1)
 * per removal: it takes as many removals as nodes left to come back). So after every call capacity ≤
 * max(FLOOR, 4 × nodes in use): a remote that had many nodes made and then dropped them does not keep their
 * space. The copies briefly hold both the old arrays and the new. Fixed cost: ~0.6 kB per family (this object,
 * three arrays and their buffers' objects), so ~1.3 kB per empty PrefixTrie against ~0.3 kB for two root
 * objects: ~1 kB more per trie (admission keeps one per remote cluster), repaid by ~22 of its nodes (~11 prefixes).
 */

/**
 * A new family's capacity (nodes): small, as many tries stay small (admission's per cluster). V8 keeps a typed
 * array of ≤ 64 B inside its heap, without a separate allocation: so IPv4's 4 × 4 × 4 = 64 B of words and both
 * families' lengths are; IPv6's words (4 × 7 × 4 = 112 B) are a backing store of their own (measured: 112 B of
 * array buffers per empty PrefixTrie, ~1.27 kB of heap).
 */
const INITIAL = 4;
/** Capacity (nodes) below which the arrays are never shrunk: ~0.5 kB for IPv4, not worth a copy. */
export const FLOOR = 16;
/** The capacity after `cap`: an eighth more (slack ≤ 1/9 of the bytes), +16 so small tries do not copy often. */
const grown = (cap: number): number => cap + (cap >> 3) + 16;

/**
 * `a` padded with undefined to `cap` slots, as an array whose backing store holds exactly those: V8 grows a
 * pushed array by half, and a copy by slice() is exact (one more copy per growth, amortised O(1)).
 */
function exactly<O>(a: (O | undefined)[], cap: number): (O | undefined)[] {
  while (a.length < cap) a.push(undefined);
  return a.slice();
}

/** O: what a node's owner slot holds (the trie's owner type, or its Set of several). */
export class TrieNodes<O> {
  /** Per node `stride` int32s: prefix words, k0, k1, count. */
  words: Int32Array;
  /** Per node its prefix length in bits (0..128). */
  cidrs: Uint8Array;
  /** Per node its owner(s); as long as the typed arrays (the capacity). */
  owners: (O | undefined)[];
  /** Offset of k0 in a node's int32s: its prefix's word count (1 for IPv4, 4 for IPv6). */
  readonly nw: number;
  readonly stride: number;
  /** Nodes in use, the root included. */
  live = 1;
  /** Indices handed out so far (in use or on the free list): the high-water mark since the last shrink. */
  top = 1;
  /** Head of the free list (0: empty). */
  private free = 0;

  constructor(six: boolean) {
    this.nw = six ? 4 : 1;
    this.stride = this.nw + 3;
    this.words = new Int32Array(INITIAL * this.stride);
    this.cidrs = new Uint8Array(INITIAL);
    this.owners = exactly([], INITIAL);
  }

  /** Nodes the arrays have room for. */
  get capacity(): number {
    return this.cidrs.length;
  }

  /** n's child on side b (0: none). */
  kid(n: number, b: number): number {
    return this.words[n * this.stride + this.nw + b]!;
  }

  setKid(n: number, b: number, c: number): void {
    this.words[n * this.stride + this.nw + b] = c;
  }

  count(n: number): number {
    return this.words[n * this.stride + this.nw + 2]!;
  }

  addCount(n: number, d: number): void {
    this.words[n * this.stride + this.nw + 2]! += d;
  }

  /** A node with no children, count 0 and no owner; its prefix words and length are the caller's to set. */
  alloc(): number {
    let n = this.free;
    if (n !== 0) this.free = this.kid(n, 0);
    else {
      n = this.top++;
      if (n === this.capacity) this.resize(grown(n));
    }
    const o = n * this.stride + this.nw;
    this.words[o] = this.words[o + 1] = this.words[o + 2] = 0;
    this.live++;
    return n;
  }

  /** Frees n (no longer anyone's child): it goes first on the free list. */
  release(n: number): void {
    this.owners[n] = undefined;
    this.setKid(n, 0, this.free);
    this.free = n;
    this.live--;
  }

  /**
   * After removals (the caller holds no index across it: every node may move): copies the nodes in use into
   * arrays of twice their number when no more than a quarter of the capacity is in use.
   */
  shrinkIfSparse(): void {
    const cap = this.capacity;
    if (cap <= FLOOR || this.live * 4 > cap) return;
    const { stride, nw } = this;
    const words = new Int32Array(Math.max(FLOOR, 2 * this.live) * stride);
    const cidrs = new Uint8Array(words.length / stride);
    const owners: (O | undefined)[] = [];
    // depth-first from the root, so the root stays 0 and children get indices as they are met; depth ≤ 129
    const copy = (from: number): number => {
      const to = owners.length;
      owners.push(this.owners[from]);
      cidrs[to] = this.cidrs[from]!;
      for (let i = 0; i < stride; i++) words[to * stride + i] = this.words[from * stride + i]!;
      for (let b = 0; b < 2; b++) {
        const c = this.kid(from, b);
        if (c !== 0) words[to * stride + nw + b] = copy(c);
      }
      return to;
    };
    copy(0);
    this.top = this.live;
    this.words = words;
    this.cidrs = cidrs;
    this.owners = exactly(owners, cidrs.length);
    this.free = 0;
  }

  private resize(cap: number): void {
    const words = new Int32Array(cap * this.stride);
    words.set(this.words);
    const cidrs = new Uint8Array(cap);
    cidrs.set(this.cidrs);
    this.words = words;
    this.cidrs = cidrs;
    this.owners = exactly(this.owners, cap);
  }
}
