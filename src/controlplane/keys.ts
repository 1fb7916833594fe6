/**
 * The etcd key layout. STABLE: agents, kvstoremesh replicators and CLIs of
 * different versions share these keys; a change here needs a new version
 * segment (v2), never an edit of v1. docs/etcd-keys.md mirrors this file.
 *
 *   wiremesh/state/<type>/<v>/<cluster>/<name>   state a cluster owns (written by its agents / CLI)
 *   wiremesh/cache/<type>/<v>/<cluster>/<name>   copies of remote clusters' state (written by kvstoremesh)
 *   wiremesh/synced/<cluster>/<type>             initial sync of <cluster>'s <type> into this etcd is complete
 *   wiremesh/cluster-config/<cluster>            cluster id, pod CIDRs, capabilities (operator)
 *   wiremesh/mesh/v1/remotes/<remote>            how this cluster's kvstoremesh reaches a remote's etcd (operator; credentials)
 *   wiremesh/mesh/v1/clusters/<remote>           what was pinned about a remote at connect: id, pod and underlay CIDRs, hub, policy opt-in (operator)
 *   wiremesh/mesh/v1/status/<remote>             kvstoremesh's view of that remote (connected, synced, rejections)
 *   wiremesh/mesh/v1/epochs/<remote>             the fence of the remote's copy: every purge puts it, every copy write compares its mod revision (fence.ts)
 *   wiremesh/health/v1/<cluster>/<node>          an agent's tunnels (peers, handshake ages, traffic), every 5 s, leased
 *   wiremesh/identity-index/v1/<cluster>/<sha256> the identity number of a label set (allocation, never replicated)
 *   wiremesh/identity-refs/v2/<cluster>/<node>/<id> node <node> uses identity <id> (leased; no refs = garbage)
 *
 * Types and their names: nodes (node), ip (v2: <node>/<endpoint IP>), identities
 * (the identity number, value its labels), services (ns/name), policies
 * (ns/name), relays (node: a hub node's offer to relay traffic between the
 * clusters it reaches), gateways (node), heartbeat ("kvstoremesh": {at, seq}
 * at start and every 5 min from the cluster's kvstoremesh, leased: present
 * while it lives, its age on arrival a lag sample), namespaces (name: a v1 Namespace manifest; read by
 * the cluster's own agents only, never replicated: its labels reach other
 * clusters inside the identities of its pods).
 *
 * Why v2 for ip and identity-refs: etcd's RBAC grants key prefixes, and each
 * agent may write only its own node's records (docs/security.md). In v1 an
 * endpoint was keyed by address alone and a reference by identity first, so no
 * prefix separated one node's records from another's; v2 puts the node first.
 */
export const ROOT = 'wiremesh/';
export const STATE_TYPES = ['nodes', 'ip', 'identities', 'services', 'policies', 'relays', 'gateways', 'heartbeat', 'namespaces'] as const;
export type StateType = (typeof STATE_TYPES)[number];
/** The key version of each type (see above). */
const VERSION: Record<StateType, string> = { nodes: 'v1', ip: 'v2', identities: 'v1', services: 'v1', policies: 'v1', relays: 'v1', gateways: 'v1', heartbeat: 'v1', namespaces: 'v1' };

export const stateKey = (type: StateType, cluster: string, name: string): string => `wiremesh/state/${type}/${VERSION[type]}/${cluster}/${name}`;
export const statePrefix = (type: StateType, cluster?: string): string =>
  cluster === undefined ? `wiremesh/state/${type}/${VERSION[type]}/` : `wiremesh/state/${type}/${VERSION[type]}/${cluster}/`;
export const cacheKey = (type: StateType, cluster: string, name: string): string => `wiremesh/cache/${type}/${VERSION[type]}/${cluster}/${name}`;
export const cachePrefix = (type: StateType, cluster?: string): string =>
  cluster === undefined ? `wiremesh/cache/${type}/${VERSION[type]}/` : `wiremesh/cache/${type}/${VERSION[type]}/${cluster}/`;
/** An endpoint's name under the ip type: the node that hosts it, then its address. */
export const endpointName = (node: string, ip: string): string => `${node}/${ip}`;
export const syncedKey = (cluster: string, type: StateType): string => `wiremesh/synced/${cluster}/${type}`;
/** Every sync marker, or one cluster's. */
export const syncedPrefix = (cluster?: string): string => (cluster === undefined ? 'wiremesh/synced/' : `wiremesh/synced/${cluster}/`);
export const clusterConfigPrefix = (): string => 'wiremesh/cluster-config/';
export const clusterConfigKey = (cluster: string): string => `wiremesh/cluster-config/${cluster}`;
export const healthKey = (cluster: string, node: string): string => `wiremesh/health/v1/${cluster}/${node}`;
export const healthPrefix = (cluster: string): string => `wiremesh/health/v1/${cluster}/`;
export const identityIndexKey = (cluster: string, labelsHash: string): string => `wiremesh/identity-index/v1/${cluster}/${labelsHash}`;
export const identityIndexPrefix = (cluster: string): string => `wiremesh/identity-index/v1/${cluster}/`;
export const identityRefKey = (cluster: string, id: number, node: string): string => `wiremesh/identity-refs/v2/${cluster}/${node}/${id}`;
/** All references in a cluster, or one node's. */
export const identityRefsPrefix = (cluster: string, node?: string): string =>
  node === undefined ? `wiremesh/identity-refs/v2/${cluster}/` : `wiremesh/identity-refs/v2/${cluster}/${node}/`;
/** A service VIP claimed in a cluster (value "<namespace>/<name>"): apply allocates VIPs through these. */
export const vipKey = (cluster: string, ip: string): string => `wiremesh/service-vips/v1/${cluster}/${ip}`;
export const vipPrefix = (cluster: string): string => `wiremesh/service-vips/v1/${cluster}/`;
export const remotesPrefix = (): string => 'wiremesh/mesh/v1/remotes/';
export const remoteKey = (remote: string): string => `wiremesh/mesh/v1/remotes/${remote}`;
export const pinnedPrefix = (): string => 'wiremesh/mesh/v1/clusters/';
export const pinnedKey = (remote: string): string => `wiremesh/mesh/v1/clusters/${remote}`;
export const remoteStatusPrefix = (): string => 'wiremesh/mesh/v1/status/';
export const remoteStatusKey = (remote: string): string => `wiremesh/mesh/v1/status/${remote}`;
export const epochsPrefix = (): string => 'wiremesh/mesh/v1/epochs/';
/** The remote's purge epoch (fence.ts): written by kvstoremesh only, never deleted by it. */
export const epochKey = (remote: string): string => `wiremesh/mesh/v1/epochs/${remote}`;

/** Splits `<prefix><cluster>/<name>` into its cluster and name. */
export function splitClusterName(prefix: string, key: string): { cluster: string; name: string } | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return null;
  return { cluster: rest.slice(0, slash), name: rest.slice(slash + 1) };
}
