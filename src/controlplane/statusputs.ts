/**
 * The remotes' status puts of one pass as few transactions (issue 16: during churn every remote's status changes
 * on every pass, its `behindSince`, so each kvstoremesh made one grpc Put per remote every status interval, 15
 * every 2 s at 16 clusters: ~30 % of its unary calls during churn, and each a raft entry in its etcd). Now one
 * Txn per pass: at most MAX_TXN_OPS puts and MAX_TXN_BYTES bytes (keys + values) per transaction, more
 * transactions past that (beyond 128 remotes, or very large statuses).
 */
import { remoteStatusKey } from './keys.js';
import { MAX_TXN_BYTES, MAX_TXN_OPS, opBytes, type MeshLease } from './mirrorwriter.js';
import { within } from './within.js';

/** What a pass reads and updates of KVStoreMesh's state. */
export interface StatusState<R> {
  /** The remotes replicated now, by name (a remote whose drop began is no longer here). */
  remotes: ReadonlyMap<string, R>;
  /** The status last written per remote (JSON): an unchanged one is not written again. */
  written: Map<string, string>;
  /** Puts in flight per remote, until they settled: a remote's drop waits for its own; not sent again meanwhile. */
  inFlight: Map<string, Promise<void>>;
  /** How long a transaction may take (ms) before it counts as failed (it may still land: inFlight until then). */
  deadlineMs: number;
  /** Whether `lease` is still the process's lease. */
  current(lease: MeshLease): boolean;
  /** A transaction failed or outran deadlineMs (counted: KVStoreMesh.failures.statusPut). */
  failed(): void;
}

/**
 * Writes under `lease` each remote's status that changed since it was last written (nothing at rest), the
 * changed ones in one transaction (a few past etcd's bounds, one after the other). A failed transaction is
 * written again on the next pass (one past its deadline, once it settled).
 */
export async function publishStatuses<R extends { status(): unknown }>(lease: MeshLease, s: StatusState<R>): Promise<void> {
  const due = [];
  for (const [name, r] of s.remotes) {
    const v = JSON.stringify(r.status());
    if (s.written.get(name) !== v && !s.inFlight.has(name)) due.push({ name, r, key: remoteStatusKey(name), v });
  }
  for (const all of statusBatches(due)) {
    // a remote whose drop began meanwhile is never written again (its purge deletes the key)
    const batch = all.filter(({ name, r }) => s.remotes.get(name) === r);
    if (!s.current(lease)) return;
    if (batch.length === 0) continue;
    const put = putUnder(lease, batch).then(() => true, () => false);
    const settled: Promise<void> = put.then(() => batch.forEach(({ name }) => s.inFlight.get(name) === settled && s.inFlight.delete(name)));
    for (const { name } of batch) s.inFlight.set(name, settled);
    const ok = await within(put, s.deadlineMs, false);
    if (!ok) s.failed();
    for (const { name, r, v } of batch) if (ok && s.remotes.get(name) === r && s.current(lease)) s.written.set(name, v);
  }
}

/** One status to write: the remote, its status key and value (the rest is the caller's). */
export interface StatusPut {
  key: string;
  v: string;
}

/** `puts` in order, cut into transactions of at most MAX_TXN_OPS puts and MAX_TXN_BYTES bytes (at least one put each). */
export function statusBatches<T extends StatusPut>(puts: readonly T[]): T[][] {
  const out: T[][] = [];
  let bytes = 0;
  for (const p of puts) {
    const b = opBytes([p.key, p.v]);
    const last = out[out.length - 1];
    if (last && last.length < MAX_TXN_OPS && bytes + b <= MAX_TXN_BYTES) (last.push(p), (bytes += b));
    else (out.push([p]), (bytes = b));
  }
  return out;
}

/**
 * The batch under the lease: one transaction (MeshLease.putAll), or, on a lease without it, one put each at once.
 * Resolves when all were written; rejects when any failed (a transaction: none was).
 */
export function putUnder(lease: MeshLease, batch: readonly StatusPut[]): Promise<void> {
  if (lease.putAll) return lease.putAll(batch.map(({ key, v }) => [key, v] as const));
  return Promise.all(batch.map(({ key, v }) => lease.put(key, v))).then(() => undefined);
}
