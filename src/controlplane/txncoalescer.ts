/**
 * One transaction for many mirrors' writes: kvstoremesh runs one BatchedWriter per remote, and during churn
 * each of them had one key to write at a time, so every copied change was its own etcd request, raft proposal
 * and reply (issue 16: 16 clusters, every change copied into 15 etcds, ~1.6 of 2 cores in the kvstoremesh
 * processes). The coalescer collects what every mirror has to write during a short window and sends it as one
 * transaction of at most `maxOps` operations and `maxBytes` bytes (keys + values).
 *
 * Bounds: a write waits at most `windowMs` (0 ms) after the first write of the window was offered, and a
 * transaction leaves at most once per `intervalMs` (100 ms) after the previous one left, neither when `maxOps`
 * operations are already queued: so a write waits at most max(windowMs, intervalMs) for the pacing, and a lone
 * write after a quiet spell not at all. Only merged transactions of small writes count for the pacing: one sent
 * alone (a batch that failed alone before, retried) or one of at least maxBytes / 2 does not hold the next back,
 * so retries of refused batches, and large records, are not slowed to one transaction per intervalMs (a purge
 * queued behind them kept its 5 s deadline only so). At most `maxInFlight` (4) transactions are outstanding at
 * once, and what arrives meanwhile keeps collecting. Why the pacing: during churn (issue 16, ~94 copies/s into each
 * kvstoremesh's etcd) a 10 ms window counted from the first write sent ~4–7 operations per transaction, and
 * each transaction is an HTTP/2 stream here and a raft entry, WAL write and apply in etcd: 100 ms took half the
 * transactions, 1.1× less kvstoremesh and 1.16× less etcd CPU per copy, and the propagation p99 from ~1.1–1.4 s
 * to 0.3–0.4 s (docs/benchmarks.md, s8kvm). Order: each writer offers one batch at a time (BatchedWriter waits
 * for its outcome before offering the next), writers' keys are disjoint (each remote has its own cache prefix),
 * and a write whose key is already in the transaction being built waits for the next one, so a key's writes
 * reach etcd in the order they were offered. Failure: a transaction is atomic in etcd (all or nothing); when a
 * merged one fails, each member is retried alone once (one after the other), so a member that cannot be written (a record etcd
 * refuses, too large a request) fails alone and the others' writes still go; each member learns its own
 * outcome (its promise rejects), and BatchedWriter queues a failed batch again in front of newer writes. A batch
 * that failed alone is marked `alone` by its writer on its next tries (while it holds one of its failed writes
 * unchanged that no applied batch carried yet): it goes in a transaction of its own, so its co-members do not pay
 * one failed write per retry.
 * Size: a batch's bytes are counted once (BatchedWriter, when queued; write(), when offered) and carried along.
 * Deadline: a transaction etcd does not answer within `deadlineMs` (10 s) fails (LateWriteError, for every
 * member: a hung etcd is no refused member, so no member-by-member retry) and frees its slot, so up to maxInFlight
 * hung calls do not stall every other remote's writes. Such a call is not cancelled and may still land: its
 * members learn when it settled (LateWriteError.landing) and write again what it may have overwritten
 * (BatchedWriter). At most `maxLate` (16) given-up calls are outstanding: a call is sent only while the given-up
 * ones plus those in flight (each may turn late) are fewer than maxLate, so at the bound nothing more is sent until
 * one settled (the local etcd answers none of them: a new one would hang too); with maxLate below maxInFlight, at
 * most maxLate calls are in flight. In the member-by-member retry, the first member past the deadline fails the
 * rest, not sent, with an UnsentWriteError (no landing to wait for: nothing of theirs can land): that retry runs in
 * its transaction's slot, so it adds at most one given-up call, counted in the slot before.
 * Fences (fence.ts): a merged transaction compares every member's fences (one per remote: its epoch key), so it
 * fails whole when one remote was purged; its members are then retried alone like any merged failure, and only
 * the fenced one fails (FencedError). Two members fencing the same key at different revisions never merge.
 */
import { LateWriteError } from './latewrite.js';
import { UnsentWriteError } from './unsentwrite.js';
import type { Fence } from './fence.js';
import { MAX_TXN_BYTES, opBytes, type MirrorOps, type MirrorTarget, type TakeOps } from './mirrorwriter.js';

export interface CoalescerOptions {
  /** How long the first write of a window waits for others (ms). */
  windowMs: number;
  /** Least time between two transactions leaving (ms), unless maxOps operations are queued: the churn's batching. */
  intervalMs: number;
  /** Operations per transaction (etcd's --max-txn-ops, 128 by default). */
  maxOps: number;
  /** Bytes (keys + values) per transaction: well under etcd's --max-request-bytes (1.5 MiB by default). */
  maxBytes: number;
  /** Transactions outstanding at once. */
  maxInFlight: number;
  /** How long etcd may take to answer one transaction (ms) before it fails (LateWriteError) and frees its slot. */
  deadlineMs: number;
  /** Transactions given up on (past their deadline) and not settled yet, at most: at the bound nothing is sent. */
  maxLate: number;
}

export const DEFAULT_COALESCER: CoalescerOptions = { windowMs: 0, intervalMs: 100, maxOps: 128, maxBytes: MAX_TXN_BYTES, maxInFlight: 4, deadlineMs: 10_000, maxLate: 16 };

interface Member {
  /** A fixed batch (MirrorTarget.write, or what a writer gave that did not fit), or ops taken from a writer at send time. */
  fixed?: { ops: MirrorOps; bytes: number; alone: boolean };
  take?: TakeOps;
  /** How many operations the member would bring now (for the "full" test). */
  size: () => number;
  /** What the member's writes compare (MirrorTarget.write). */
  fences: readonly Fence[];
  at: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class TxnCoalescer implements MirrorTarget {
  private readonly queue: Member[] = [];
  private inFlight = 0;
  /** Transactions past their deadline, not settled yet (≤ maxLate). */
  private late = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the last transaction left (clock ms): the next waits until intervalMs after it. */
  private lastSent = -Infinity;
  /**
   * Transactions sent, members retried alone after a merged failure, and transactions sent alone because their
   * batch had failed alone before (for tests and the benchmark); writes that outran their deadline.
   */
  readonly stats = { txns: 0, ops: 0, isolated: 0, alone: 0, late: 0 };

  constructor(
    private readonly target: MirrorTarget,
    private readonly opts: CoalescerOptions = DEFAULT_COALESCER,
    private readonly clock: () => number = Date.now,
  ) {}

  keys(prefix: string): Promise<string[]> {
    return this.target.keys(prefix);
  }

  entries(prefix: string, page: Parameters<MirrorTarget['entries']>[1]): Promise<void> {
    return this.target.entries(prefix, page);
  }

  deletePrefix(prefix: string): Promise<void> {
    return this.target.deletePrefix(prefix);
  }

  revision(key: string): Promise<string> {
    return this.target.revision(key);
  }

  /** A fixed batch (at most maxOps operations), written in one of the coalesced transactions; `fences`: compared. */
  write(ops: MirrorOps, fences: readonly Fence[] = []): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return this.offer({ fixed: { ops, bytes: ops.reduce((n, op) => n + opBytes(op), 0), alone: false }, size: () => ops.length, fences });
  }

  /**
   * A writer's next batch, taken when the transaction leaves (take(room)); `size` says how many operations it
   * has queued; `fence`: compared. Resolves when what was taken is written (at once when nothing was taken),
   * rejects when it failed (FencedError: the fence moved).
   */
  writeFrom(take: TakeOps, size: () => number, fence?: Fence): Promise<void> {
    return this.offer({ take, size, fences: fence ? [fence] : [] });
  }

  private offer(m: Omit<Member, 'at' | 'resolve' | 'reject'>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ...m, at: this.clock(), resolve, reject });
      this.pump();
    });
  }

  /** Sends what may leave now, and arms the timer for the window of the oldest waiting write. */
  private pump(): void {
    // every call in flight may be given up on: counted against maxLate too, so that at most maxLate are late
    while (this.queue.length > 0 && this.inFlight < this.opts.maxInFlight && this.late + this.inFlight < this.opts.maxLate) {
      const due = Math.max(this.queue[0]!.at + this.opts.windowMs, this.lastSent + this.opts.intervalMs);
      if (this.clock() < due && this.queuedOps() < this.opts.maxOps) {
        this.arm(due - this.clock());
        return;
      }
      this.send();
    }
  }

  private queuedOps(): number {
    let n = 0;
    for (const m of this.queue) if ((n += m.size()) >= this.opts.maxOps) break;
    return n;
  }

  private arm(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.max(0, ms));
  }

  /** Builds one transaction from the front of the queue and sends it. */
  private send(): void {
    const ops: Array<MirrorOps[number]> = [];
    const keys = new Set<string>();
    const fences = new Map<string, string>();
    const members: Array<{ m: Member; ops: MirrorOps }> = [];
    let bytes = 0;
    let alone = false;
    while (this.queue.length > 0 && ops.length < this.opts.maxOps && !alone) {
      const m = this.queue[0]!;
      const t = m.fixed ?? m.take!(this.opts.maxOps - ops.length, this.opts.maxBytes - bytes);
      const mine = t.ops;
      if (mine.length === 0) {
        this.queue.shift();
        m.resolve();
        continue;
      }
      const fits =
        !t.alone &&
        ops.length + mine.length <= this.opts.maxOps &&
        bytes + t.bytes <= this.opts.maxBytes &&
        !mine.some(([k]) => keys.has(k)) &&
        !m.fences.some((f) => (fences.get(f.key) ?? f.revision) !== f.revision);
      if (!fits && ops.length > 0) {
        // what was taken stays at the front, as a fixed batch, for the next transaction
        if (m.take) this.queue[0] = { ...m, fixed: t, take: undefined, size: () => mine.length };
        break;
      }
      this.queue.shift();
      members.push({ m, ops: mine });
      for (const op of mine) (ops.push(op), keys.add(op[0]));
      for (const f of m.fences) fences.set(f.key, f.revision);
      bytes += t.bytes;
      alone = t.alone;
    }
    if (members.length === 0) return;
    if (alone) this.stats.alone++;
    // pacing merges small writes: a transaction sent alone (a batch that failed alone before, retried) or one that
    // is already large in bytes does not hold the next one back (review of s8kvm: paced, 15 remotes' retried
    // batches took 1.5 s, and 100 records of 60 KiB 1.3 s instead of 70 ms)
    if (!alone && bytes * 2 < this.opts.maxBytes) this.lastSent = this.clock();
    this.inFlight++;
    this.stats.txns++;
    this.stats.ops += ops.length;
    void this.commit(ops, [...fences].map(([key, revision]) => ({ key, revision })), members).finally(() => {
      this.inFlight--;
      this.pump();
    });
  }

  private async commit(ops: MirrorOps, fences: readonly Fence[], members: Array<{ m: Member; ops: MirrorOps }>): Promise<void> {
    try {
      await this.timed(ops, fences);
      for (const { m } of members) m.resolve();
      return;
    } catch (err) {
      if (members.length === 1 || err instanceof LateWriteError) return members.forEach(({ m }) => m.reject(err as Error));
    }
    // one member may be what etcd refuses: each alone, so the others' writes still go; one after the other, in
    // this transaction's slot (maxInFlight holds; maxLate too: the slot is counted in inFlight, so at most its one
    // call in flight can turn late)
    this.stats.isolated += members.length;
    for (let i = 0; i < members.length; i++) {
      const { m, ops: mine } = members[i]!;
      const err = await this.timed(mine, m.fences).then(m.resolve, (e: Error) => (m.reject(e), e));
      // a hung etcd, no refused member: the others would hang too, a deadline each in this slot
      // the rest were not sent: they fail without the late call's landing (nothing of theirs can land)
      if (err instanceof LateWriteError) return members.slice(i + 1).forEach(({ m: rest }) => rest.reject(new UnsentWriteError(err.deadlineMs)));
    }
  }

  /** target.write(ops), or a LateWriteError once deadlineMs passed without an answer (the write is counted late until it settled). */
  private timed(ops: MirrorOps, fences: readonly Fence[]): Promise<void> {
    const write = this.target.write(ops, fences.length ? fences : undefined);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.late++;
        this.stats.late++;
        const landing = write.then(
          () => undefined,
          () => undefined,
        );
        void landing.then(() => {
          this.late--;
          this.pump();
        });
        reject(new LateWriteError(this.opts.deadlineMs, landing));
      }, this.opts.deadlineMs);
      write.then(resolve, reject).finally(() => clearTimeout(timer));
    });
  }

  /** Cancels the window timer (what is queued stays queued: writers are stopped before this). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
