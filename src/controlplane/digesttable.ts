/**
 * Key → 48-bit value digest and create revision for ListWatcher (kvstore.ts),
 * without a heap number or object per key (issue 16, bench/memory.ts, bench/digesttable.ts).
 *
 * A 48-bit number does not fit a Smi, so a Map<string, number> holding the
 * digest boxes it: a 16 B heap number per key (on 64-bit V8, no pointer
 * compression). Here each key has an index, a Smi, and the digest and the
 * create revision are three 32-bit words at that index in chunks of CHUNK keys
 * (12 B per key, s37; two Float64 slots, 16 B, before): the digest's low 32 bits, the create
 * revision's, then one word with the digest's high 16 bits in its low half and the create
 * revision's in its high half. A digest packs when it is an integer in [0, 2^48) (valueDigest's
 * are), a create revision when it is one in [0, 2^48 − 2^32) (the top high half, SPILLED, marks a
 * spilled key; no honest etcd reaches 2.8 × 10^14 revisions). Any other pair (-0, fractions, larger
 * numbers: a hostile store's own keys) is held in `spill` by index as well, ~100 B more per such key
 * (the review of s37 measured 84–131 B), bounded by the keys held: get() and createRevision() give back exactly what
 * set() was given. Chunks are never grown by doubling: at most one chunk is
 * slack; storage stays at the most keys held at once, freed indices reused, latest freed first.
 *
 * Key → index: a key that has a short IPv4 compact form's layout (compactkeys.ts isShortIPv4Form: a remote
 * endpoint's key, 8 one-byte characters that are exactly a base index and an address; a raw key of that layout,
 * from a watcher without forms, reads the same way and back exactly, so it is held there too) is held as those two numbers in a PairMap (pairmap.ts: 12 B per
 * position, 16–32 B per key while a sync only grows it, ~20 B at 160k, no HashDoS), any other key in a Map<string, number>
 * (~51 B per entry at 40k keys: what every key cost before). keys() gives a PairMap key back as its form, made
 * again from the two numbers (shortIPv4Form: one 24 B string per key per visit, garbage after it) rather than
 * holding the form's string per index (8 B more per key, for the one visit per relist). Measured at 160k short
 * IPv4 forms (bench/digesttable.ts): 32 B per key (s37; 36 B with 16 B chunks) against ~62 B with the Map for
 * every key.
 *
 * Same answers as a Map<string, number>. keys(): the Map's keys in its insertion order (set() on a held key keeps
 * its place), then the compact IPv4 forms in PairMap position order (neither insertion nor key order; as
 * random as its hash), as an array: a copy, so the table may change while it is read.
 */
import { PairMap } from '../net/pairmap.js';
import { formAddress, formBase, isShortIPv4Form, shortIPv4Form } from './compactkeys.js';

/** Keys per chunk: 4096 × 3 words × 4 B = 48 KiB. */
const CHUNK = 4096;
const SHIFT = 12;
const TWO32 = 2 ** 32;
/** A key's words in its chunk: the digest's low 32 bits, the create revision's, then the high halves (the header). */
const WORDS = 3;
/** The third word's high half (where the create revision's high 16 bits go) of a key whose pair is in `spill`. */
const SPILLED = 0xffff;
/** Whether `v` packs in 48 bits below `limit` (an integer, not -0). */
const packs = (v: number, limit: number): boolean => Number.isInteger(v) && v >= 0 && v < limit && !Object.is(v, -0);
const DIGEST_LIMIT = 2 ** 48;
/** Create revisions inline: below SPILLED × 2^32, so a held one's high half is never SPILLED. */
const REVISION_LIMIT = SPILLED * TWO32;

export class DigestTable {
  private readonly index = new Map<string, number>();
  /** Short IPv4 forms: (address, base index) → index; made with the first (its 8 KiB of tables: not per watcher of a prefix without forms). */
  private forms: PairMap | undefined;
  private readonly chunks: Uint32Array[] = [];
  /** [digest, create revision] of the keys whose pair does not pack (see the file's comment), by index. */
  private readonly spill = new Map<number, [number, number]>();
  private readonly free: number[] = [];
  private next = 0;

  get size(): number {
    return this.index.size + (this.forms?.size ?? 0);
  }

  get(key: string): number | undefined {
    const i = this.indexOf(key);
    if (i === undefined) return undefined;
    const c = this.chunks[i >>> SHIFT]!, at = WORDS * (i & (CHUNK - 1)), hi = c[at + 2]!;
    return hi >>> 16 === SPILLED ? this.spill.get(i)![0] : (hi & 0xffff) * TWO32 + c[at]!;
  }

  /** The create revision set with the key's digest (0: unknown), or undefined when the key is not held. */
  createRevision(key: string): number | undefined {
    const i = this.indexOf(key);
    if (i === undefined) return undefined;
    const c = this.chunks[i >>> SHIFT]!, at = WORDS * (i & (CHUNK - 1)), hi = c[at + 2]!;
    return hi >>> 16 === SPILLED ? this.spill.get(i)![1] : (hi >>> 16) * TWO32 + c[at + 1]!;
  }

  set(key: string, digest: number, createRevision = 0): void {
    let i: number | undefined;
    if (isShortIPv4Form(key)) {
      // the index a new key takes, offered to the PairMap with the key in one probe (a held key keeps its own)
      const fresh = this.free.length > 0 ? this.free[this.free.length - 1]! : this.next;
      i = (this.forms ??= new PairMap()).add(formAddress(key), formBase(key), fresh);
      if (i === undefined) i = this.take();
    } else {
      i = this.index.get(key);
      if (i === undefined) this.index.set(key, (i = this.take()));
    }
    const c = this.chunks[i >>> SHIFT]!, at = WORDS * (i & (CHUNK - 1));
    if (this.spill.size > 0) this.spill.delete(i);
    if (!packs(digest, DIGEST_LIMIT) || !packs(createRevision, REVISION_LIMIT)) {
      this.spill.set(i, [digest, createRevision]);
      c[at + 2] = SPILLED << 16;
      return;
    }
    // (v % 2^32 and Math.floor(v / 2^32) are exact for integers below 2^53)
    c[at] = digest % TWO32;
    c[at + 1] = createRevision % TWO32;
    c[at + 2] = Math.floor(digest / TWO32) | (Math.floor(createRevision / TWO32) << 16);
  }

  /** True when `key` was held. */
  delete(key: string): boolean {
    let i: number | undefined;
    if (isShortIPv4Form(key)) i = this.forms?.delete(formAddress(key), formBase(key));
    else if ((i = this.index.get(key)) !== undefined) this.index.delete(key);
    if (i === undefined) return false;
    if (this.spill.size > 0) this.spill.delete(i);
    this.free.push(i);
    return true;
  }

  /**
   * Every key held, a copy (the table may change while it is read): the Map's keys in insertion order, then the
   * short IPv4 forms in PairMap order, each made again from its two numbers (header).
   */
  keys(): string[] {
    const out = [...this.index.keys()];
    this.forms?.forEach((address, base) => out.push(shortIPv4Form(base, address)));
    return out;
  }

  /** The index for a new key: the latest freed, else the next (with its chunk); what set() offered the PairMap. */
  private take(): number {
    const i = this.free.pop();
    if (i !== undefined) return i;
    if (this.next >>> SHIFT === this.chunks.length) this.chunks.push(new Uint32Array(WORDS * CHUNK));
    return this.next++;
  }

  private indexOf(key: string): number | undefined {
    return isShortIPv4Form(key) ? this.forms?.get(formAddress(key), formBase(key)) : this.index.get(key);
  }
}
