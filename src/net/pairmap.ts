/**
 * A map from keys of two 32-bit words (ListWatcher's digest table: a compact key's IPv4 address and its base
 * index, in that order, compactkeys.ts) to non-negative 31-bit values (a slot number), held in one Int32Array
 * instead of a Map<string, number> (issue 16): 12 B per position, 16–32 B per key as a table grows, against ~51 B per entry
 * of the Map at 40k keys (V8's OrderedHashMap: 3 words per entry plus buckets). The table, its hash (simple
 * tabulation of the 8 key bytes over eight random byte tables per map: no HashDoS from keys a remote chooses,
 * nor from pairs sharing either word), its bounds and its visit order: probetable.ts.
 *
 * Key words are not checked (the caller's own bounds): each is taken as `word | 0`, so 2^32 + 5, 5.9 and 5 are
 * one word, as are -1 and 2^32 - 1.
 */
import { ProbeTableHolder } from './probetable.js';

export class PairMap extends ProbeTableHolder {
  /** `tables`: the eight byte tables (2,048 words: `lo`'s four, then `hi`'s), fixed only in tests; random by default. Throws RangeError on another size. */
  constructor(tables?: Uint32Array) {
    super(2, tables, 'PairMap');
  }

  /** The value held for key (lo, hi) (integers in [0, 2^32)), or undefined. */
  get(lo: number, hi: number): number | undefined {
    return this.t.get(lo, hi);
  }

  /** Holds `value` (an integer in [0, 2^31)) for key (lo, hi); throws RangeError on a value out of range. */
  set(lo: number, hi: number, value: number): void {
    this.t.set(lo, hi, value);
  }

  /**
   * Holds `value` (an integer in [0, 2^31)) for key (lo, hi) unless the key is held: then its value, unchanged;
   * else undefined. One probe (a get then a set would take two). Throws RangeError on a value out of range.
   */
  add(lo: number, hi: number, value: number): number | undefined {
    const at = this.t.add(lo, hi, value);
    return at < 0 ? undefined : this.t.valueAt(at);
  }

  /** The value key (lo, hi) held, or undefined when it was not held. */
  delete(lo: number, hi: number): number | undefined {
    const v = this.t.delete(lo, hi);
    return v < 0 ? undefined : v;
  }

  /** `f(lo, hi, value)` for every key held (key words as unsigned numbers), in position order; `f` must not change the map. */
  forEach(f: (lo: number, hi: number, value: number) => void): void {
    this.t.forEach(f);
  }
}
