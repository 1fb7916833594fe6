/** The value digest ListWatcher (kvstore.ts) and the mirror's start (cachedcopies.ts) compare values by. */
import { createHmac, randomBytes } from 'node:crypto';

/**
 * A 48-bit digest of a value, for ListWatcher's "has this key's value changed"
 * test: HMAC-SHA-256 under a key drawn once per process, so nobody who writes
 * a record can aim for another value's digest (a collision would make an agent
 * keep a stale value: several writers share some prefixes, e.g. a cluster's
 * agents its identities). Two values agree by chance with probability 2^-48.
 */
const DIGEST_KEY = randomBytes(32);
export function valueDigest(s: string): number {
  return createHmac('sha256', DIGEST_KEY).update(s).digest().readUIntLE(0, 6);
}
