/**
 * Numbered records of a fixed set of numeric fields and one string, held in
 * columns instead of one object each (issue 16, bench/memory.ts): a record
 * is its index, a Smi, where an object of 8 fields costs 88 B of heap; here it
 * costs `fields` × 8 B of Float64Array and 8 B of string reference.
 *
 * Storage grows by chunks of CHUNK records (never by doubling, so at most one
 * chunk is slack) and is not given back: it stays at the most records held at
 * once (the caller's own bound). Freed indices are reused, latest freed first.
 * Float64 holds every JS number exactly, so a field reads back what was written.
 */

/** Records per chunk: 4096 × (fields × 8 + 8) B, e.g. 192 KiB at 5 fields. */
const CHUNK = 4096;
const SHIFT = 12;

export class SlotColumns {
  private readonly nums: Float64Array[] = [];
  private readonly strs: Array<Array<string | undefined>> = [];
  private readonly free: number[] = [];
  private next = 0;

  /** `fields`: numeric fields per record; `initial`: their values in a fresh record. */
  constructor(
    private readonly fields: number,
    private readonly initial: readonly number[],
  ) {}

  /** A fresh record: string undefined, fields `initial`. */
  alloc(): number {
    let i = this.free.pop();
    if (i === undefined) {
      i = this.next++;
      if (i >>> SHIFT === this.nums.length) {
        this.nums.push(new Float64Array(CHUNK * this.fields));
        this.strs.push(new Array<string | undefined>(CHUNK).fill(undefined));
      }
    }
    this.setStr(i, undefined);
    for (let f = 0; f < this.fields; f++) this.set(i, f, this.initial[f]!);
    return i;
  }

  /** Gives record `i` back (its string reference dropped). */
  release(i: number): void {
    this.setStr(i, undefined);
    this.free.push(i);
  }

  get(i: number, field: number): number {
    return this.nums[i >>> SHIFT]![(i & (CHUNK - 1)) * this.fields + field]!;
  }

  set(i: number, field: number, v: number): void {
    this.nums[i >>> SHIFT]![(i & (CHUNK - 1)) * this.fields + field] = v;
  }

  str(i: number): string | undefined {
    return this.strs[i >>> SHIFT]![i & (CHUNK - 1)];
  }

  setStr(i: number, s: string | undefined): void {
    this.strs[i >>> SHIFT]![i & (CHUNK - 1)] = s;
  }
}
