/** Relay offers: state/relays/v1/<cluster>/<node>, a hub node's offer to carry traffic to the clusters it reaches. */
import { z } from 'zod';
import { jsonCodec } from './codec.js';
import { cidr, clusterId, clusterName, nodeName } from './fields.js';
import { mismatch, stateLocation } from './location.js';

/** A hub reaches at most every other cluster of a 511-cluster mesh, about two CIDRs each. */
export const MAX_RELAYED_CIDRS = 1024;

export const relaySchema = z.object({
  cluster: clusterName,
  node: nodeName,
  /** Pod CIDRs of the remote clusters it reaches. */
  podCIDRs: z.array(cidr).max(MAX_RELAYED_CIDRS),
  /** Ids of the clusters behind those CIDRs: the hub's identity tags may carry them. */
  clusterIds: z.array(clusterId).max(511).optional(),
});
export type RelayRecord = z.infer<typeof relaySchema>;

export const relayCodec = jsonCodec('relay', relaySchema, {
  check: (key, v) => {
    const loc = stateLocation('relays', key);
    return mismatch('cluster', loc?.cluster, v.cluster) ?? mismatch('node', loc?.name, v.node);
  },
});
