/**
 * Which incarnation of each key ListWatcher's sink holds (kvstore.ts), without a create revision per key (issue 16:
 * 8 B per watched key; DigestTable kept one until s34). A key's incarnation changes exactly when it is deleted and
 * put again, and etcd then gives it a new create_revision, above every revision before the delete.
 *
 * `through`: every change at a revision up to it has been handed to the sink (a complete list's revision, then
 * each watched event's once handled; -1: none yet). A held key whose create revision is at most `through` is of
 * the incarnation the sink has (its creation was handed over, and a later delete would have been too); one created
 * later is a new incarnation (`reborn`), whatever was held. Two exceptions keep that exact or fail closed:
 * - keys a list that failed midway handed over (`partial`) are at that list's revision until a list completes
 *   (their values are newer than `through`): so an unchanged one is neither handed over again nor taken as new;
 * - a list whose revision is below `through` means the store's history went back (rebuilt, or restored without
 *   `--bump-revision`): nothing followed before says which held key is of which incarnation, so every one is
 *   taken as new for that list (-1), logged by the caller.
 * Events within one revision: etcd refuses a transaction that changes a key twice, so `through` moves to an
 * event's revision once it is handled. A list revision outside 1 .. 2^53 − 1 (no etcd reaches it) fails the list.
 *
 * Bounds: `partial` holds at most the keys held, only between a failed list and the next complete one.
 */
export class Incarnations {
  private through = -1;
  /** Keys handed over by lists that failed midway: form → that list's revision. */
  private readonly partial = new Map<string, number>();

  /** Whether create revision `c` (0: the store gave none) is a new incarnation of the key held as `form`. */
  reborn(form: string | undefined, c: number): boolean {
    return form !== undefined && c !== 0 && c > (this.partial.get(form) ?? this.through);
  }

  /**
   * A list at `revision` starts handing over (its first page): its revision as a number. `wentBack` runs when it
   * is below `through` (every held key is then taken as new for this list). Throws outside 1 .. 2^53 − 1.
   */
  listStarted(revision: string, wentBack: (through: number) => void): number {
    const at = listRevisionNumber(revision);
    if (at < this.through) {
      wentBack(this.through);
      this.through = -1;
      this.partial.clear();
    }
    return at;
  }

  /** A list at `at` failed after handing over the keys `seen`: those count at its revision. */
  listFailed(seen: Iterable<string>, at: number): void {
    for (const f of seen) this.partial.set(f, at);
  }

  /** A list at `revision` completed (every key it did not list removed). */
  listDone(revision: string): void {
    this.through = listRevisionNumber(revision);
    this.partial.clear();
  }

  /** A watched event at `revision` was handled. */
  handled(revision: string): void {
    this.through = Number(revision);
  }

  /** The key held as `form` is gone. */
  dropped(form: string): void {
    this.partial.delete(form);
  }
}

/** A list's revision as a number: throws (the list failed, retried) outside 1 .. 2^53 - 1, which no etcd reaches. */
function listRevisionNumber(revision: string): number {
  const n = Number(revision);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`list revision out of range: ${revision.slice(0, 32)}`);
  return n;
}
