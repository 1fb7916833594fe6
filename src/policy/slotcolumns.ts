/**
 * Numbered records of a fixed set of numeric fields and one string (or a
 * number the caller stores in its place, one it derives the string from),
 * held in columns instead of one object each (issue 16, bench/memory.ts): a
 * record is its index, a Smi, where an object of 8 fields costs 88 B of heap;
 * here it costs 4 B of Uint32Array per dense field and 8 B of reference.
 *
 * A field holds any JS number exactly: an integer v in [-1, 2^32 - 3] (what
 * the ipcache stores: u32 identities and endpoint ids, a
 * sequence × 4 + kind) is stored as v + 1; any other number (-0, a fraction,
 * a larger integer) as SPILL, the number itself in a side map by field
 * (rare: one map entry each, dropped when the field is set to a plain value).
 * A sparse field (the caller's choice: one nearly every record holds at its
 * initial value, the ipcache's local endpoint id) has no column: a value other
 * than its initial one is in a side map, the initial one costs nothing.
 *
 * Storage grows by chunks of CHUNK records (never by doubling, so at most one
 * chunk is slack) and is not given back: it stays at the most records held at
 * once (the caller's own bound). Freed indices are reused, latest freed first.
 */

/** Records per chunk: 4096 × (dense fields × 4 + 8) B, e.g. 64 KiB at 2 dense fields. */
const CHUNK = 4096;
const SHIFT = 12;
/** The stored code of a field whose number is in `spill`. */
const SPILL = 0xffffffff;
/** The largest number stored inline (as v + 1, below SPILL). */
const MAX_INLINE = SPILL - 2;

const inline = (v: number): boolean => Number.isInteger(v) && v >= -1 && v <= MAX_INLINE && !Object.is(v, -0);

export class SlotColumns {
  /** Per record: its dense fields' codes. */
  private readonly nums: Uint32Array[] = [];
  private readonly strs: Array<Array<string | number | undefined>> = [];
  private readonly free: number[] = [];
  /** Numbers no code holds, by record × fields + field. */
  private readonly spill = new Map<number, number>();
  /** Sparse fields' values other than their initial ones, by record × fields + field. */
  private readonly sparseValues = new Map<number, number>();
  /** Per field: its column among a record's codes, or -1 (sparse). */
  private readonly column: number[];
  /** Codes per record: its dense fields. */
  private readonly stride: number;
  private next = 0;

  /** `fields`: numeric fields per record; `initial`: their values in a fresh record; `sparse`: fields without a column. */
  constructor(
    private readonly fields: number,
    private readonly initial: readonly number[],
    sparse: readonly number[] = [],
  ) {
    let c = 0;
    this.column = Array.from({ length: fields }, (_, f) => (sparse.includes(f) ? -1 : c++));
    this.stride = c;
  }

  /** A fresh record: string undefined, fields `initial`. */
  alloc(): number {
    let i = this.free.pop();
    if (i === undefined) {
      i = this.next++;
      if (i >>> SHIFT === this.nums.length) {
        this.nums.push(new Uint32Array(CHUNK * this.stride));
        this.strs.push(new Array<string | number | undefined>(CHUNK).fill(undefined));
      }
    }
    this.setStr(i, undefined);
    for (let f = 0; f < this.fields; f++) this.set(i, f, this.initial[f]!);
    return i;
  }

  /** Gives record `i` back (its string reference and spilled or sparse numbers dropped). */
  release(i: number): void {
    this.setStr(i, undefined);
    for (let f = 0; f < this.fields; f++) this.set(i, f, this.column[f]! < 0 ? this.initial[f]! : 0);
    this.free.push(i);
  }

  get(i: number, field: number): number {
    const c = this.column[field]!;
    if (c < 0) {
      const v = this.sparseValues.get(i * this.fields + field);
      return v === undefined ? this.initial[field]! : v;
    }
    const code = this.nums[i >>> SHIFT]![(i & (CHUNK - 1)) * this.stride + c]!;
    return code === SPILL ? this.spill.get(i * this.fields + field)! : code - 1;
  }

  set(i: number, field: number, v: number): void {
    const c = this.column[field]!;
    if (c < 0) {
      if (Object.is(v, this.initial[field])) this.sparseValues.delete(i * this.fields + field);
      else this.sparseValues.set(i * this.fields + field, v);
      return;
    }
    const col = this.nums[i >>> SHIFT]!;
    const at = (i & (CHUNK - 1)) * this.stride + c;
    if (inline(v)) {
      if (col[at] === SPILL) this.spill.delete(i * this.fields + field);
      col[at] = v + 1;
    } else {
      col[at] = SPILL;
      this.spill.set(i * this.fields + field, v);
    }
  }

  /** Fields held in the side map (for tests and status: should stay ~0). */
  get spilled(): number {
    return this.spill.size;
  }

  /** Record `i`'s string, or the number the caller stored in its place (one a string is derived from: a Smi costs no heap). */
  str(i: number): string | number | undefined {
    return this.strs[i >>> SHIFT]![i & (CHUNK - 1)];
  }

  setStr(i: number, s: string | number | undefined): void {
    this.strs[i >>> SHIFT]![i & (CHUNK - 1)] = s;
  }
}
