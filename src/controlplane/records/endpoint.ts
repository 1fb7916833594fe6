/** Endpoint records: state/ip/v2/<cluster>/<node>/<ip>, written by the hosting node's agent. */
import { z } from 'zod';
import { LOCAL_SCOPE, MIN_LOCAL_ID } from '../../identity/identity.js';
import { jsonCodec } from './codec.js';
import { clusterName, containerPorts, dnsLabel, ipAddress, labels, nodeName } from './fields.js';
import { mismatch, stateLocation } from './location.js';

export const endpointSchema = z.object({
  ip: ipAddress,
  cluster: clusterName,
  node: nodeName,
  namespace: dnsLabel,
  name: dnsLabel,
  labels,
  /** Security identity (src/identity); absent while it is being allocated. */
  identity: z.number().int().min(MIN_LOCAL_ID).max(LOCAL_SCOPE - 1).optional(),
  /** The pod's named container ports: rules naming a port resolve against them (remote clusters' egress too). */
  ports: containerPorts.optional(),
});
export type EndpointRecord = z.infer<typeof endpointSchema>;

export const endpointCodec = jsonCodec('endpoint', endpointSchema, {
  check: (key, v) => {
    const loc = stateLocation('ip', key);
    const slash = loc ? loc.name.lastIndexOf('/') : -1;
    if (!loc || slash <= 0) return 'key is not <cluster>/<node>/<ip>';
    return mismatch('cluster', loc.cluster, v.cluster) ?? mismatch('node', loc.name.slice(0, slash), v.node) ?? mismatch('ip', loc.name.slice(slash + 1), v.ip);
  },
});
