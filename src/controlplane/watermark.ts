/**
 * A remote's mirror watermark: how a restarted kvstoremesh tells a key the remote only updated while it was down
 * from one the remote deleted and created again (a new incarnation) without a copy of each key's create revision.
 *
 * The watermark W of a remote's type is kept in that type's sync marker (wiremesh/synced/<remote>/<type>, whose
 * value agents do not read) as {at, revision: W}: every change of the type at a remote revision below W was written
 * to the local cache when it was (replication.ts writes it in the transaction that empties the mirror's queue,
 * nothing earlier still in flight: mirrorwriter.ts WriterProgress; only once a key was created at or past the last
 * one written: updates and deletes change no key's create revision). A remote key now listed with create revision
 * C ≤ W was not deleted at or after C, and every earlier incarnation's delete (below C, so below W) reached the
 * cache: a cached copy of the key is of this incarnation, and a value that differs from it is an update (one put,
 * no blip for the agents). A key created after W, or any key when there is no watermark, falls back to the
 * digest comparison (cachedcopies.ts: a differing value is copied as a new incarnation, delete then put).
 *
 * Only ever older than the truth, never ahead: a watermark written late means more keys fall back. The remote's
 * revisions are its own (it can blip only its own records, and could equally update instead of re-create them);
 * a remote etcd whose history went back (rebuilt, or restored from a backup without --bump-revision: its list's
 * revision is below W) makes the watermark void. Not detected: one restored with --bump-revision (keys keep their
 * create revisions, the revision jumps past W), or without it once past W again: a key the backup holds in an
 * earlier incarnation than the cache is copied as an update (docs/security.md: reconnect after a restore).
 */

/** The sync marker's value: when the first list was mirrored (ISO time), and the watermark once known. */
export function markerValue(at: string, revision?: string): string {
  return JSON.stringify(revision === undefined ? { at } : { at, revision });
}

/** A decimal revision within Number's exact integers, or undefined. */
function revisionOf(v: unknown): number | undefined {
  if (typeof v !== 'string' || !/^[0-9]{1,16}$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * The watermark a sync marker's value holds (written by markerValue), or undefined: none, or a value that is not
 * exactly such a marker (not text, not JSON, another shape: fail closed, every key falls back).
 */
export function markerWatermark(value: string | null | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  return revisionOf((v as Record<string, unknown>).revision);
}

/**
 * Whether a listed key of create revision `createRevision` (0: the store gave none) is of the incarnation cached
 * under `watermark` (markerWatermark), given the revision of the list that handed it over (decimal).
 */
export function sameIncarnation(createRevision: number | undefined, watermark: number | undefined, listRevision: string | undefined): boolean {
  if (watermark === undefined || !createRevision || createRevision > watermark) return false;
  const listed = revisionOf(listRevision);
  // the list sees every change below listed + 1: below the watermark, the remote's history went back
  return listed !== undefined && listed + 1 >= watermark;
}
