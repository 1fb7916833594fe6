/**
 * Identity records: state/identities/v1/<cluster>/<id> = {id, labels}.
 * The cluster is not taken from the labels: the trust layer (trust.ts) checks
 * the number's cluster bits against the key's cluster and the labels against both.
 */
import { z } from 'zod';
import { LOCAL_SCOPE, MIN_LOCAL_ID } from '../../identity/identity.js';
import { jsonCodec } from './codec.js';
import { isInt, isObj, labelSet } from './fast.js';
import { IDENTITY_LABEL_KEY_MAX, IDENTITY_LABEL_KEY_RE, identityLabels } from './fields.js';
import { stateLocation } from './location.js';

export const identitySchema = z.object({
  id: z.number().int().min(MIN_LOCAL_ID).max(LOCAL_SCOPE - 1),
  labels: identityLabels,
});
export type IdentityRecord = z.infer<typeof identitySchema>;

const identityKeyOk = (k: string): boolean => k.length >= 1 && k.length <= IDENTITY_LABEL_KEY_MAX && IDENTITY_LABEL_KEY_RE.test(k);

/** identitySchema's output without zod, or undefined (fast.ts). */
export function fastIdentity(v: unknown): IdentityRecord | undefined {
  if (!isObj(v) || !isInt(v.id, MIN_LOCAL_ID, LOCAL_SCOPE - 1)) return undefined;
  const labels = labelSet(v.labels, identityKeyOk);
  return labels && { id: v.id, labels };
}

export const identityCodec = jsonCodec('identity', identitySchema, {
  fast: fastIdentity,
  check: (key, v) => {
    const loc = stateLocation('identities', key);
    if (!loc) return 'key is not an identity key';
    return loc.name === String(v.id) ? undefined : `the key names identity ${loc.name}, the value ${v.id}`;
  },
});

/** identity-refs/v2/<cluster>/<node>/<id>: empty values; only the key matters. */
export function parseIdentityRefKey(key: string): { cluster: string; node: string; id: number } | null {
  const m = /^wiremesh\/identity-refs\/v2\/([^/]+)\/([^/]+)\/(\d{1,9})$/.exec(key);
  return m ? { cluster: m[1]!, node: m[2]!, id: Number(m[3]) } : null;
}
