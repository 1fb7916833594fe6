/**
 * A map from 32-bit keys (an IPv4 address as a number) to non-negative 31-bit
 * values (a slot number), held in one Int32Array instead of a Map (issue 16):
 * 8 B per position, 11–21 B per key as a table grows (bounds below), against
 * ~46 B for a Map<string, number> entry at 160k keys.
 *
 * Open addressing with linear probing; a removal shifts the entries behind it
 * back (no tombstones, so a long run of removals leaves no debris to probe
 * through). Keys come from remote clusters (the addresses of their endpoints),
 * so the position is not a function an attacker can aim at: simple tabulation
 * (four tables of 256 random 32-bit words, one per key byte, XORed), drawn per
 * map from the CSPRNG. Simple tabulation gives linear probing O(1) expected time
 * per operation at any fixed load below 1, whatever the key set (Pătraşcu and
 * Thorup, "The Power of Simple Tabulation Hashing", J. ACM 59(3), 2012), where
 * a plain multiplicative hash over the dense addresses of one pod CIDR would
 * not be covered by that bound.
 *
 * Bounds: capacity is a power of two from 16, doubled when more than 3/4 of
 * the positions hold a key, halved when fewer than 1/4 do: once more than 4
 * keys are held, at least 4/3 and at most 4 positions per key (8 B each:
 * 11–32 B per key; 11–21 B while a table only grows, as in a sync), plus 4 KiB
 * of tables per map; while it resizes, the old array too (3 × capacity × 8 B
 * during a doubling). Not ordered: values() and entries() visit in position
 * order, and the map must not change during a visit (a delete shifts later
 * entries back: one could be skipped or seen twice).
 *
 * Keys are not checked (the caller's own bound: an IPv4 address): a number is
 * taken as `key | 0`, so 2^32 + 5, 5.9 and 5 are one key, as are -1 and
 * 2^32 - 1.
 */
import { randomFillSync } from 'node:crypto';

const MIN_CAPACITY = 16;
/** A free position's value. */
const EMPTY = -1;

/** Simple tabulation of a 32-bit key over four tables of 256 words (`tab`: 1,024 words, byte 0 the lowest). */
export function tabulate(tab: Uint32Array, k: number): number {
  return (tab[k & 0xff]! ^ tab[256 + ((k >>> 8) & 0xff)]! ^ tab[512 + ((k >>> 16) & 0xff)]! ^ tab[768 + (k >>> 24)]!) >>> 0;
}

export class U32Map {
  /** [key, value] per position; value EMPTY: free. */
  private pos: Int32Array;
  private mask: number;
  private count = 0;
  private readonly tab: Uint32Array;

  /** `tables`: the four byte tables (1,024 words), fixed only in tests; random by default. */
  constructor(tables?: Uint32Array) {
    if (tables && tables.length !== 1024) throw new RangeError('U32Map tables are 4 × 256 words');
    this.tab = tables ?? randomFillSync(new Uint32Array(1024));
    this.pos = U32Map.fresh(MIN_CAPACITY);
    this.mask = MIN_CAPACITY - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Positions held (capacity): for tests of the bound. */
  get capacity(): number {
    return this.mask + 1;
  }

  /** The value held for `key` (an integer in [0, 2^32)), or undefined. */
  get(key: number): number | undefined {
    const k = key | 0;
    for (let i = this.home(k); ; i = (i + 1) & this.mask) {
      const v = this.pos[2 * i + 1]!;
      if (v === EMPTY) return undefined;
      if (this.pos[2 * i] === k) return v;
    }
  }

  /** Holds `value` (an integer in [0, 2^31)) for `key`; throws RangeError on a value out of range. */
  set(key: number, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) throw new RangeError(`U32Map value ${value} is not in [0, 2^31)`);
    const k = key | 0;
    let i = this.home(k);
    for (; this.pos[2 * i + 1] !== EMPTY; i = (i + 1) & this.mask) {
      if (this.pos[2 * i] === k) {
        this.pos[2 * i + 1] = value;
        return;
      }
    }
    this.pos[2 * i] = k;
    this.pos[2 * i + 1] = value;
    if (++this.count * 4 > (this.mask + 1) * 3) this.resize((this.mask + 1) * 2);
  }

  /** True when `key` was held. */
  delete(key: number): boolean {
    const k = key | 0;
    let i = this.home(k);
    for (; ; i = (i + 1) & this.mask) {
      if (this.pos[2 * i + 1] === EMPTY) return false;
      if (this.pos[2 * i] === k) break;
    }
    // backward shift (Knuth, TAOCP vol. 3, 6.4 Algorithm R): move up each later entry of the run whose home
    // does not lie cyclically in (i, j], so every key stays reachable from its home without a gap
    for (let j = (i + 1) & this.mask; this.pos[2 * j + 1] !== EMPTY; j = (j + 1) & this.mask) {
      const h = this.home(this.pos[2 * j]!);
      if (i <= j ? i < h && h <= j : i < h || h <= j) continue;
      this.pos[2 * i] = this.pos[2 * j]!;
      this.pos[2 * i + 1] = this.pos[2 * j + 1]!;
      i = j;
    }
    this.pos[2 * i + 1] = EMPTY;
    if (--this.count * 4 < this.mask + 1 && this.mask + 1 > MIN_CAPACITY) this.resize((this.mask + 1) / 2);
    return true;
  }

  /** Every value held, in position order (not insertion order). */
  *values(): IterableIterator<number> {
    const p = this.pos;
    for (let i = 1; i < p.length; i += 2) if (p[i] !== EMPTY) yield p[i]!;
  }

  /** Every [key, value] held, keys as unsigned numbers, in position order. */
  *entries(): IterableIterator<[number, number]> {
    const p = this.pos;
    for (let i = 0; i < p.length; i += 2) if (p[i + 1] !== EMPTY) yield [p[i]! >>> 0, p[i + 1]!];
  }

  private home(k: number): number {
    return tabulate(this.tab, k) & this.mask;
  }

  /** The mean distance of a held key from its home position (0 when empty): how well the keys spread, for tests. */
  get meanDisplacement(): number {
    let sum = 0;
    for (let i = 0; i <= this.mask; i++) if (this.pos[2 * i + 1] !== EMPTY) sum += (i - this.home(this.pos[2 * i]!)) & this.mask;
    return this.count ? sum / this.count : 0;
  }

  private resize(capacity: number): void {
    const old = this.pos;
    this.pos = U32Map.fresh(capacity);
    this.mask = capacity - 1;
    for (let i = 0; i < old.length; i += 2) {
      if (old[i + 1] === EMPTY) continue;
      let j = this.home(old[i]!);
      while (this.pos[2 * j + 1] !== EMPTY) j = (j + 1) & this.mask;
      this.pos[2 * j] = old[i]!;
      this.pos[2 * j + 1] = old[i + 1]!;
    }
  }

  private static fresh(capacity: number): Int32Array {
    const p = new Int32Array(2 * capacity);
    for (let i = 1; i < p.length; i += 2) p[i] = EMPTY;
    return p;
  }
}
