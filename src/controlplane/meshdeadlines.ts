/** KVStoreMesh's deadlines and its lease's TTL (kvstoremesh.ts). */
/**
 * How long a status put may take (ms) before it counts as failed: a hung local etcd must hold neither the other
 * remotes' statuses nor, through a drop waiting for the remote's put, the starts and stops of remotes. Also how
 * long a stop without purge waits for the remote's mirror writes (RemoteReplication.stop) before abandoning them.
 */
export const STATUS_PUT_DEADLINE_MS = 5000;
/**
 * How long a replication start's read of the local cache (its keys and values, replication.ts) may take (ms) before
 * the start counts as failed (retried, waiting for the same read): at a remote's budget, 250k records of ~1 KiB,
 * the read takes ~5.5 s on an idle etcd (review of s8reborn), so the status put's 5 s would fail every such start.
 */
export const START_READ_DEADLINE_MS = 60_000;

/**
 * TTL of this process's lease (s; etcd3 keeps it alive every TTL/3): the heartbeat and the remotes' statuses live
 * by it, so it bounds how long they outlive a kvstoremesh that died (≤ 60 s; a stop releases nothing either). Each
 * keep-alive wakes an idle etcd about 50 times (docs/benchmarks.md, 2026-12-01: one lease kept alive every 5 s
 * added ~10 wakes/s to an etcd's ~60): at 15 s it was a sixth of a one-member etcd's idle wakes. Cilium keeps its
 * kvstore sessions on 15 min leases.
 */
export const LEASE_TTL_S = 60;
