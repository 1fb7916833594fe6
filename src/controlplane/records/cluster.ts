/**
 * Records about clusters, written by the operator (root credentials only):
 *   cluster-config/<cluster>     this cluster's name, id, pod CIDRs, underlay CIDRs (`clustermesh enable`)
 *   mesh/v1/clusters/<remote>    what was pinned about a remote at `clustermesh connect`
 *   mesh/v1/remotes/<remote>     how kvstoremesh reaches the remote's etcd (credentials)
 */
import { z } from 'zod';
import { clusterConfigPrefix, pinnedPrefix, remotesPrefix } from '../keys.js';
import { jsonCodec } from './codec.js';
import { cidr, clusterId, clusterName, MAX_CIDRS, maxConnectedClusters } from './fields.js';
import { mismatch } from './location.js';
import { relayCIDRs } from './relaypin.js';
import { underlayCIDRs } from './underlay.js';

const nameAfter = (prefix: string, key: string): string | undefined => (key.startsWith(prefix) ? key.slice(prefix.length) : undefined);

const idWithinLimit = (c: { id: number; maxConnectedClusters?: 255 | 511 }) => c.id <= (c.maxConnectedClusters ?? 255);
const idLimitMessage = { message: 'id is above maxConnectedClusters (255 unless the mesh is configured for 511)', path: ['id'] };

export const clusterConfigSchema = z.object({
  name: clusterName,
  id: clusterId,
  /**
   * The mesh's cluster-id layout (Cilium's max-connected-clusters), the same in
   * every cluster of a mesh: 255 (default) or 511 (identities keep 15 local bits).
   */
  maxConnectedClusters: maxConnectedClusters.optional(),
  podCIDRs: z.array(cidr).min(1).max(MAX_CIDRS),
  /**
   * Where this cluster's nodes' addresses live (`--underlay-cidrs`, records/underlay.ts). Absent only in a
   * config written before the field existed: then Trust refuses every node address of the cluster (fail
   * closed) until `clustermesh enable` is run again with the ranges.
   */
  underlayCIDRs: underlayCIDRs.optional(),
  /** Hub of a hub-and-spoke mesh: its nodes relay traffic between the clusters they reach. */
  relay: z.boolean().optional(),
  /** Where `apply` allocates service VIPs (default 100.127.<id>.0/24); unique across the mesh. */
  serviceCIDR: cidr.optional(),
}).refine(idWithinLimit, idLimitMessage);
export type ClusterConfig = z.infer<typeof clusterConfigSchema>;

export const clusterConfigCodec = jsonCodec('cluster-config', clusterConfigSchema, {
  check: (key, v) => mismatch('cluster', nameAfter(clusterConfigPrefix(), key), v.name),
});

/**
 * A remote cluster as this cluster pinned it at connect time. Everything a
 * remote's records may claim is checked against this, never against what the
 * remote says about itself later (docs/security.md).
 */
export const pinnedClusterSchema = z.object({
  name: clusterName,
  id: clusterId,
  podCIDRs: z.array(cidr).min(1).max(MAX_CIDRS),
  /**
   * The remote's underlay CIDRs at connect: every address its node records name must lie inside them. Absent in
   * a pin written before the field existed: the remote's node records are refused until it is connected again.
   */
  underlayCIDRs: underlayCIDRs.optional(),
  /** The remote was a hub at connect: its relay offers are honoured, inside relayCIDRs. */
  relay: z.boolean(),
  /**
   * What a hub may relay to this cluster (records/relaypin.ts), pinned at connect. Absent in a hub's pin written
   * before the field existed: its relay offers are honoured for nothing until it is connected again.
   */
  relayCIDRs: relayCIDRs.optional(),
  /** This cluster opted in to the remote's mesh-wide policies (default false). */
  acceptPolicies: z.boolean(),
  /** The remote's layout at connect (absent: 255); Trust refuses a pin whose layout differs from ours. */
  maxConnectedClusters: maxConnectedClusters.optional(),
}).refine(idWithinLimit, idLimitMessage);
export type PinnedCluster = z.infer<typeof pinnedClusterSchema>;

export const pinnedClusterCodec = jsonCodec('pinned-cluster', pinnedClusterSchema, {
  maxBytes: 8192, // 16 pod and 16 underlay CIDRs, 128 relay CIDRs
  check: (key, v) => mismatch('cluster', nameAfter(pinnedPrefix(), key), v.name),
});

const pem = z.string().max(16 * 1024);
export const remoteSpecSchema = z.object({
  name: clusterName,
  endpoints: z.array(z.string().regex(/^https?:\/\/[^\s/,]+$/, 'must be http(s)://host:port')).min(1).max(16),
  caFile: z.string().max(4096).optional(),
  certFile: z.string().max(4096).optional(),
  keyFile: z.string().max(4096).optional(),
  ca: pem.optional(),
  cert: pem.optional(),
  key: pem.optional(),
  username: z.string().max(256).optional(),
  password: z.string().max(256).optional(),
  dialTimeoutMs: z.number().int().positive().max(60_000).optional(),
});
export type RemoteSpec = z.infer<typeof remoteSpecSchema>;

export const remoteSpecCodec = jsonCodec('remote', remoteSpecSchema, {
  check: (key, v) => mismatch('cluster', nameAfter(remotesPrefix(), key), v.name),
});
