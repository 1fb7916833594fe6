/** Node records: state/nodes/v1/<cluster>/<node>, written by the node's agent under its lease. */
import { z } from 'zod';
import { jsonCodec } from './codec.js';
import { cidr, clusterId, clusterName, ipAddress, MAX_ADDRESSES, MAX_CIDRS, nodeName, port } from './fields.js';
import { mismatch, stateLocation } from './location.js';

export const nodeSchema = z.object({
  cluster: clusterName,
  clusterId,
  name: nodeName,
  /** Underlay addresses (IPv4 and/or IPv6). */
  addresses: z.array(ipAddress).min(1).max(MAX_ADDRESSES),
  port,
  /** WireGuard public key, base64 of 32 bytes. */
  publicKey: z.string().refine((s) => /^[A-Za-z0-9+/]{43}=$/.test(s), 'not a base64 32-byte key'),
  podCIDRs: z.array(cidr).min(1).max(MAX_CIDRS),
  /** The agent's start time (ms since epoch, as text): lets watchers see restarts. */
  bootId: z.string().max(64),
});
export type NodeRecord = z.infer<typeof nodeSchema>;

export const nodeCodec = jsonCodec('node', nodeSchema, {
  check: (key, v) => {
    const loc = stateLocation('nodes', key);
    return mismatch('cluster', loc?.cluster, v.cluster) ?? mismatch('node', loc?.name, v.name);
  },
});
