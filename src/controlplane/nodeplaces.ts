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
 * What is kept to offer again, bounded: at most min(places reserved, places left) nodes at the moment of each
 * refusal (no more can be admitted at the list's end: the places it can release are at most those reserved, the
 * room at most what is left now, and the nodes are offered again in the order they were refused, key order), and
 * at most the bytes left in the remote's budget (bytes). A node past either bound is refused at once, as before:
 * offered again when it changes or at the next relist.
 */
import { RecordError } from './records/index.js';

/** A node refused in the first list for the places kept for cached nodes: its source key and value. */
export interface WaitingNode {
  key: string;
  value: string;
}

export class NodePlaces {
  /** Node records copied (the budget's measure; the status's `budget.nodes`). */
  count = 0;
  private waiting: WaitingNode[] = [];
  private waitingBytes = 0;

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
    return new RecordError('node', key, 'budget', `${this.remote} holds ${this.count} nodes, ${reserved} more cached (limit ${this.max})`);
  }

  /**
   * Whether a new node refused by refuse() while `reserved` places were kept waits for the list's end (to be
   * offered again by takeWaiting's caller, and reported only if refused then) rather than being reported now.
   * `size`: its key and value (bytes); `bytesLeft`: what the remote's byte budget has left. False (report it now)
   * when no place is kept (`reserved` 0: outside the first list, or the node was cached), when the places kept
   * are not what refused it, and past the bounds above.
   */
  wait(node: WaitingNode, size: number, reserved: number, bytesLeft: number): boolean {
    if (this.count + reserved < this.max) return false; // refused for the records or bytes, not for a place
    if (this.waiting.length >= Math.min(reserved, this.max - this.count)) return false;
    if (this.waitingBytes + size > bytesLeft) return false;
    this.waiting.push(node);
    this.waitingBytes += size;
    return true;
  }

  /** The waiting nodes in the order they were refused (key order), once: the list ended, its places are released. */
  takeWaiting(): WaitingNode[] {
    const w = this.waiting;
    this.waiting = [];
    this.waitingBytes = 0;
    return w;
  }
}
