/**
 * Running without the purge fence (fence.ts) when kvstoremesh's etcd role lacks the `mesh/v1/epochs/` grant: a role
 * made before the fence (2026-12-02) and `clustermesh enable` not run again since the upgrade. etcd then refuses every
 * read of an epoch key and every transaction that compares or puts one (permission denied), the whole transaction.
 * A missing grant must never keep a disconnected remote admitted (it may be disconnected for being compromised), nor
 * freeze every remote: a purge whose epoch transaction is refused so deletes the sync markers without the epoch, then
 * the cache, as before the fence; a replication whose read of the epoch is refused so starts without a fence, as
 * before the fence (a copy write given up on may then land after a purge: the window docs/security.md describes).
 * Both loud: logged at error with the remote, counted (failures_total{what="unfenced"}), and every unfenced
 * replication's status says so (lastError, when it has no other error). The next start after the grant is back
 * (`enable` again) is fenced; a replication running unfenced stays so until it restarts.
 */
import type { Logger } from '../log.js';
import { epochsPrefix } from './keys.js';
import type { MirrorTarget } from './mirrorwriter.js';

/** What the log and the status say while the grant is missing. */
export const UNFENCED_HINT = `kvstoremesh's etcd role lacks the ${epochsPrefix()} grant: the purge fence is off (replications and purges run unfenced, as before 2026-12-02); run \`wiremesh clustermesh enable\` again`;

/** Whether etcd refused the call for the caller's role (gRPC PERMISSION_DENIED, as etcd3 or the raw Txn reports it). */
export function isPermissionDenied(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return err.name === 'EtcdPermissionDeniedError' || /permission denied|PERMISSION_DENIED/.test(err.message);
}

/** Told each time a purge or a replication start of `remote` ran without the fence for want of the grant. */
export type UnfencedSink = (remote: string, what: 'purge' | 'replication') => void;

/**
 * kvstoremesh's check at start: one read under the epochs prefix. Resolves true (granted), false (permission denied:
 * logged at error with UNFENCED_HINT), or undefined (the local etcd failed otherwise: each start reads its epoch anyway).
 */
export async function checkFenceGrant(local: MirrorTarget, log: Logger): Promise<boolean | undefined> {
  try {
    await local.revision(epochsPrefix());
    return true;
  } catch (err) {
    if (!isPermissionDenied(err)) return undefined;
    log.error({ grant: epochsPrefix(), err: (err as Error).message }, UNFENCED_HINT);
    return false;
  }
}
