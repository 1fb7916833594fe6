/**
 * The etcd fence between a remote's copy and its purge (review of s11: the purge relied on order and timing).
 * Each remote has an epoch key in the local etcd (keys.ts: epochKey). A replication reads the key's mod revision
 * when it starts (before it reads the cache) and every one of its copy transactions compares that revision
 * (etcd Txn compare MOD ==); a purge puts the key in the same transaction that deletes the remote's sync markers,
 * before it deletes the cache, so the key's mod revision moves past any a replication read. A copy write issued
 * before the purge then fails its compare and changes nothing, whatever order etcd applies it in (one given up
 * on at its deadline, held in a stopped etcd's socket buffer, and applied after the purge included); one
 * applied before the purge's deletes is deleted by them. A write fenced so rejects with FencedError: its writer
 * stops (what it had was purged) and a replication still current starts again, reading the epoch anew: at its
 * next copy write, not when the purge lands (the remote's heartbeat copy at the latest, ≤ ~5.5 min while the remote
 * is reachable; meanwhile the purge left no marker, so agents admit none of the remote). A role without the
 * epochs grant runs without this fence (unfenced.ts).
 * The key is never deleted by kvstoremesh (its mod revision only grows; absent reads as revision 0) and kvstoremesh
 * is the only principal that may write it (rbac.ts); a restart reads it, never resets it.
 */

/** A copy write's fence: the remote's epoch key and the mod revision it had when the replication began ("0": absent). */
export interface Fence {
  readonly key: string;
  /** etcd's int64 mod revision, as a decimal string. */
  readonly revision: string;
}

/** A write refused by etcd because a fence it compared moved (its remote was purged since the write's replication began). */
export class FencedError extends Error {
  constructor(readonly fences: readonly Fence[]) {
    super(`local write fenced: ${fences.map((f) => f.key).join(', ')} moved past the revision the write was issued under (the remote was purged since)`);
    this.name = 'FencedError';
  }
}

/** The epoch value a purge puts: when it purged (ISO time), for operators; only the key's mod revision is compared. */
export const epochValue = (now = Date.now()): string => JSON.stringify({ purgedAt: new Date(now).toISOString() });
