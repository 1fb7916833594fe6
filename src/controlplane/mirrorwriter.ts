/**
 * kvstoremesh and its local etcd: the narrow interfaces it needs (MeshLocal,
 * MirrorTarget, declared here by their consumer so that unit tests pass
 * in-memory stores), their etcd3 implementations, and the batching writer.
 */
import { EtcdLeaseInvalidError, type Etcd3 } from 'etcd3';
import { etcdCollectorStore, type CollectorStore } from '../identity/allocator.js';
import type { Logger } from '../log.js';
import { EtcdStore, type KVStore } from './kvstore.js';
import { LateWriteError } from './latewrite.js';
import { FencedError, type Fence } from './fence.js';
import { rawTxnWriter } from './etcdtxn.js';
import { UnsentWriteError } from './unsentwrite.js';
import { VALUE_NOT_UTF8 } from './etcdwatch.js';

/** Everything KVStoreMesh does to its own cluster's store. */
export interface MeshLocal {
  /** Its inputs (cluster config, pins, remotes) are listed and watched here. */
  readonly store: KVStore;
  /** Where the remotes' mirrors write. */
  readonly mirror: MirrorTarget;
  /** The cluster's identity garbage collector reads and deletes here. */
  readonly identities: CollectorStore;
  /** A lease of ttlSeconds, kept alive until released: what is put under it goes when this process does. */
  lease(ttlSeconds: number): MeshLease;
}

export interface MeshLease {
  put(key: string, value: string): Promise<void>;
  /** Optional: puts under the lease in one transaction (at most MAX_TXN_OPS puts, MAX_TXN_BYTES bytes), all or none. */
  putAll?(puts: ReadonlyArray<readonly [key: string, value: string]>): Promise<void>;
  /** Stops keeping the lease alive: its keys go when its TTL runs out (etcd3's Lease.release). */
  release(): void;
  /** `fn` runs when etcd lost the lease (keep-alives failed past its TTL, or etcd lost it): its keys are gone. */
  onLost?(fn: (err: Error) => void): void;
}

/** MeshLocal on etcd; the lease keeps itself alive (etcd3's autoKeepAlive). */
export function etcdMeshLocal(etcd: Etcd3): MeshLocal {
  const txn = rawTxnWriter(etcd);
  return {
    store: new EtcdStore(etcd),
    mirror: etcdMirrorTarget(etcd),
    identities: etcdCollectorStore(etcd),
    lease: (ttlSeconds) => {
      const lease = etcd.lease(ttlSeconds, { autoKeepAlive: true });
      return {
        put: async (key, value) => void (await lease.put(key).value(value)),
        putAll: async (puts) => {
          try {
            await txn(puts, await lease.grant());
          } catch (err) {
            // the raw Txn skips etcd3's lease wrapper, which emits 'lost' on this error: a keep-alive now makes etcd3
            // find the lease gone and emit it (review of s8kvm: else the next keep-alive, up to TTL/3 = 20 s later)
            if (err instanceof EtcdLeaseInvalidError) void lease.keepaliveOnce().catch(() => undefined);
            throw err;
          }
        },
        release: () => lease.release(),
        onLost: (fn) => void lease.on('lost', fn),
      };
    },
  };
}

/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;
/** Bytes (keys + values, UTF-8) per transaction: well under etcd's default --max-request-bytes (1.5 MiB). */
export const MAX_TXN_BYTES = 512 << 10;

/** UTF-8 bytes of one operation's key and value. */
export const opBytes = ([k, v]: readonly [string, string | null]) => Buffer.byteLength(k) + (v === null ? 0 : Buffer.byteLength(v));

/** Puts (a value) and deletes (null), in order. */
export type MirrorOps = ReadonlyArray<readonly [key: string, value: string | null]>;

/**
 * What a writer gave the transaction about to leave: its operations, their size (opBytes, summed: counted once,
 * when they were queued) and whether they must go alone (in a transaction of their own: some of them failed
 * alone on the last try and were not rewritten since, so merged they would fail their co-members' writes too).
 */
export interface Taken {
  ops: MirrorOps;
  bytes: number;
  alone: boolean;
}

/**
 * Takes up to `room` operations and `roomBytes` bytes (opBytes; at least one operation whatever its size) from a
 * writer's queue for the transaction about to leave: called when it leaves, so that it carries everything the
 * writer queued meanwhile. No operations: nothing left to write.
 */
export type TakeOps = (room: number, roomBytes: number) => Taken;

/** What a remote's mirror does to the local store. */
export interface MirrorTarget {
  /** The keys under prefix (values are not fetched). */
  keys(prefix: string): Promise<string[]>;
  /**
   * The keys under prefix with their values (null: not text), handed over a page at a time: what a remote's cache
   * holds when its replication starts (cachedcopies.ts). Resolves once every page was handed over.
   */
  entries(prefix: string, page: (kvs: ReadonlyArray<{ key: string; value: string | null }>) => void): Promise<void>;
  /**
   * Puts (a value) and deletes (null) in one transaction of at most MAX_TXN_OPS operations; with `fences`, applied
   * only while each holds (fence.ts), else rejects with FencedError (nothing applied).
   */
  write(ops: MirrorOps, fences?: readonly Fence[]): Promise<void>;
  /**
   * Optional (TxnCoalescer): the writer's next batch, taken by take(room) when the shared transaction leaves;
   * `size` is how many operations the writer has queued; `fence`: the writer's (write()). Resolves once what was
   * taken is written.
   */
  writeFrom?(take: TakeOps, size: () => number, fence?: Fence): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  /** The key's mod revision (etcd's int64, decimal), "0" when absent: a replication's fence (fence.ts). */
  revision(key: string): Promise<string>;
}

/** MirrorTarget on etcd: every write is one raw Txn (etcdtxn.ts). */
export function etcdMirrorTarget(etcd: Etcd3): MirrorTarget {
  const txn = rawTxnWriter(etcd);
  const store = new EtcdStore(etcd);
  return {
    keys: async (prefix) => (await etcd.getAll().prefix(prefix).keys()).map(String),
    // in pages of LIST_PAGE keys at one revision (EtcdStore.listPages): a cache of 256 MiB never in one response;
    // a value that is not text is handed as null; a key that is not text (never written by a mirror) is left out
    entries: async (prefix, page) => void (await store.listPages(prefix, page, (key, reason) => reason === VALUE_NOT_UTF8 && page([{ key, value: null }]))),
    write: async (ops, fences) => {
      if (ops.length > 0) await txn(ops, undefined, fences);
    },
    deletePrefix: async (prefix) => void (await etcd.delete().prefix(prefix).exec()),
    revision: async (key) => (await etcd.get(key).exec()).kvs[0]?.mod_revision ?? '0',
  };
}

/** One queued write of a BatchedWriter (null: delete). */
interface Pending {
  v: string | null;
  /** When it was first queued (ms since the epoch). */
  at: number;
  /** opBytes of the key and this value: counted once, when queued. */
  bytes: number;
  /**
   * A put: the key is deleted first, in a transaction of its own that leaves before the put's (etcd refuses one
   * key twice in one transaction), so the key gets a new create revision. Taken (the delete), the put stays
   * queued, at its place, without it. A taken delete: the one of such a put (put back in front on a failure).
   */
  reborn?: boolean;
}

/**
 * Writes a BatchedWriter adds to a transaction that empties its queue (the mirror's progress: its sync markers'
 * watermarks, replication.ts): ops() is asked when such a transaction leaves, once nothing of the writer is in
 * flight or uncertain, so that everything handed to the writer before then is written by the time they are
 * (and they go in the same transaction, all or none); written(ops) is told once that transaction applied.
 */
export interface WriterProgress {
  ops(): MirrorOps;
  written(ops: MirrorOps): void;
}

/**
 * Local writes of one remote's mirror. Writes to the same key coalesce (only
 * the last value matters for a mirror; but a delete then a put, a new
 * incarnation, stay two transactions: put's `reborn`) and go to etcd in transactions of up to
 * MAX_TXN_OPS operations: one fsync per batch instead of one per key, which is what
 * lets a cluster take in 15 remotes x 11,000 records in seconds.
 */
export class BatchedWriter {
  /** Queued writes by key (null: delete): insertion order is age order. */
  private pending = new Map<string, Pending>();
  /**
   * The operations of the last batch that failed alone (key → value), each until a batch that carried its key
   * applied: a batch holding one of them unchanged goes alone (TxnCoalescer), so a write etcd refuses does not fail
   * its co-members' writes on every retry. Not cleared by a retry that carried only part of them (a smaller
   * room): the write etcd refused may be in the part still queued. At most one batch (≤ MAX_TXN_OPS operations).
   */
  private failedAlone: Map<string, string | null> | undefined;
  /** When the oldest write of the batch in flight was queued. */
  private inFlightSince: number | undefined;
  private running: Promise<void> | null = null;
  private waiters: Array<() => void> = [];
  /** Set by abandon(): nothing is queued, written or retried from then on. */
  private abandoned = false;
  /**
   * Batches given up on past their deadline (LateWriteError) that may still land: their landings, and for each of
   * their keys the number of such batches carrying it and the last value sent for it since (what to write again
   * once they settled). Bounded by TxnCoalescer's maxLate batches of at most MAX_TXN_OPS keys.
   */
  private readonly landings = new Set<Promise<void>>();
  private readonly uncertain = new Map<string, { n: number; v: string | null }>();
  /**
   * What every write of this writer compares (fence.ts), once its replication read it; `fenced` is told when a
   * write failed it: the remote was purged since, so the writer stops as abandon() does (its state is gone).
   */
  private fence: { fence: Fence; fenced: () => void } | undefined;

  /** retryMs: the pause before a failed batch is written again. */
  constructor(
    private readonly target: MirrorTarget,
    private readonly log: Logger,
    private readonly remote: string,
    private readonly clock: () => number = Date.now,
    private readonly retryMs = 500,
    private readonly progress?: WriterProgress,
  ) {}

  /** From now on every write compares `fence`; `fenced` runs once when one failed it (the writer has stopped). */
  fenceWith(fence: Fence, fenced: () => void): void {
    this.fence = { fence, fenced };
  }

  /**
   * `reborn`: the value is of a new incarnation of its source key (deleted and created again): the local key is
   * deleted, then put, in two transactions, so that its readers see a new create revision too, not an update.
   */
  put(key: string, value: string, reborn = false): void {
    this.queue(key, value, reborn);
  }

  delete(key: string): void {
    this.queue(key, null, false);
  }

  /**
   * A rewrite of a queued key keeps its place and age: the mirror has been behind on it since the first. A put
   * over a queued delete, or over a queued reborn put, is reborn: the delete must not be lost in the coalescing.
   */
  private queue(key: string, v: string | null, reborn: boolean): void {
    if (this.abandoned) return;
    const prev = this.pending.get(key);
    const again = v !== null && (reborn || prev?.v === null || prev?.reborn === true);
    this.pending.set(key, { v, at: prev?.at ?? this.clock(), bytes: opBytes([key, v]), ...(again ? { reborn: true } : {}) });
    this.kick();
  }

  /** When the oldest change not yet written locally was queued (ms since the epoch), or undefined when all are written. */
  oldestPending(): number | undefined {
    const first = this.pending.values().next();
    const queued = first.done ? undefined : first.value.at;
    if (this.inFlightSince === undefined) return queued;
    return queued === undefined ? this.inFlightSince : Math.min(queued, this.inFlightSince);
  }

  /** Resolves once everything queued so far is written (and no batch given up on may still land over it). */
  flushed(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  private idle(): boolean {
    return !this.running && this.pending.size === 0 && this.landings.size === 0;
  }

  /**
   * A batch past its deadline may land after what was written since, over it: once it settled, each of its keys
   * not queued meanwhile (a queued write goes after it) is written again with the last value sent for it.
   */
  private landLate(batch: Array<[string, Pending]>, landing: Promise<void>): void {
    this.landings.add(landing);
    for (const [k, e] of batch) this.uncertain.set(k, { n: (this.uncertain.get(k)?.n ?? 0) + 1, v: e.v });
    void landing.then(() => {
      this.landings.delete(landing);
      for (const [k] of batch) {
        const u = this.uncertain.get(k)!;
        if (--u.n === 0) this.uncertain.delete(k);
        if (!this.pending.has(k)) this.queue(k, u.v, false);
      }
      if (this.idle()) for (const w of this.waiters.splice(0)) w();
    });
  }

  /**
   * Drops everything queued and stops retrying (the remote's state is about to be purged: none of it is needed),
   * so that a write etcd refuses for good (NOSPACE) or that hangs holds no stop: flushed() resolves at once.
   * Returns the batch in flight and those given up on past their deadline, if any: they may still land, after a
   * purge; the promise resolves once all settled (either way). Later writes are ignored.
   */
  abandon(): Promise<void> | undefined {
    this.abandoned = true;
    this.pending.clear();
    this.failedAlone = undefined;
    for (const w of this.waiters.splice(0)) w();
    // the batch in flight may be given up on (LateWriteError) and still land: its landing joins `landings` only
    // when the loop catches that, after this returned, so the set is read once the loop ended
    const running = this.inFlightSince !== undefined ? this.running : null;
    if (running) return running.then(() => Promise.all([...this.landings])).then(() => undefined);
    return this.landings.size ? Promise.all([...this.landings]).then(() => undefined) : undefined;
  }

  /**
   * The progress writes (WriterProgress) to add to a batch of `ops` that empties the queue, when nothing taken
   * earlier may still land and the batch with them fits `room` operations and `roomBytes` bytes; else none (they
   * wait for the next such batch: a watermark written late is only older, never ahead of what is written). One of
   * a key the batch writes (a sync marker queued by its first list) takes the place of the batch's write of it.
   */
  private progressOps(ops: MirrorOps, room: number, roomBytes: number): MirrorOps {
    if (!this.progress || this.pending.size > 0 || this.landings.size > 0 || this.uncertain.size > 0 || ops.length === 0) return [];
    const extra = this.progress.ops();
    const mine = new Set(extra.map(([k]) => k));
    const kept = ops.filter(([k]) => !mine.has(k));
    const bytes = [...kept, ...extra].reduce((n, op) => n + opBytes(op), 0);
    return kept.length + extra.length <= room && bytes <= roomBytes ? extra : [];
  }

  private kick(): void {
    if (this.running) return;
    this.running = (async () => {
      while (this.pending.size > 0 && !this.abandoned) {
        let batch: Array<[string, Pending]> = [];
        let extra: MirrorOps = [];
        // taken when the transaction leaves: a coalescing target sends it with other writers' batches
        // bounded in bytes as well: a remote's large records (≤ 64 KiB each) must not make a transaction etcd
        // refuses every time, which would stall this mirror (and its stop) for good
        const take = (room: number, roomBytes: number): Taken => {
          batch = [];
          let bytes = 0;
          let reborn = false;
          for (const e of this.pending) {
            if (batch.length >= Math.min(room, MAX_TXN_OPS)) break;
            // a reborn put: its delete goes now, the put (still queued) in a later transaction; further reborn
            // keys' deletes may join it, the first other write ends the batch (it stays behind the puts queued
            // before it). Review of s7fix2: one transaction per reborn key made a relist of a rebuilt remote
            // (every key reborn) 3,001 transactions instead of 24 for 3,000 keys.
            if (reborn && !e[1].reborn) break;
            const op: [string, Pending] = e[1].reborn ? [e[0], { v: null, at: e[1].at, bytes: opBytes([e[0], null]), reborn: true }] : e;
            if (batch.length > 0 && bytes + op[1].bytes > Math.min(roomBytes, MAX_TXN_BYTES)) break;
            batch.push(op);
            bytes += op[1].bytes;
            if (op[1].reborn) reborn = true;
          }
          for (const [k, e] of batch) {
            if (e.reborn) this.pending.get(k)!.reborn = false;
            else this.pending.delete(k);
            const u = this.uncertain.get(k);
            if (u) u.v = e.v;
          }
          if (batch.length) this.inFlightSince = batch[0]![1].at;
          const failed = this.failedAlone;
          // a failed write rewritten since (superseded) may hold now: only an unchanged one keeps the batch alone
          const alone = failed !== undefined && batch.some(([k, e]) => failed.has(k) && failed.get(k) === e.v);
          const ops = batch.map(([k, e]) => [k, e.v] as const);
          extra = this.progressOps(ops, Math.min(room, MAX_TXN_OPS), Math.min(roomBytes, MAX_TXN_BYTES));
          if (!extra.length) return { ops, bytes, alone };
          const mine = new Set(extra.map(([k]) => k));
          const all = [...ops.filter(([k]) => !mine.has(k)), ...extra];
          return { ops: all, bytes: all.reduce((n, op) => n + opBytes(op), 0), alone };
        };
        try {
          const fence = this.fence?.fence;
          if (this.target.writeFrom) await this.target.writeFrom(take, () => this.pending.size, fence);
          else await this.target.write(take(MAX_TXN_OPS, MAX_TXN_BYTES).ops, fence && [fence]);
          if (extra.length) this.progress!.written(extra);
          const failed = this.failedAlone;
          if (failed) {
            for (const [k] of batch) failed.delete(k);
            if (failed.size === 0) this.failedAlone = undefined;
          }
        } catch (err) {
          if (err instanceof LateWriteError) this.landLate(batch, err.landing);
          if (err instanceof FencedError && !this.abandoned) {
            this.log.warn({ remote: this.remote, err: err.message }, 'local write fenced: the remote was purged since this mirror began');
            void this.abandon();
            this.fence?.fenced();
          }
          if (this.abandoned) break;
          // a coalescing target rejects a batch only once it failed alone (a merged failure is retried member by
          // member), or past its deadline, or unsent behind one past it: a hung etcd, no refused write (the batch
          // need not go alone)
          if (!(err instanceof LateWriteError || err instanceof UnsentWriteError)) this.failedAlone = new Map(batch.map(([k, e]) => [k, e.v]));
          this.log.error({ remote: this.remote, err: (err as Error).message, keys: batch.length }, 'local write failed, retrying');
          // back in front of newer writes, with their first-queued time: the retry is older than what came since.
          // A key rewritten meanwhile keeps its newer value but this first time (Map: first position, last value).
          this.pending = new Map([...batch, ...this.pending]);
          for (const [k, e] of batch) {
            const p = this.pending.get(k)!;
            p.at = e.at;
            // its delete, not written (a reborn one, or a plain one re-created meanwhile): the put waits for it again
            if ((e.reborn || e.v === null) && p.v !== null) p.reborn = true;
          }
          await new Promise((r) => setTimeout(r, this.retryMs));
        } finally {
          this.inFlightSince = undefined;
        }
      }
      this.running = null;
      if (this.idle() || this.abandoned) for (const w of this.waiters.splice(0)) w();
    })();
  }
}
