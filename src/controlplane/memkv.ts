/**
 * An in-memory KVStore with etcd's semantics, for unit tests that need no etcd
 * (as wireguard-go ships tun/tuntest): test/controlplane/kvstore-contract.test.ts
 * runs the same cases against it and a real etcd.
 *
 * - One global revision, bumped once per write that changes something (a put,
 *   a delete that found keys, a transaction, a lease's end); every key keeps
 *   its create and mod revision and its version, as etcd does.
 * - Leases with TTLs on an injectable clock: nothing expires by itself; a test
 *   moves its clock and calls expire(), so expiry happens where the test says.
 *   A lease's end deletes its keys in one revision.
 * - Watches replay history from a revision; a watch from a revision older
 *   than the last compaction breaks at once, as etcd cancels it. Events reach the handlers synchronously, in revision order,
 *   before the write's promise resolves (a handler that writes is queued
 *   behind the delivery in progress, never nested).
 * - A client-side outage: disconnect() makes list and watch fail and holds
 *   events back; reconnect() resumes each watch where it stopped, or breaks it
 *   (broken(), the caller relists) when compaction removed what it missed.
 */
import type { KV, KVStore, WatchHandlers } from './kvstore.js';

/** One key as etcd keeps it. Revisions are etcd's int64 revisions (small numbers here). */
export interface MemEntry {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** 1 on create, +1 on every put; a delete ends the key (a later put starts at 1). */
  version: number;
  /** The lease the key is attached to (MemKV.grant's id), if any. */
  lease?: string;
}

/** A transaction's guard on one key; a missing key has value undefined and version/create/mod 0 (etcd's). */
export type MemCompare =
  | { key: string; target: 'value'; op: '==' | '!=' | '<' | '>'; value: string }
  | { key: string; target: 'version' | 'create' | 'mod'; op: '==' | '!=' | '<' | '>'; value: number };

/** A transaction's operation: a put (optionally leased), or a delete of a key or of a prefix. */
export type MemOp = { put: string; value: string; lease?: string } | { delete: string; prefix?: boolean };

/** etcd's error texts, so a test's expectation holds against either store. */
export const COMPACTED = 'etcdserver: mvcc: required revision has been compacted';
export const FUTURE_REVISION = 'etcdserver: mvcc: required revision is a future revision';
export const LEASE_NOT_FOUND = 'etcdserver: requested lease not found';
/** How etcd3 reports a watch etcd cancelled (it leaves out the reason). */
export const WATCH_COMPACTED = `Watcher canceled: ${COMPACTED}`;

interface Event {
  type: 'put' | 'delete';
  key: string;
  value: string;
  revision: number;
  /** A put's key's create revision (0 on a delete). */
  createRevision: number;
}

interface Watch {
  prefix: string;
  /** The next revision this watch has to see. */
  next: number;
  h: WatchHandlers;
}

interface Lease {
  ttlMs: number;
  deadline: number;
  keys: Set<string>;
}

export class MemKV implements KVStore {
  private readonly data = new Map<string, MemEntry>();
  private history: Event[] = [];
  /** etcd's first revision (an empty store) is 1. */
  private rev = 1;
  private compactedAt = 0;
  private readonly leases = new Map<string, Lease>();
  private nextLease = 0x1000;
  private readonly watches = new Set<Watch>();
  private down: Error | undefined;
  private pumping = false;
  private pumpAgain = false;

  /** now: the lease clock in ms (the default, Date.now, suits tests that never call expire()). */
  constructor(private readonly now: () => number = Date.now) {}

  /** The store's current revision. */
  get revision(): number {
    return this.rev;
  }

  /** The last compaction's revision (0: none). */
  get compactRevision(): number {
    return this.compactedAt;
  }

  // ---- KVStore --------------------------------------------------------------

  /** All keys under prefix in key order, at the current revision; rejects during an outage. */
  async list(prefix: string): Promise<{ revision: string; kvs: KV[] }> {
    this.reachable();
    return { revision: String(this.rev), kvs: this.entries(prefix).map(({ key, value, createRevision }) => ({ key, value, createRevision: String(createRevision) })) };
  }

  /**
   * Follows prefix from fromRevision ("0": from the next write). When that
   * revision's history is gone the watch breaks at once (broken(), no event),
   * as etcd cancels it: the caller relists.
   */
  async watch(prefix: string, fromRevision: string, h: WatchHandlers): Promise<{ cancel(): Promise<void> }> {
    this.reachable();
    const from = Number(fromRevision);
    const w: Watch = { prefix, next: from === 0 ? this.rev + 1 : from, h };
    if (w.next < this.compactedAt) {
      queueMicrotask(() => h.broken(new Error(WATCH_COMPACTED)));
      return { cancel: async () => undefined };
    }
    this.watches.add(w);
    this.pump();
    return { cancel: async () => void this.watches.delete(w) };
  }

  // ---- reads for tests --------------------------------------------------------

  get(key: string): MemEntry | undefined {
    const e = this.data.get(key);
    return e && { ...e };
  }

  /** Entries under prefix, in key order. */
  entries(prefix = ''): MemEntry[] {
    return [...this.data.values()].filter((e) => e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((e) => ({ ...e }));
  }

  /** Open watches (a test's check that a consumer cancelled its own). */
  get watchCount(): number {
    return this.watches.size;
  }

  // ---- writes -----------------------------------------------------------------

  /** Puts value (attached to lease, or to none); resolves to the write's revision. */
  async put(key: string, value: string, opts: { lease?: string } = {}): Promise<number> {
    this.apply([{ put: key, value, ...opts }]);
    return this.rev;
  }

  /** Deletes key; resolves to how many keys went (0 or 1; 0 does not bump the revision). */
  async delete(key: string): Promise<number> {
    return this.apply([{ delete: key }]);
  }

  async deletePrefix(prefix: string): Promise<number> {
    return this.apply([{ delete: prefix, prefix: true }]);
  }

  /** etcd's Txn: if every compare holds, `then` runs, else `otherwise`; all of it at one revision. */
  async txn(compares: MemCompare[], then: MemOp[], otherwise: MemOp[] = []): Promise<{ succeeded: boolean; revision: number }> {
    const succeeded = compares.every((c) => this.holds(c));
    this.apply(succeeded ? then : otherwise);
    return { succeeded, revision: this.rev };
  }

  /** Compacts history before revision rev: a watch from an older revision breaks. */
  compact(rev: number): void {
    // plain Errors with etcd's own texts, as etcd3 throws them: callers match those texts (not a catalogue code)
    if (rev > this.rev) throw new Error(FUTURE_REVISION);
    if (rev <= this.compactedAt) throw new Error(COMPACTED);
    this.compactedAt = rev;
    this.history = this.history.filter((e) => e.revision >= rev);
  }

  // ---- leases -----------------------------------------------------------------

  /** A new lease of ttlSeconds on the clock; resolves to its id. */
  async grant(ttlSeconds: number): Promise<string> {
    const id = (this.nextLease++).toString(16);
    this.leases.set(id, { ttlMs: ttlSeconds * 1000, deadline: this.now() + ttlSeconds * 1000, keys: new Set() });
    return id;
  }

  /** Renews the lease for its full TTL from now; rejects with LEASE_NOT_FOUND once it ended. */
  async keepAlive(id: string): Promise<void> {
    const l = this.lease(id);
    l.deadline = this.now() + l.ttlMs;
  }

  /** Ends the lease: its keys are deleted in one revision. */
  async revoke(id: string): Promise<void> {
    this.lease(id);
    this.end(id);
  }

  /** Ends every lease whose TTL has run out on the clock; returns their ids. */
  expire(): string[] {
    const due = [...this.leases].filter(([, l]) => l.deadline <= this.now()).map(([id]) => id);
    for (const id of due) this.end(id);
    return due;
  }

  /** Keys attached to a lease (empty once it ended). */
  leaseKeys(id: string): string[] {
    return [...(this.leases.get(id)?.keys ?? [])].sort();
  }

  // ---- outages ------------------------------------------------------------------

  /** The client loses the store: list and watch reject with err, watches hear connected(false) and nothing else. */
  disconnect(err: Error = new Error('14 UNAVAILABLE: No connection established')): void {
    if (this.down) return;
    this.down = err;
    for (const w of this.watches) w.h.connected?.(false);
  }

  /** Back: each watch replays what it missed, or breaks (WATCH_COMPACTED) if that history is gone. */
  reconnect(): void {
    if (!this.down) return;
    this.down = undefined;
    for (const w of [...this.watches]) {
      if (w.next < this.compactedAt) {
        this.watches.delete(w);
        w.h.broken(new Error(WATCH_COMPACTED));
      } else w.h.connected?.(true);
    }
    this.pump();
  }

  // ---- internals -----------------------------------------------------------------

  private reachable(): void {
    if (this.down) throw this.down;
  }

  private lease(id: string): Lease {
    const l = this.leases.get(id);
    if (!l) throw new Error(LEASE_NOT_FOUND); // etcd's text, as etcd3 throws it (see compact)
    return l;
  }

  private end(id: string): void {
    const keys = [...this.leases.get(id)!.keys];
    this.leases.delete(id);
    this.apply(keys.map((k) => ({ delete: k })));
  }

  private holds(c: MemCompare): boolean {
    const e = this.data.get(c.key);
    const have: string | number | undefined =
      c.target === 'value' ? e?.value : c.target === 'version' ? (e?.version ?? 0) : c.target === 'create' ? (e?.createRevision ?? 0) : (e?.modRevision ?? 0);
    if (have === undefined) return false; // etcd: a value compare on a missing key fails
    switch (c.op) {
      case '==':
        return have === c.value;
      case '!=':
        return have !== c.value;
      case '<':
        return have < c.value;
      case '>':
        return have > c.value;
    }
  }

  /** Runs ops at the next revision (taken only if something changed); returns how many keys were deleted. */
  private apply(ops: MemOp[]): number {
    for (const op of ops) if ('put' in op && op.lease !== undefined) this.lease(op.lease); // refuse before changing anything
    const revision = this.rev + 1;
    const events: Event[] = [];
    let deleted = 0;
    for (const op of ops) {
      if ('put' in op) {
        const prev = this.data.get(op.put);
        if (prev?.lease !== undefined) this.leases.get(prev.lease)?.keys.delete(op.put);
        const e: MemEntry = { key: op.put, value: op.value, createRevision: prev?.createRevision ?? revision, modRevision: revision, version: (prev?.version ?? 0) + 1 };
        if (op.lease !== undefined) {
          e.lease = op.lease;
          this.leases.get(op.lease)!.keys.add(op.put);
        }
        this.data.set(op.put, e);
        events.push({ type: 'put', key: op.put, value: op.value, revision, createRevision: e.createRevision });
        continue;
      }
      const keys = op.prefix ? [...this.data.keys()].filter((k) => k.startsWith(op.delete)).sort() : this.data.has(op.delete) ? [op.delete] : [];
      for (const k of keys) {
        const lease = this.data.get(k)!.lease;
        if (lease !== undefined) this.leases.get(lease)?.keys.delete(k);
        this.data.delete(k);
        events.push({ type: 'delete', key: k, value: '', revision, createRevision: 0 });
        deleted++;
      }
    }
    if (events.length > 0) {
      this.rev = revision;
      this.history.push(...events);
      this.pump();
    }
    return deleted;
  }

  /** Brings every watch up to the current revision, in order; re-entrant calls are folded into the running one. */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        if (this.down) return;
        for (const w of [...this.watches]) {
          let i = this.history.length;
          while (i > 0 && this.history[i - 1]!.revision >= w.next) i--;
          for (; i < this.history.length && this.watches.has(w) && !this.down; i++) {
            const ev = this.history[i]!;
            w.next = ev.revision + 1;
            if (!ev.key.startsWith(w.prefix)) continue;
            if (ev.type === 'put') w.h.put({ key: ev.key, value: ev.value, createRevision: String(ev.createRevision) }, String(ev.revision));
            else w.h.delete(ev.key, String(ev.revision));
          }
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }
}
