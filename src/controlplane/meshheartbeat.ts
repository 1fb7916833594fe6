/**
 * kvstoremesh's lease and heartbeat (KVStoreMesh): the lease the heartbeat and the remotes' statuses live by,
 * taken again when lost, and the heartbeat put under it at start and about every heartbeat interval.
 *
 * Jitter: the rewrite comes every heartbeatMs × (1 ± HEARTBEAT_JITTER), drawn anew each time (5 min: 270–330 s):
 * kvstoremesh processes started together (a mesh's rollout) wrote their rewrites in one burst every 5 min
 * (docs/benchmarks.md, "the heartbeat rewrite": 240 writes mesh-wide in one 10 s window at K = 16); drawn per
 * interval, the bursts spread over ±30 s after the first rewrite and further on each one after.
 * Lease loss: taken again after a pause (retryMs: 200 ms doubling to 5 s, back to the first once a heartbeat was
 * written under a lease): a local etcd that is down fails every grant at once, and without the pause grant, loss
 * and grant again would spin a core and log without end. One warning per loss.
 */
import type { Logger } from '../log.js';
import { doublingDelay } from './backoff.js';
import type { MeshLease, MeshLocal } from './mirrorwriter.js';

/** The rewrite interval's spread, a fraction of heartbeatMs either way. */
export const HEARTBEAT_JITTER = 0.1;

/** heartbeatMs × (1 ± HEARTBEAT_JITTER), from `random` in [0, 1). */
export const jittered = (ms: number, random = Math.random): number => Math.round(ms * (1 + HEARTBEAT_JITTER * (2 * random() - 1)));

export class MeshHeartbeat {
  /** The current lease (undefined before start). */
  lease: MeshLease | undefined;
  private timer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  /** Losses since a heartbeat was last written (the backoff's step). */
  private losses = 0;
  private seq = 0;
  private stopped = false;

  /**
   * key: the heartbeat's key; opts: the lease's TTL (s), the pause after a loss (ms), the rewrite interval (ms);
   * taken(): a new lease was taken (what lived by the old one went with it); lost(): a lease was lost (counted).
   */
  constructor(
    private readonly local: MeshLocal,
    private readonly key: string,
    private readonly log: Logger,
    private readonly opts: { ttlS: number; retryMs: { first: number; max: number }; everyMs: number },
    private readonly hooks: { taken(): void; lost(): void },
  ) {}

  start(): void {
    this.take();
    this.arm();
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      void this.put();
      if (!this.stopped) this.arm();
    }, jittered(this.opts.everyMs));
    this.timer.unref();
  }

  /** Takes a lease (again, after etcd lost the last one with its keys) and writes the heartbeat under it. */
  private take(): void {
    const lease = (this.lease = this.local.lease(this.opts.ttlS));
    this.hooks.taken();
    lease.onLost?.((err) => {
      if (this.lease !== lease || this.stopped || this.leaseTimer) return;
      this.hooks.lost();
      const delay = doublingDelay(this.losses++, this.opts.retryMs);
      this.log.warn({ err: err.message, retryMs: delay }, 'kvstoremesh lease lost; taking a new one');
      this.leaseTimer = setTimeout(() => {
        this.leaseTimer = undefined;
        if (!this.stopped) this.take();
      }, delay);
      this.leaseTimer.unref();
    });
    void this.put();
  }

  /** Remote agents see this through their own kvstoremesh: present while we live (leased), its age on arrival a lag sample. */
  private async put(): Promise<void> {
    const lease = this.lease;
    const ok = await lease?.put(this.key, JSON.stringify({ at: Date.now(), seq: ++this.seq })).then(() => true, () => false);
    if (ok && this.lease === lease) this.losses = 0; // the lease holds: the next loss waits the first pause again
  }

  /** Cancels the timers: no heartbeat is written, nor a lost lease taken again, from now on (the lease is kept: release()). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.leaseTimer);
  }

  /** Stops keeping the lease alive: its keys (the heartbeat, the statuses) go when its TTL runs out. */
  release(): void {
    this.lease?.release();
  }
}
