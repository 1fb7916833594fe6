/**
 * The etcd key layout. STABLE: agents, kvstoremesh replicators and CLIs of
 * different versions share these keys; a change here needs a new version
 * segment (v2), never an edit of v1. docs/etcd-keys.md mirrors this file.
 *
 *   wiremesh/state/<type>/v1/<cluster>/<name>    state a cluster owns (written by its agents / CLI)
 *   wiremesh/cache/<type>/v1/<cluster>/<name>    copies of remote clusters' state (written by kvstoremesh)
 *   wiremesh/synced/<cluster>/<type>             initial sync of <cluster>'s <type> into this etcd is complete
 *   wiremesh/cluster-config/<cluster>            cluster id, pod CIDRs, capabilities
 *   wiremesh/mesh/v1/remotes/<remote>            a connected cluster: how this cluster's kvstoremesh reaches its etcd
 *   wiremesh/mesh/v1/status/<remote>             kvstoremesh's view of that remote (connected, synced, errors)
 *   wiremesh/health/v1/<cluster>/<node>          an agent's tunnels (peers, handshake ages, traffic), every 5 s, leased
 *   wiremesh/identity-index/v1/<cluster>/<sha256> the identity number of a label set (allocation, never replicated)
 *   wiremesh/identity-refs/v1/<cluster>/<id>/<node> a node uses identity <id> (leased; no refs = garbage)
 *
 * Types: nodes (name = node), ip (name = endpoint IP), identities (name = the
 * identity number, value its labels), services
 * (name = ns/name), policies (name = ns/name), relays (name = node: a hub
 * node's offer to relay traffic between the clusters it reaches), gateways
 * (name = node), heartbeat (name = "kvstoremesh": {at, seq} every 2 s from the
 * cluster's kvstoremesh, leased; remote agents measure replication lag with it).
 */
export const ROOT = 'wiremesh/';
export const STATE_TYPES = ['nodes', 'ip', 'identities', 'services', 'policies', 'relays', 'gateways', 'heartbeat'] as const;
export type StateType = (typeof STATE_TYPES)[number];

export const stateKey = (type: StateType, cluster: string, name: string): string => `wiremesh/state/${type}/v1/${cluster}/${name}`;
export const statePrefix = (type: StateType, cluster?: string): string =>
  cluster === undefined ? `wiremesh/state/${type}/v1/` : `wiremesh/state/${type}/v1/${cluster}/`;
export const cacheKey = (type: StateType, cluster: string, name: string): string => `wiremesh/cache/${type}/v1/${cluster}/${name}`;
export const cachePrefix = (type: StateType, cluster?: string): string =>
  cluster === undefined ? `wiremesh/cache/${type}/v1/` : `wiremesh/cache/${type}/v1/${cluster}/`;
export const syncedKey = (cluster: string, type: StateType): string => `wiremesh/synced/${cluster}/${type}`;
export const syncedPrefix = (): string => 'wiremesh/synced/';
export const clusterConfigKey = (cluster: string): string => `wiremesh/cluster-config/${cluster}`;
export const healthKey = (cluster: string, node: string): string => `wiremesh/health/v1/${cluster}/${node}`;
export const healthPrefix = (cluster: string): string => `wiremesh/health/v1/${cluster}/`;
export const identityIndexKey = (cluster: string, labelsHash: string): string => `wiremesh/identity-index/v1/${cluster}/${labelsHash}`;
export const identityRefKey = (cluster: string, id: number, node: string): string => `wiremesh/identity-refs/v1/${cluster}/${id}/${node}`;
export const identityRefsPrefix = (cluster: string, id?: number): string =>
  id === undefined ? `wiremesh/identity-refs/v1/${cluster}/` : `wiremesh/identity-refs/v1/${cluster}/${id}/`;
/** A service VIP claimed in a cluster (value "<namespace>/<name>"): apply allocates VIPs through these. */
export const vipKey = (cluster: string, ip: string): string => `wiremesh/service-vips/v1/${cluster}/${ip}`;
export const vipPrefix = (cluster: string): string => `wiremesh/service-vips/v1/${cluster}/`;
export const remotesPrefix = (): string => 'wiremesh/mesh/v1/remotes/';
export const remoteKey = (remote: string): string => `wiremesh/mesh/v1/remotes/${remote}`;
export const remoteStatusPrefix = (): string => 'wiremesh/mesh/v1/status/';
export const remoteStatusKey = (remote: string): string => `wiremesh/mesh/v1/status/${remote}`;

/** Splits `<prefix><cluster>/<name>` into its cluster and name. */
export function splitClusterName(prefix: string, key: string): { cluster: string; name: string } | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return null;
  return { cluster: rest.slice(0, slash), name: rest.slice(slash + 1) };
}
