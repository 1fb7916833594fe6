/**
 * kvstoremesh's writes into the local etcd: the narrow interface it needs
 * (MirrorTarget, declared here by its consumer so that unit tests pass an
 * in-memory store), its etcd3 implementation, and the batching writer.
 */
import type { Etcd3 } from 'etcd3';
import type { Logger } from '../log.js';

/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;

/** What a remote's mirror does to the local store. */
export interface MirrorTarget {
  /** The keys under prefix (values are not fetched). */
  keys(prefix: string): Promise<string[]>;
  /** Puts (a value) and deletes (null) in one transaction of at most MAX_TXN_OPS operations. */
  write(ops: ReadonlyArray<readonly [key: string, value: string | null]>): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
}

/** MirrorTarget on etcd: a lone operation is a plain put or delete, more go in one transaction. */
export function etcdMirrorTarget(etcd: Etcd3): MirrorTarget {
  const op = ([k, v]: readonly [string, string | null]) => (v === null ? etcd.delete().key(k) : etcd.put(k).value(v));
  return {
    keys: async (prefix) => (await etcd.getAll().prefix(prefix).keys()).map(String),
    write: async (ops) => {
      if (ops.length === 1) await op(ops[0]!).exec();
      // etcd3 builds a batch only behind a compare: one that always holds
      else if (ops.length > 1) await etcd.if(ops[0]![0], 'Version', '>', -1).then(...ops.map(op)).commit();
    },
    deletePrefix: async (prefix) => void (await etcd.delete().prefix(prefix).exec()),
  };
}

/**
 * Local writes of one remote's mirror. Writes to the same key coalesce (only
 * the last value matters for a mirror) and go to etcd in transactions of up to
 * MAX_TXN_OPS operations: one fsync per batch instead of one per key, which is what
 * lets a cluster take in 15 remotes x 11,000 records in seconds.
 */
export class BatchedWriter {
  private pending = new Map<string, string | null>(); // null: delete
  private running: Promise<void> | null = null;
  private waiters: Array<() => void> = [];

  constructor(private readonly target: MirrorTarget, private readonly log: Logger, private readonly remote: string) {}

  put(key: string, value: string): void {
    this.pending.set(key, value);
    this.kick();
  }

  delete(key: string): void {
    this.pending.set(key, null);
    this.kick();
  }

  /** Resolves once everything queued so far is written. */
  flushed(): Promise<void> {
    if (!this.running && this.pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  private kick(): void {
    if (this.running) return;
    this.running = (async () => {
      while (this.pending.size > 0) {
        const batch = [...this.pending.entries()].slice(0, MAX_TXN_OPS);
        for (const [k] of batch) this.pending.delete(k);
        try {
          await this.target.write(batch);
        } catch (err) {
          this.log.error({ remote: this.remote, err: (err as Error).message, keys: batch.length }, 'local write failed, retrying');
          for (const [k, v] of batch) if (!this.pending.has(k)) this.pending.set(k, v);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      this.running = null;
      for (const w of this.waiters.splice(0)) w();
    })();
  }
}
