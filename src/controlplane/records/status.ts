/**
 * Status records, each written by one component of this cluster and read by
 * `clustermesh status`, agents (metrics) and the dashboard:
 *   health/v1/<cluster>/<node>   an agent's tunnels and services (leased)
 *   mesh/v1/status/<remote>      kvstoremesh's view of a remote, its rejections included
 */
import { z } from 'zod';
import { healthPrefix, remoteStatusPrefix } from '../keys.js';
import { jsonCodec } from './codec.js';
import { clusterName } from './fields.js';
import { mismatch } from './location.js';

const count = z.number().int().nonnegative();
const text = (n: number) => z.string().max(n);

export const nodeHealthSchema = z.object({
  at: text(64),
  syncedClusters: z.array(clusterName).max(512).optional(),
  clusters: z.record(clusterName, z.object({ peers: count, live: count })),
  /** Peers this node has been trying to reach for over 15 s without an answer. */
  unreachable: z.array(z.object({ id: text(300), endpoint: text(80).optional(), forS: z.number().nonnegative() })).max(100).optional(),
  services: z
    .array(
      z.object({
        service: text(130),
        vip: text(64).optional(),
        affinity: text(16).optional(),
        tableSize: count.optional(),
        nearest: text(64).optional(),
        clusters: z.record(clusterName, z.object({ total: count, healthy: count })),
      }),
    )
    .max(200)
    .optional(),
  peers: z.array(z.object({ id: text(300), cluster: clusterName, handshakeAgeS: z.number().nullable(), rxBytes: count, txBytes: count })).max(500),
});
export type NodeHealth = z.infer<typeof nodeHealthSchema>;

export const nodeHealthCodec = jsonCodec('health', nodeHealthSchema, {
  maxBytes: 512 * 1024,
  check: (key) => {
    const m = /^wiremesh\/health\/v1\/([^/]+)\/([^/]+)$/.exec(key);
    return m && key.startsWith(healthPrefix(m[1]!)) ? undefined : 'key is not health/v1/<cluster>/<node>';
  },
});

export const rejectionSchema = z.object({ at: text(64), type: text(32), key: text(512), reason: text(16), detail: text(512) });
export type Rejection = z.infer<typeof rejectionSchema>;

export const remoteStatusSchema = z.object({
  cluster: clusterName,
  connected: z.boolean(),
  /**
   * Since when (ms since the epoch, kvstoremesh's clock) this cluster's copy of the remote is not known to be
   * current: before the first full sync, while its watches are down, or while a change has waited over 1 s to be
   * written locally. Absent when the copy is current. Agents export now - behindSince as the sync lag.
   */
  behindSince: z.number().int().nonnegative().optional(),
  synced: z.record(text(32), z.boolean()),
  entries: z.record(text(32), count),
  relists: count,
  lastError: text(2048).optional(),
  since: text(64),
  /** Records of this remote refused at ingest, by "<type>/<reason>". */
  rejected: z.record(text(64), count).optional(),
  /** The latest refusals, newest last (at most REJECTION_HISTORY). */
  recentRejections: z.array(rejectionSchema).max(50).optional(),
  /** Records, bytes and node records held for the remote, against its budget (nodes: absent from an older kvstoremesh). */
  budget: z.object({ records: count, bytes: count, maxRecords: count, maxBytes: count, nodes: count.optional(), maxNodes: count.optional() }).optional(),
});
export type RemoteStatus = z.infer<typeof remoteStatusSchema>;

export const remoteStatusCodec = jsonCodec('remote-status', remoteStatusSchema, {
  check: (key, v) => mismatch('cluster', key.startsWith(remoteStatusPrefix()) ? key.slice(remoteStatusPrefix().length) : undefined, v.cluster),
});
