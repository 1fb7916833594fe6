/**
 * A remote's purge (purgeRemote: its cache, sync markers and status) against a local etcd that may hang: each
 * attempt has a deadline, so a hung write holds neither the remote's purge nor the chain of starts and stops
 * behind it; an attempt past its deadline counts as failed (KVStoreMesh retries it until one holds). Such an
 * attempt is not cancelled and may still land: its deletes would then remove what a newer replication of the same
 * remote wrote meanwhile. So it is kept until it settled (pending()): the remote's next replication starts only
 * after it, as after an abandoned mirror write (KVStoreMesh's landings), and the next attempt waits for it too.
 * An attempt settles when its writes did: one of its coalesced writes given up on by the TxnCoalescer
 * (LateWriteError) counts as late as well, and settles only when that write landed (LateWriteError.landing).
 * Bound: at most one attempt in flight per remote (a later one first waits for it, within the same deadline; a
 * retry fails at once instead).
 */
import { cachePrefix, epochKey, remoteStatusKey, syncedKey } from './keys.js';
import { epochValue } from './fence.js';
import { LateWriteError } from './latewrite.js';
import type { MirrorTarget } from './mirrorwriter.js';
import { REPLICATED_TYPES } from './replication.js';
import { within } from './within.js';
import { isPermissionDenied, type UnfencedSink } from './unfenced.js';

export class Purges {
  /** The attempt in flight per remote, until it settled (either way): bounded by the remotes ever purged. */
  private readonly inFlight = new Map<string, Promise<void>>();

  /**
   * local: where the remote's state is deleted; deadlineMs: how long one attempt may take (ms), read per attempt;
   * settled(remote): called when an attempt that outran its deadline settled at last (it may have deleted keys);
   * unfenced: told when an attempt purged without the fence (the role lacks the epochs grant: unfenced.ts).
   */
  constructor(
    private readonly local: MirrorTarget,
    private readonly deadlineMs: () => number,
    private readonly settled: (remote: string) => void = () => undefined,
    /** Told when an attempt purged without the fence for want of the epochs grant (purgeRemote, unfenced.ts). */
    private readonly unfenced: UnfencedSink = () => undefined,
  ) {}

  /**
   * One purge attempt of `remote`. Rejects with the local etcd's error, or when the attempt (or the previous one,
   * still in flight) did not finish within the deadline; resolves once everything of the remote was deleted.
   * waitForPrevious false (a retry): while the previous attempt is in flight, fails at once instead of waiting for
   * it, so retries of a hung purge do not hold the chain of starts and stops a deadline each.
   */
  async run(remote: string, waitForPrevious = true): Promise<void> {
    const ms = this.deadlineMs();
    const prev = this.inFlight.get(remote);
    if (prev && !(waitForPrevious && (await within(prev.then(() => true), ms, false)))) throw new Error(`purge of ${remote}: the previous attempt is still in flight`);
    const attempt = purgeRemote(this.local, remote, this.unfenced);
    // settles once the attempt's writes did: a coalesced delete given up on (LateWriteError) may still land
    const done = attempt.then(
      () => undefined,
      (err: unknown) => (err instanceof LateWriteError ? err.landing : undefined),
    );
    this.inFlight.set(remote, done);
    const outcome = await within<unknown>(attempt.then(() => undefined, (err: unknown) => err), ms, 'late');
    if (outcome === 'late' || outcome instanceof LateWriteError) {
      void done.then(() => {
        if (this.inFlight.get(remote) === done) this.inFlight.delete(remote);
        this.settled(remote);
      });
      throw outcome === 'late' ? new Error(`purge of ${remote} outran its ${ms} ms deadline`) : outcome;
    }
    if (this.inFlight.get(remote) === done) this.inFlight.delete(remote);
    if (outcome) throw outcome;
  }

  /** The attempt of `remote` that outran its deadline and has not settled yet (resolves when it did), if one has not. */
  pending(remote: string): Promise<void> | undefined {
    return this.inFlight.get(remote);
  }
}

/**
 * Deletes a remote's cache, sync markers and status from the local etcd, in three round trips (a purge has a
 * deadline, purges.ts): the markers first (agents ignore a cache without its marker), in the transaction that puts
 * the remote's epoch (fence.ts: every copy write issued before it fails from then on, so none lands after the cache
 * deletes that follow), then the caches, then the status. When etcd refuses that transaction for the role (no epochs
 * grant: an old role), the markers are deleted alone, unfenced, and `unfenced` told (unfenced.ts): a missing grant
 * must never keep a disconnected remote admitted. Rejects with the local etcd's error otherwise (retried by the caller).
 */
export async function purgeRemote(local: MirrorTarget, remote: string, unfenced: UnfencedSink = () => undefined): Promise<void> {
  const markers = REPLICATED_TYPES.map((type) => [syncedKey(remote, type), null] as const);
  await local.write([[epochKey(remote), epochValue()], ...markers]).catch(async (err: unknown) => {
    if (!isPermissionDenied(err)) throw err;
    unfenced(remote, 'purge');
    await local.write(markers);
  });
  await allSettled(REPLICATED_TYPES.map((type) => local.deletePrefix(cachePrefix(type, remote))));
  await local.write([[remoteStatusKey(remote), null]]);
}

/**
 * Waits for every one of ps, then rejects with the first rejection (a LateWriteError first: its landing is what
 * the caller must wait for). Not Promise.all: that rejects at the first failure while the others may still be in
 * flight, and the purge would count as settled while one of its deletes could still land (review s6fix-r2 #1).
 */
async function allSettled(ps: Array<Promise<void>>): Promise<void> {
  const failed = (await Promise.allSettled(ps)).flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (failed.length) throw failed.find((e) => e instanceof LateWriteError) ?? failed[0];
}
