/**
 * The table under U32Map (u32map.ts: a 32-bit key) and PairMap (pairmap.ts: a key of two 32-bit words): keys of
 * one or two 32-bit words to non-negative 31-bit values (a slot number), in one Int32Array instead of a Map
 * (issue 16). A position is its key's words then its value: 8 B (one word) or 12 B (two).
 *
 * Open addressing with linear probing; a removal shifts the entries behind it back (no tombstones, so a long run
 * of removals leaves no debris to probe through). Keys come from remote clusters (the addresses of their
 * endpoints), so the position is not a function an attacker can aim at: simple tabulation (one table of 256
 * random 32-bit words per key byte, XORed: 4 tables for a one-word key, 8 for a two-word one), drawn per table
 * from the CSPRNG. Simple tabulation gives linear probing O(1) expected time per operation at any fixed load
 * below 1, whatever the key set, for keys of any fixed count of characters (Pătraşcu and Thorup, "The Power of
 * Simple Tabulation Hashing", J. ACM 59(3), 2012), where a plain multiplicative hash over the dense addresses of
 * one pod CIDR would not be covered by that bound. A two-word key is 8 characters of a byte: its hash is the two
 * words' tabulations XORed over two disjoint sets of 4 tables, which is simple tabulation of the 8-byte key
 * (the same 4 tables for both words would not be: (a, b) and (b, a) would meet, and every (a, a) hash to 0).
 *
 * Bounds: capacity is a power of two from 16, doubled when more than 3/4 of the positions hold a key, halved
 * when fewer than 1/4 do: once more than 4 keys are held, at least 4/3 and at most 4 positions per key (8 B
 * each: 11–32 B per key, 11–21 B while a table only grows, as in a sync; 12 B each: 16–48 B, 16–32 B), plus
 * 4 KiB (8 KiB) of tables per table; while it resizes, the old array too (3 × capacity positions during a
 * doubling). Not ordered: values() and entries() visit in position order, and the table must not change during
 * a visit (a delete shifts later entries back: one could be skipped or seen twice).
 *
 * Keys are not checked (the callers' own bounds): a number is taken as `key | 0`, so 2^32 + 5, 5.9 and 5 are
 * one key word, as are -1 and 2^32 - 1.
 */
import { randomFillSync } from 'node:crypto';

const MIN_CAPACITY = 16;
/** A free position's value. */
const EMPTY = -1;

/**
 * Simple tabulation of a 32-bit key over four tables of 256 words (`tab` from word `at`: 1,024 words, byte 0
 * the lowest).
 */
export function tabulate(tab: Uint32Array, k: number, at = 0): number {
  return (tab[at + (k & 0xff)]! ^ tab[at + 256 + ((k >>> 8) & 0xff)]! ^ tab[at + 512 + ((k >>> 16) & 0xff)]! ^ tab[at + 768 + (k >>> 24)]!) >>> 0;
}

/** A position's `s` words (2 or 3) from `from` at `f` to `to` at `t`: unrolled, this runs per shifted or rehashed key. */
function copy(from: Int32Array, f: number, to: Int32Array, t: number, s: number): void {
  to[t] = from[f]!;
  to[t + 1] = from[f + 1]!;
  if (s === 3) to[t + 2] = from[f + 2]!;
}

export class ProbeTable {
  /** Per position: the key's words, then the value (EMPTY: free). */
  private pos: Int32Array;
  private mask: number;
  private count = 0;
  /** Words per position: key words + 1. */
  private readonly stride: number;
  private readonly tab: Uint32Array;

  /**
   * `keyWords`: 1 or 2. `tables`: the byte tables (1,024 words per key word), fixed only in tests; random by
   * default. `name`: the user's class, in errors. Throws RangeError on tables of another size.
   */
  constructor(keyWords: 1 | 2, tables: Uint32Array | undefined, private readonly name: string) {
    if (tables && tables.length !== 1024 * keyWords) throw new RangeError(`${name} tables are ${4 * keyWords} × 256 words`);
    this.tab = tables ?? randomFillSync(new Uint32Array(1024 * keyWords));
    this.stride = keyWords + 1;
    this.pos = this.fresh(MIN_CAPACITY);
    this.mask = MIN_CAPACITY - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Positions held (capacity): for tests of the bound. */
  get capacity(): number {
    return this.mask + 1;
  }

  /** The value held for key (k0, k1) (k1 ignored for one-word keys), or undefined. */
  get(k0: number, k1: number): number | undefined {
    const i = this.find(k0 | 0, k1 | 0), s = this.stride;
    return i < 0 ? undefined : this.pos[s * i + s - 1]!;
  }

  /** Holds `value` (an integer in [0, 2^31)) for key (k0, k1); throws RangeError on a value out of range. */
  set(k0: number, k1: number, value: number): void {
    const at = this.add(k0, k1, value);
    if (at >= 0) this.pos[at + this.stride - 1] = value;
  }

  /**
   * Holds `value` (an integer in [0, 2^31)) for key (k0, k1) unless the key is held: its word offset then (≥ 0,
   * value unchanged), else -1. One probe for a get-or-insert. Throws RangeError on a value out of range.
   */
  add(k0: number, k1: number, value: number): number {
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) throw new RangeError(`${this.name} value ${value} is not in [0, 2^31)`);
    const i = this.find(k0 | 0, k1 | 0);
    if (i >= 0) return this.stride * i;
    const at = this.stride * (-1 - i);
    this.pos[at] = k0 | 0;
    if (this.stride === 3) this.pos[at + 1] = k1 | 0;
    this.pos[at + this.stride - 1] = value;
    if (++this.count * 4 > (this.mask + 1) * 3) this.resize((this.mask + 1) * 2);
    return -1;
  }

  /** The value held at word offset `at` (from add). */
  valueAt(at: number): number {
    return this.pos[at + this.stride - 1]!;
  }

  /** The value key (k0, k1) held, or -1 when it was not held. */
  delete(k0: number, k1: number): number {
    let i = this.find(k0 | 0, k1 | 0);
    if (i < 0) return -1;
    const p = this.pos, s = this.stride, m = this.mask;
    const held = p[s * i + s - 1]!;
    // backward shift (Knuth, TAOCP vol. 3, 6.4 Algorithm R): move up each later entry of the run whose home
    // does not lie cyclically in (i, j], so every key stays reachable from its home without a gap
    for (let j = (i + 1) & m; p[s * j + s - 1] !== EMPTY; j = (j + 1) & m) {
      const h = this.hashAt(p, s * j) & m;
      if (i <= j ? i < h && h <= j : i < h || h <= j) continue;
      copy(p, s * j, p, s * i, s);
      i = j;
    }
    p[s * i + s - 1] = EMPTY;
    if (--this.count * 4 < m + 1 && m + 1 > MIN_CAPACITY) this.resize((m + 1) / 2);
    return held;
  }

  /** Every value held, in position order (not insertion order). */
  *values(): IterableIterator<number> {
    const p = this.pos, s = this.stride;
    for (let v = s - 1; v < p.length; v += s) if (p[v] !== EMPTY) yield p[v]!;
  }

  /** Every [k0, k1, value] held (key words as unsigned numbers; k1 0 for one-word keys), in position order. */
  *entries(): IterableIterator<[number, number, number]> {
    const p = this.pos, s = this.stride;
    for (let at = 0; at < p.length; at += s) if (p[at + s - 1] !== EMPTY) yield [p[at]! >>> 0, s === 3 ? p[at + 1]! >>> 0 : 0, p[at + s - 1]!];
  }

  /** `f(k0, k1, value)` for every key held, as entries() without an array per key; `f` must not change the table. */
  forEach(f: (k0: number, k1: number, value: number) => void): void {
    const p = this.pos, s = this.stride;
    for (let at = 0; at < p.length; at += s) if (p[at + s - 1] !== EMPTY) f(p[at]! >>> 0, s === 3 ? p[at + 1]! >>> 0 : 0, p[at + s - 1]!);
  }

  /** The mean distance of a held key from its home position (0 when empty): how well the keys spread, for tests. */
  get meanDisplacement(): number {
    let sum = 0;
    const p = this.pos, s = this.stride;
    for (let i = 0; i <= this.mask; i++) if (p[s * i + s - 1] !== EMPTY) sum += (i - this.hashAt(p, s * i)) & this.mask;
    return this.count ? sum / this.count : 0;
  }

  /** The hash of the key whose words are (k0, k1), k1 ignored for one-word keys. */
  hash(k0: number, k1: number): number {
    return this.stride === 2 ? tabulate(this.tab, k0) : (tabulate(this.tab, k0) ^ tabulate(this.tab, k1, 1024)) >>> 0;
  }

  private hashAt(p: Int32Array, at: number): number {
    return this.hash(p[at]!, this.stride === 3 ? p[at + 1]! : 0);
  }

  /** The position holding (k0, k1), or -1 - the free one ending its run. */
  private find(k0: number, k1: number): number {
    const p = this.pos, s = this.stride, m = this.mask;
    for (let i = this.hash(k0, k1) & m; ; i = (i + 1) & m) {
      const at = s * i;
      if (p[at + s - 1] === EMPTY) return -1 - i;
      if (p[at] === k0 && (s === 2 || p[at + 1] === k1)) return i;
    }
  }

  private resize(capacity: number): void {
    const old = this.pos, s = this.stride;
    this.pos = this.fresh(capacity);
    this.mask = capacity - 1;
    for (let at = 0; at < old.length; at += s) {
      if (old[at + s - 1] === EMPTY) continue;
      let j = this.hashAt(old, at) & this.mask;
      while (this.pos[s * j + s - 1] !== EMPTY) j = (j + 1) & this.mask;
      copy(old, at, this.pos, s * j, s);
    }
  }

  private fresh(capacity: number): Int32Array {
    const p = new Int32Array(this.stride * capacity);
    for (let v = this.stride - 1; v < p.length; v += this.stride) p[v] = EMPTY;
    return p;
  }
}

/**
 * What U32Map and PairMap share around their table: its size, capacity and spread. Each holds a ProbeTable (one
 * hidden class for both, so the probe loops stay monomorphic) rather than extending it.
 */
export abstract class ProbeTableHolder {
  protected readonly t: ProbeTable;

  protected constructor(keyWords: 1 | 2, tables: Uint32Array | undefined, name: string) {
    this.t = new ProbeTable(keyWords, tables, name);
  }

  get size(): number {
    return this.t.size;
  }

  /** Positions held (capacity): for tests of the bound. */
  get capacity(): number {
    return this.t.capacity;
  }

  /** The mean distance of a held key from its home position (0 when empty): how well the keys spread, for tests. */
  get meanDisplacement(): number {
    return this.t.meanDisplacement;
  }
}
