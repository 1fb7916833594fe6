/**
 * Security identities: a number for a set of labels, scoped to a cluster.
 *
 *   identity = clusterId << 16 | local      cluster-scoped (local 256..65535), allocated in etcd
 *            = clusterId << 15 | local      the same in a mesh configured for 511 clusters (local 256..32767)
 *   1..255                                  Cilium's reserved identities (no cluster bits)
 *   1 << 24 | n                             node-local CIDR identities (never on the wire)
 *
 * The layout is mesh-wide (Cilium's max-connected-clusters): every cluster's
 * cluster-config says it (`maxConnectedClusters`, 255 by default), `clustermesh
 * connect` refuses two clusters that differ, and a pinned remote whose layout
 * differs from ours is refused (records/trust.ts): an identity means one
 * cluster everywhere or nowhere.
 *
 * Every cluster-scoped identity's labels include the cluster
 * (io.cilium.k8s.policy.cluster) and the namespace (io.kubernetes.pod.namespace).
 */
import { createHash } from 'node:crypto';

export type Labels = Record<string, string>;

export const CLUSTER_LABEL = 'io.cilium.k8s.policy.cluster';
export const NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
/** Namespace labels appear on identities under this prefix (Cilium's convention). */
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export const RESERVED = {
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  init: 5,
  'remote-node': 6,
  'kube-apiserver': 7,
  ingress: 8,
} as const;
export type ReservedName = keyof typeof RESERVED;

export const LOCAL_SCOPE = 1 << 24;
export const MIN_LOCAL_ID = 256;
/** The largest local part with 255 clusters (maxLocalId(255)). */
export const MAX_LOCAL_ID = 0xffff;

/** The mesh's cluster-id layout: up to 255 clusters (the default) or 511 (one identity bit fewer per cluster). */
export type MaxClusters = 255 | 511;
export const DEFAULT_MAX_CLUSTERS: MaxClusters = 255;
/** Bits of an identity's local part: 16 with 255 clusters, 15 with 511. */
export const localIdBits = (max: MaxClusters): number => (max === 511 ? 15 : 16);
/** The largest local part: 65535 with 255 clusters, 32767 with 511 (so 65280 or 32512 identities per cluster). */
export const maxLocalId = (max: MaxClusters): number => 2 ** localIdBits(max) - 1;

/** clusterId << localIdBits(max) | local: clusterId 1..max, local MIN_LOCAL_ID..maxLocalId(max). */
export const clusterIdentity = (clusterId: number, local: number, max: MaxClusters = DEFAULT_MAX_CLUSTERS): number =>
  clusterId * 2 ** localIdBits(max) + local;
/** The cluster bits of an identity read with the mesh's layout; 0 for node-local (CIDR) identities. */
export const identityCluster = (id: number, max: MaxClusters = DEFAULT_MAX_CLUSTERS): number =>
  id < LOCAL_SCOPE ? Math.floor(id / 2 ** localIdBits(max)) & max : 0;

export function reservedName(id: number): ReservedName | undefined {
  return (Object.keys(RESERVED) as ReservedName[]).find((k) => RESERVED[k] === id);
}

/** Labels of a reserved identity, as selectors see them (`reserved:host`). */
export function reservedLabels(name: ReservedName): Labels {
  return { [`reserved:${name}`]: '' };
}

/**
 * The labels an endpoint's identity is made of: the pod's, its namespace and
 * cluster, and its namespace's labels as Cilium writes them
 * (io.cilium.k8s.namespace.labels.<key>; kubernetes.io/metadata.name always
 * the namespace's name, whatever namespaceLabels say).
 */
export function endpointIdentityLabels(podLabels: Labels, namespace: string, cluster: string, namespaceLabels: Labels = {}): Labels {
  const out: Labels = { ...podLabels };
  for (const [k, v] of Object.entries(namespaceLabels)) out[`${NAMESPACE_LABELS_PREFIX}${k}`] = v;
  out[NAMESPACE_LABEL] = namespace;
  out[CLUSTER_LABEL] = cluster;
  out[`${NAMESPACE_LABELS_PREFIX}${NAMESPACE_NAME_LABEL}`] = namespace;
  return out;
}

/** Canonical text of a label set: sorted key=value lines (hashing, comparing). */
export function canonicalLabels(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join('\n');
}

export const labelsHash = (labels: Labels): string => createHash('sha256').update(canonicalLabels(labels)).digest('hex');

export interface IdentityRecord {
  id: number;
  labels: Labels;
}

/** Short human form: `cluster/namespace app=frontend,tier=web` or `reserved:world`. */
export function describeIdentity(id: number, labels: Labels | undefined): string {
  const r = reservedName(id);
  if (r) return `reserved:${r}`;
  if (!labels) return String(id);
  const rest = Object.entries(labels)
    .filter(([k]) => k !== CLUSTER_LABEL && k !== NAMESPACE_LABEL && !k.startsWith(NAMESPACE_LABELS_PREFIX))
    .map(([k, v]) => (v ? `${k}=${v}` : k))
    .sort();
  const where = labels[CLUSTER_LABEL] ? `${labels[CLUSTER_LABEL]}/${labels[NAMESPACE_LABEL] ?? ''}` : '';
  return [where, rest.join(',')].filter(Boolean).join(' ');
}
