/** Node records: state/nodes/v1/<cluster>/<node>, written by the node's agent under its lease. */
import { z } from 'zod';
import { jsonCodec, type Codec } from './codec.js';
import { internName } from './intern.js';
import { arrayOf, isClusterName, isInt, isIP, isNodeName, isObj, isPrefix } from './fast.js';
import { cidr, clusterId, clusterName, ipAddress, MAX_ADDRESSES, MAX_CIDRS, nodeName, port } from './fields.js';
import { mismatch, stateLocation } from './location.js';

/**
 * A WireGuard public key: base64 of 32 bytes, in its one spelling. 43 digits carry 258 bits: the last digit's
 * low 2 bits must be zero (A E I … 0 4 8), else four texts name one key and a node could take another's key,
 * spelt otherwise, past every comparison of the text (admission's one key, one node).
 */
const PUBLIC_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

export const nodeSchema = z.object({
  cluster: clusterName,
  clusterId,
  name: nodeName,
  /** Underlay addresses (IPv4 and/or IPv6). */
  addresses: z.array(ipAddress).min(1).max(MAX_ADDRESSES),
  port,
  /** WireGuard public key, base64 of 32 bytes. */
  publicKey: z.string().refine((s) => PUBLIC_KEY_RE.test(s), 'not a base64 32-byte key in its canonical spelling'),
  podCIDRs: z.array(cidr).min(1).max(MAX_CIDRS),
  /** The agent's start time (ms since epoch, as text): lets watchers see restarts. */
  bootId: z.string().max(64),
});
export type NodeRecord = z.infer<typeof nodeSchema>;

/** nodeSchema's output without zod, or undefined (fast.ts): the same predicates, field by field. */
export function fastNode(v: unknown): NodeRecord | undefined {
  if (!isObj(v)) return undefined;
  const { cluster, clusterId, name, port, publicKey, bootId } = v;
  if (!isClusterName(cluster) || !isInt(clusterId, 1, 511) || !isNodeName(name) || !isInt(port, 1, 65535)) return undefined;
  if (typeof publicKey !== 'string' || !PUBLIC_KEY_RE.test(publicKey) || typeof bootId !== 'string' || bootId.length > 64) return undefined;
  const addresses = arrayOf(v.addresses, 1, MAX_ADDRESSES, isIP);
  const podCIDRs = addresses && arrayOf(v.podCIDRs, 1, MAX_CIDRS, isPrefix);
  return podCIDRs && { cluster, clusterId, name, addresses: addresses!, port, publicKey, podCIDRs, bootId };
}

const nodeJson = jsonCodec('node', nodeSchema, {
  fast: fastNode,
  check: (key, v) => {
    const loc = stateLocation('nodes', key);
    return mismatch('cluster', loc?.cluster, v.cluster) ?? mismatch('node', loc?.name, v.name);
  },
});

/**
 * A decoded node as one object literal (no out-of-object property store) whose
 * cluster and node names are the engine's one copy (intern.ts): its endpoints'
 * records name the same node. What the record says is unchanged.
 */
export function compactNode(v: NodeRecord): NodeRecord {
  return { cluster: internName(v.cluster), clusterId: v.clusterId, name: internName(v.name), addresses: v.addresses, port: v.port, publicKey: v.publicKey, podCIDRs: v.podCIDRs, bootId: v.bootId };
}

/** The same decode without the compaction (endpointCheckCodec says why). */
export const nodeCheckCodec: Codec<NodeRecord> = nodeJson;

export const nodeCodec: Codec<NodeRecord> = { ...nodeJson, decode: (key, value) => compactNode(nodeJson.decode(key, value)) };
