/**
 * Security identities: a number for a set of labels, scoped to a cluster.
 *
 *   identity = clusterId << 16 | local      cluster-scoped (local 256..65535), allocated in etcd
 *   1..255                                  Cilium's reserved identities (no cluster bits)
 *   1 << 24 | n                             node-local CIDR identities (never on the wire)
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
export const MAX_LOCAL_ID = 0xffff;

export const clusterIdentity = (clusterId: number, local: number): number => clusterId * 0x10000 + local;
export const identityCluster = (id: number): number => (id < LOCAL_SCOPE ? (id >>> 16) & 0xff : 0);

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
