/**
 * When the remotes' failed purges are tried again (KVStoreMesh): a remote whose purge failed is tried again after
 * a pause that doubles per failure in a row, from `first` (purgeRetryMs, 5 s) up to `max` (60 s), back to the first
 * once a purge of it held or was no longer needed. Without the doubling, while an attempt hangs (every retry then
 * fails at once, purges.ts) each remote logged and counted a failure every 5 s for as long as the local etcd hung
 * (review s6fix-r2 #3), as starts and leases back off. Bounds: per remote whose purge failed (bounded by the
 * remotes ever connected), one timer or one queued retry at a time, never both.
 */
import { doublingDelay } from './backoff.js';

export class PurgeRetries {
  /** Per remote not purged: failures in a row, its timer while one is armed, whether its retry is queued. */
  private readonly remotes = new Map<string, { failed: number; timer?: NodeJS.Timeout; queued: boolean }>();

  /**
   * backoff: the first and the longest pause (ms); retry(name): queues the remote's retry (its step calls
   * dequeued() first, then held() or failed() with the outcome).
   */
  constructor(
    private readonly backoff: { first: number; max: number },
    private readonly retry: (name: string) => void,
  ) {}

  /** A purge of the remote failed (or must be done again): tried again after the pause, unless a retry is pending. */
  failed(name: string): void {
    const e = this.remotes.get(name) ?? { failed: 0, queued: false };
    this.remotes.set(name, e);
    e.failed++;
    if (e.timer || e.queued) return;
    const { first, max } = this.backoff;
    e.timer = setTimeout(() => {
      e.timer = undefined;
      e.queued = true;
      this.retry(name);
    }, doublingDelay(e.failed - 1, { first, max: Math.max(first, max) }));
    e.timer.unref();
  }

  /**
   * A write that may have put the remote's keys back after its purge settled (a status put given up on at its
   * deadline: the mirror's copy writes cannot, their fence fails after a purge, fence.ts): the purge is tried again
   * now, not after the pause. Not counted as a failure; a retry already queued is enough (it runs after now).
   */
  again(name: string): void {
    const e = this.remotes.get(name) ?? { failed: 0, queued: false };
    this.remotes.set(name, e);
    if (e.queued) return;
    clearTimeout(e.timer);
    e.timer = undefined;
    e.queued = true;
    this.retry(name);
  }

  /** The remote's queued retry runs now: whether it is still wanted (false once held() forgot the remote). */
  dequeued(name: string): boolean {
    const e = this.remotes.get(name);
    if (e) e.queued = false;
    return e !== undefined;
  }

  /** A purge of the remote held, or is no longer needed (replicated again): forgotten, its timer cancelled. */
  held(name: string): void {
    clearTimeout(this.remotes.get(name)?.timer);
    this.remotes.delete(name);
  }

  /** Remotes whose purge is waiting to be tried again. */
  get size(): number {
    return this.remotes.size;
  }

  /** Cancels every timer (kvstoremesh stopping). */
  stop(): void {
    for (const e of this.remotes.values()) clearTimeout(e.timer);
  }
}
