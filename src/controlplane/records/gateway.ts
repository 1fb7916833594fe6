/** Ingress gateway records: state/gateways/v1/<cluster>/<node> (agent `gateway` section). */
import { z } from 'zod';
import { jsonCodec } from './codec.js';
import { clusterName, ipAddress, nodeName, port } from './fields.js';
import { mismatch, stateLocation } from './location.js';

export const gatewaySchema = z.object({
  cluster: clusterName,
  node: nodeName,
  /** Must be one of the node's own underlay addresses (checked where node records are known: gateway-dns). */
  address: ipAddress,
  region: z.string().min(1).max(63).regex(/^[A-Za-z0-9][-A-Za-z0-9_.]*$/).optional(),
  listeners: z
    .array(z.object({ service: z.string().regex(/^[a-z0-9-]{1,63}\/[a-z0-9-]{1,63}$/, 'must be namespace/name'), port, listenPort: port }))
    .min(1)
    .max(64),
});
export type GatewayRecord = z.infer<typeof gatewaySchema>;

export const gatewayCodec = jsonCodec('gateway', gatewaySchema, {
  check: (key, v) => {
    const loc = stateLocation('gateways', key);
    return mismatch('cluster', loc?.cluster, v.cluster) ?? mismatch('node', loc?.name, v.node);
  },
});
