/**
 * What a remote's cache holds when its replication starts: each cached key with a digest of its value. A new
 * RemoteReplication's ListWatcher has seen no create revision of the remote's keys, so a key the remote deleted
 * and created again while kvstoremesh was down (or the replication being rebuilt) would be copied over the
 * cached key in place, and an agent that refuses the new value would keep the old incarnation's. The first
 * list compares each remote value with the cached copy's digest instead: one that differs is written as a new
 * incarnation (replication.ts), one that does not is an ordinary put (no blip for what did not change).
 */
import { valueDigest } from './kvstore.js';
import type { MirrorTarget } from './mirrorwriter.js';

/** The digest of a cached value that is not text (the store refused it): it matches no remote value. */
export const NOT_TEXT = -1;

/**
 * Cached key → valueDigest of its value, read a page at a time (MirrorTarget.entries): at most one page of values
 * in memory, then a key and a number per cached key (the key set the start held before, plus ~25 B each; 165k
 * keys at 16 clusters x 1000 nodes x 10 endpoints). Errors: the store's (the start fails and is retried).
 */
export async function cachedCopies(local: Pick<MirrorTarget, 'entries'>, prefix: string): Promise<Map<string, number>> {
  const held = new Map<string, number>();
  await local.entries(prefix, (page) => {
    for (const { key, value } of page) held.set(key, value === null ? NOT_TEXT : valueDigest(value));
  });
  return held;
}
