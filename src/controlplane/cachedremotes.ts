/**
 * The remotes this cluster's etcd holds anything of (cache entries, sync markers, status): what kvstoremesh looks
 * at after a restart to purge the remotes no longer connected (a purge that failed or was still pending when the
 * last run ended is otherwise forgotten, and the agents would keep a disconnected cluster's state for good).
 */
import { cachePrefix, remoteStatusPrefix, syncedPrefix } from './keys.js';
import type { MirrorTarget } from './mirrorwriter.js';
import { REPLICATED_TYPES } from './replication.js';

/**
 * The cluster names under wiremesh/cache/<type>/<v>/ (the replicated types: exactly what purgeRemote deletes, so
 * that a key it would leave never names a remote to purge again on every start), wiremesh/synced/ and wiremesh/mesh/v1/status/ (keys only,
 * one list per prefix, read once per start: at most every cached key's name in memory at once, 165k at 16
 * clusters x 1000 nodes x 10 endpoints). A key with no cluster segment names nothing. Errors: the store's.
 */
export async function cachedRemotes(local: Pick<MirrorTarget, 'keys'>): Promise<Set<string>> {
  const names = new Set<string>();
  const collect = (prefix: string, keys: string[], whole: boolean) => {
    for (const k of keys) {
      const rest = k.slice(prefix.length);
      const slash = rest.indexOf('/');
      const name = slash < 0 ? (whole ? rest : '') : rest.slice(0, slash);
      if (name) names.add(name);
    }
  };
  for (const type of REPLICATED_TYPES) collect(cachePrefix(type), await local.keys(cachePrefix(type)), false);
  collect(syncedPrefix(), await local.keys(syncedPrefix()), false);
  collect(remoteStatusPrefix(), await local.keys(remoteStatusPrefix()), true);
  return names;
}
