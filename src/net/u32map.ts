/**
 * A map from 32-bit keys (an IPv4 address as a number) to non-negative 31-bit values (a slot number), held in
 * one Int32Array instead of a Map (issue 16): 8 B per position, 11–21 B per key as a table grows, against
 * ~46 B for a Map<string, number> entry at 160k keys. The table, its hash (simple tabulation over four random
 * byte tables per map: no HashDoS from keys a remote chooses), its bounds and its visit order: probetable.ts.
 *
 * Keys are not checked (the caller's own bound: an IPv4 address): a number is taken as `key | 0`, so 2^32 + 5,
 * 5.9 and 5 are one key, as are -1 and 2^32 - 1.
 */
import { ProbeTableHolder } from './probetable.js';

export { tabulate } from './probetable.js';

export class U32Map extends ProbeTableHolder {
  /** `tables`: the four byte tables (1,024 words), fixed only in tests; random by default. Throws RangeError on another size. */
  constructor(tables?: Uint32Array) {
    super(1, tables, 'U32Map');
  }

  /** The value held for `key` (an integer in [0, 2^32)), or undefined. */
  get(key: number): number | undefined {
    return this.t.get(key, 0);
  }

  /** Holds `value` (an integer in [0, 2^31)) for `key`; throws RangeError on a value out of range. */
  set(key: number, value: number): void {
    this.t.set(key, 0, value);
  }

  /** True when `key` was held. */
  delete(key: number): boolean {
    return this.t.delete(key, 0) >= 0;
  }

  /** Every value held, in position order (not insertion order). */
  values(): IterableIterator<number> {
    return this.t.values();
  }

  /** Every [key, value] held, keys as unsigned numbers, in position order. */
  *entries(): IterableIterator<[number, number]> {
    for (const [k, , v] of this.t.entries()) yield [k, v];
  }
}
