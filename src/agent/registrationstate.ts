/**
 * Where this node's registration in etcd stands (GET /v1/status `registration`, the
 * wiremesh_registration_* metrics), and the retry that keeps it going: after a lost
 * lease or a failed write, registration.ts tries again after a doubling pause
 * (backoff.ts) until the node record and every local endpoint's are written.
 */
import { doublingDelay } from '../controlplane/backoff.js';

/** GET /v1/status `registration`. */
export interface RegistrationStatus {
  /**
   * registered: the node record, every local endpoint's and the relay offer are written under a live lease, and
   * the records of addresses given up (an endpoint removed or moved) deleted;
   * pending: being written (the lease was lost, or a write is in flight); failed: the last attempt failed, retried.
   */
  state: 'registered' | 'pending' | 'failed';
  /** Why not registered (absent when registered): the lease loss or the failed write's error, with its key. */
  reason?: string;
  /** Local endpoints whose records the current lease does not hold yet (retried). */
  pendingEndpoints: number;
  /** Failed attempts since start: a node record write, an endpoint's identity or record write, a relay offer write, a record delete (counted each). */
  failures: number;
}

/** The retry pause (ms): the first after `first`, doubled per failure in a row, at most `max`. */
export interface RetryPause {
  first: number;
  max: number;
}

/** The default: 1 s after a loss or a first failure (as etcd's lease TTL is seconds), at most 30 s. */
export const REGISTRATION_RETRY: RetryPause = { first: 1000, max: 30_000 };

/** Runs `attempt` later, one run pending at a time, the pause doubling while attempts keep failing. */
export class Retrier {
  private timer: NodeJS.Timeout | undefined;
  private failuresInRow = 0;
  private stopped = false;

  constructor(
    private readonly attempt: () => Promise<void>,
    private readonly pause: RetryPause,
  ) {}

  /** A run `delayMs` from now (default: the pause for the failures in a row), unless one is pending or stopped. */
  schedule(delayMs = doublingDelay(this.failuresInRow, this.pause)): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.attempt();
    }, delayMs);
    this.timer.unref();
  }

  /** An attempt failed: the next run after a longer pause (failures while a run is pending do not lengthen it). */
  failed(): void {
    if (this.timer) return;
    this.schedule(doublingDelay(this.failuresInRow++, this.pause));
  }

  succeeded(): void {
    this.failuresInRow = 0;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
