/**
 * A remote's node places (kvstoremesh --max-nodes-per-remote, replication.ts): how many node records are copied,
 * the places the first list after a start keeps for the nodes the cache held, and the new nodes refused only for
 * those places, offered again once the list ended and released the places it did not confirm.
 *
 * Why places are kept: over the node budget, the nodes copied before a restart (or a pin change, which starts a
 * new replication) keep their tunnels whatever the key order, so the first list counts every cached node before
 * the new ones. Why they are released at the list's end: a cached node that is no longer there (deleted while
 * kvstoremesh was down) or that the list now refuses (outside a narrowed pin) holds no place after it, and a new
 * node it kept out is owed that place now, not when it next changes or at the next relist.
 *
 * Only the waiting nodes' source KEYS are kept, never their values: at the list's end the watcher forgets them and
 * lists once more (ListWatcher.forget), so each comes back with the value the remote holds then, through the normal
 * path and every check. A kept value could be stale: a first list that failed partway and was retried after the
 * node changed, or was deleted and created again, would have re-offered the old incarnation's value (review
 * s13budget #1), and a remote stalling its list's last page would have held up to its byte budget of values
 * in kvstoremesh's memory (#2). What waits: at most min(places reserved, places left) keys at the moment of each
 * refusal (no more can be admitted at the list's end: the places it can release are at most those reserved, the
 * room at most what is left now), keys the watcher holds anyway, until the first list ends or the replication stops.
 */
import { RecordError } from './records/index.js';

/** A node refused only for the places kept for cached nodes (with them free it would have had room). */
class PlaceRefusal extends RecordError {}

export class NodePlaces {
  /** Node records copied (the budget's measure; the status's `budget.nodes`). */
  count = 0;
  /** Source keys of the nodes refused for a kept place, in the order refused (key order). */
  private readonly waiting = new Set<string>();

  constructor(
    private readonly remote: string,
    /** --max-nodes-per-remote. */
    readonly max: number,
  ) {}

  /**
   * Why a node not copied yet may not take a place, or undefined. `reserved`: the places kept for cached nodes
   * the first list has not confirmed yet (0 outside it, and for a cached node itself).
   */
  refuse(key: string, reserved: number): RecordError | undefined {
    if (this.count + reserved < this.max) return undefined;
    const detail = `${this.remote} holds ${this.count} nodes, ${reserved} more cached (limit ${this.max})`;
    return this.count < this.max ? new PlaceRefusal('node', key, 'budget', detail) : new RecordError('node', key, 'budget', detail);
  }

  /**
   * Whether a node refused with `bad` while `reserved` places were kept waits for the list's end (its key handed
   * to release()'s caller; reported only if refused then) rather than being reported now. False (report it now)
   * unless refuse() refused it for the places kept (not the records, the bytes, a claim, nor a full budget), and
   * past min(reserved, places left) keys waiting. A key waiting already (a list retried after one failed) waits on.
   */
  wait(key: string, bad: RecordError, reserved: number): boolean {
    // a key that waited and is now refused for another reason (a retried list, its value changed) is reported now
    // and waits no more: else the list at the end would deliver it again and count the one refusal twice
    if (!(bad instanceof PlaceRefusal)) return void this.waiting.delete(key), false;
    if (this.waiting.has(key)) return true;
    if (this.waiting.size >= Math.min(reserved, this.max - this.count)) return false;
    this.waiting.add(key);
    return true;
  }

  /** A node copied (a new place taken): counted, and no longer waiting (a retried list admitted it). */
  taken(key: string): void {
    this.count++;
    this.waiting.delete(key);
  }

  /**
   * The first list ended and released the places it did not confirm: hands the waiting keys to `forget` (once;
   * ListWatcher.forget: they come back with their current values in one more list). Returns what forget returned
   * (whether that list follows: false when no key waited, or none is still there).
   */
  release(forget: (keys: string[]) => boolean): boolean {
    if (this.waiting.size === 0) return false;
    const keys = [...this.waiting];
    this.waiting.clear();
    return forget(keys);
  }
}
