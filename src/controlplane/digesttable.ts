/**
 * Key → 48-bit value digest and create revision for ListWatcher (kvstore.ts),
 * without a heap number or object per key (issue 16, bench/memory.ts).
 *
 * A 48-bit number does not fit a Smi, so a Map<string, number> holding the
 * digest boxes it: a 16 B heap number per key (on 64-bit V8, no pointer
 * compression). Here the Map's value is the digest's index, a Smi, and the
 * digest and the create revision two 8 B Float64 slots in chunks of CHUNK
 * keys (never grown by doubling:
 * at most one chunk is slack; storage stays at the most keys held at once,
 * freed indices reused, latest freed first). Float64 holds every integer
 * below 2^53 exactly (etcd revisions are checked below it where they are
 * decoded), so get() and createRevision() give back what set() was given.
 *
 * Same answers as a Map<string, number>, keys() in the same order (the Map's
 * insertion order: set() on a held key keeps its place).
 */

/** Keys per chunk: 4096 × 2 × 8 B = 64 KiB. */
const CHUNK = 4096;
const SHIFT = 12;

export class DigestTable {
  private readonly index = new Map<string, number>();
  private readonly chunks: Float64Array[] = [];
  private readonly free: number[] = [];
  private next = 0;

  get size(): number {
    return this.index.size;
  }

  get(key: string): number | undefined {
    const i = this.index.get(key);
    return i === undefined ? undefined : this.chunks[i >>> SHIFT]![2 * (i & (CHUNK - 1))]!;
  }

  /** The create revision set with the key's digest (0: unknown), or undefined when the key is not held. */
  createRevision(key: string): number | undefined {
    const i = this.index.get(key);
    return i === undefined ? undefined : this.chunks[i >>> SHIFT]![2 * (i & (CHUNK - 1)) + 1]!;
  }

  set(key: string, digest: number, createRevision = 0): void {
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.free.pop();
      if (i === undefined) {
        i = this.next++;
        if (i >>> SHIFT === this.chunks.length) this.chunks.push(new Float64Array(2 * CHUNK));
      }
      this.index.set(key, i);
    }
    const c = this.chunks[i >>> SHIFT]!;
    c[2 * (i & (CHUNK - 1))] = digest;
    c[2 * (i & (CHUNK - 1)) + 1] = createRevision;
  }

  /** True when `key` was held. */
  delete(key: string): boolean {
    const i = this.index.get(key);
    if (i === undefined) return false;
    this.index.delete(key);
    this.free.push(i);
    return true;
  }

  keys(): IterableIterator<string> {
    return this.index.keys();
  }
}
