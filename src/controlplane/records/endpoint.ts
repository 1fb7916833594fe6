/** Endpoint records: state/ip/v2/<cluster>/<node>/<ip>, written by the hosting node's agent. */
import { z } from 'zod';
import { LOCAL_SCOPE, MIN_LOCAL_ID } from '../../identity/identity.js';
import { jsonCodec, type Codec } from './codec.js';
import { internLabels, internList, internName } from './intern.js';
import { isClusterName, isDnsLabel, isInt, isIP, isNodeName, isObj, labelSet } from './fast.js';
import { clusterName, containerPorts, dnsLabel, ipAddress, LABEL_KEY_RE, labels, nodeName } from './fields.js';
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
/**
 * A decoded endpoint record. Never mutated once handed over by the codec: a change is a new record through the
 * watch, never an edit in place. Admission's table keeps it packed and builds an equal record on every read
 * (src/agent/packedendpoint.ts), so two reads of one key give equal records, not the same object: readers compare
 * records by content.
 */
export type EndpointRecord = z.infer<typeof endpointSchema>;

const labelKeyOk = (k: string): boolean => LABEL_KEY_RE.test(k);

/**
 * endpointSchema's output without zod, or undefined (fast.ts): the same predicates, field by field; container
 * ports (rare, with a default and a uniqueness rule) through their own zod schema.
 */
export function fastEndpoint(v: unknown): EndpointRecord | undefined {
  if (!isObj(v)) return undefined;
  const { ip, cluster, node, namespace, name, identity } = v;
  if (!isIP(ip) || !isClusterName(cluster) || !isNodeName(node) || !isDnsLabel(namespace) || !isDnsLabel(name)) return undefined;
  const labels = labelSet(v.labels, labelKeyOk);
  if (!labels) return undefined;
  // keys added in the schema's order (zod's output order); optional ones only when present
  const out: EndpointRecord = { ip, cluster, node, namespace, name, labels };
  if ('identity' in v) {
    if (!isInt(identity, MIN_LOCAL_ID, LOCAL_SCOPE - 1)) return undefined;
    out.identity = identity;
  }
  if ('ports' in v) {
    const ports = containerPorts.safeParse(v.ports);
    if (!ports.success) return undefined;
    out.ports = ports.data;
  }
  return out;
}

const endpointJson = jsonCodec('endpoint', endpointSchema, {
  fast: fastEndpoint,
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
 * each, however many records carry them. What a record says is unchanged; the
 * record is a new object with the schema's fields only, in the schema's order
 * (a field present as undefined is left out), never the one it was given.
 */
export function compactEndpoint(v: EndpointRecord): EndpointRecord {
  const labels = internLabels(v.labels);
  const [ip, name, cluster, node, namespace] = [v.ip, v.name, internName(v.cluster), internName(v.node), internName(v.namespace)];
  // one literal per shape with every field in place: a field added to a decoded object after its literal (the
  // codec's `identity`, `ports`) goes to an out-of-object property store: a 72 B object and a 40 B store against
  // one 80 B object, 32 B more per record (a remote pod with an identity and no named port, bench/records-heap.ts)
  if (v.identity !== undefined && v.ports) return { ip, cluster, node, namespace, name, labels, identity: v.identity, ports: internList(v.ports) };
  if (v.identity !== undefined) return { ip, cluster, node, namespace, name, labels, identity: v.identity };
  if (v.ports) return { ip, cluster, node, namespace, name, labels, ports: internList(v.ports) };
  return { ip, cluster, node, namespace, name, labels };
}

/**
 * The same decode without the compaction: for a reader that checks a record and lets it go (kvstoremesh copies
 * the value text as it came), where sharing its parts would only cost a pool look-up and a weak reference each.
 */
export const endpointCheckCodec: Codec<EndpointRecord> = endpointJson;

export const endpointCodec: Codec<EndpointRecord> = { ...endpointJson, decode: (key, value) => compactEndpoint(endpointJson.decode(key, value)) };
