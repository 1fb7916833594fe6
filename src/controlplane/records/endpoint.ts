/** Endpoint records: state/ip/v2/<cluster>/<node>/<ip>, written by the hosting node's agent. */
import { z } from 'zod';
import { LOCAL_SCOPE, MIN_LOCAL_ID } from '../../identity/identity.js';
import { jsonCodec, type Codec } from './codec.js';
import { internLabels, internList, internName } from './intern.js';
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

const endpointJson = jsonCodec('endpoint', endpointSchema, {
  check: (key, v) => {
    const loc = stateLocation('ip', key);
    const slash = loc ? loc.name.lastIndexOf('/') : -1;
    if (!loc || slash <= 0) return 'key is not <cluster>/<node>/<ip>';
    return mismatch('cluster', loc.cluster, v.cluster) ?? mismatch('node', loc.name.slice(0, slash), v.node) ?? mismatch('ip', loc.name.slice(slash + 1), v.ip);
  },
});

/**
 * Decoded records share what endpoints repeat (intern.ts): the label set, the
 * port list and the cluster, node and namespace names are one frozen copy
 * each, however many records carry them. What a record says is unchanged.
 */
export function compactEndpoint(v: EndpointRecord): EndpointRecord {
  const labels = internLabels(v.labels);
  const [cluster, node, namespace] = [internName(v.cluster), internName(v.node), internName(v.namespace)];
  // one literal with every field in place: no out-of-object property store per record
  if (v.identity !== undefined && v.ports) return { ip: v.ip, cluster, node, namespace, name: v.name, labels, identity: v.identity, ports: internList(v.ports) };
  return Object.assign(v, { cluster, node, namespace, labels }, v.ports ? { ports: internList(v.ports) } : {});
}

export const endpointCodec: Codec<EndpointRecord> = { ...endpointJson, decode: (key, value) => compactEndpoint(endpointJson.decode(key, value)) };
