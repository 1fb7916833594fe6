/** Node records: state/nodes/v1/<cluster>/<node>, written by the node's agent under its lease. */
import { z } from 'zod';
import { jsonCodec, type Codec } from './codec.js';
import { internName } from './intern.js';
import { holdList, readList, type LoneList } from '../../lonelist.js';
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
 * A decoded node as the node codec gives it (issue 16: the agent holds one per node of every connected cluster,
 * 16,000 at 16 × 1000; the gateway's GSLB, `policy trace` and clustermesh decode with the same codec): a NodeRecord
 * whose `addresses` and `podCIDRs` of one element, nearly every node's, are held as that element, not a
 * one-element array (56 B each: 112 B per node, ~11 B per remote endpoint at 10 per node). Reading either gives an
 * array: a new one each time for a list of one element, the held array for any other.
 * What the record says is unchanged, read through its fields and JSON.stringify (toJSON: the literal the codec
 * decoded, fields in nodeSchema's order). Its own properties are not the literal's: they are `addrs` and `pods`,
 * and `addresses` and `podCIDRs` are getters on the prototype, so a spread (`{...rec}`), structuredClone,
 * Object.keys or a test's toEqual does not see them. Copy a record with compactNode or through JSON; compare one
 * with a literal through toJSON. Readers compare records by `===`, then by their JSON text (the reconciler,
 * peers.ts), never by their arrays' identity, and change no array they read (a held one is the record's, frozen).
 * The cluster and node names are the engine's one copy (intern.ts): its endpoints' records name the same node.
 */
export class HeldNode implements NodeRecord {
  /** `addresses` as held (lonelist.ts): its one element, or the array of any other length, frozen. */
  private readonly addrs: LoneList;
  /** `podCIDRs` as held (lonelist.ts): its one element, or the array of any other length, frozen. */
  private readonly pods: LoneList;

  constructor(
    readonly cluster: string,
    readonly clusterId: number,
    readonly name: string,
    addresses: string[],
    readonly port: number,
    readonly publicKey: string,
    podCIDRs: string[],
    readonly bootId: string,
  ) {
    // an array held is frozen: NodeRecord's arrays are mutable by type (zod's), and a held one is read by every
    // reader and shared as a peer's roaming set, so a write to it would change the admitted record in place, past
    // admission; it throws instead (strict mode)
    this.addrs = holdList(Object.freeze(addresses));
    this.pods = holdList(Object.freeze(podCIDRs));
  }

  // (NodeRecord's type: the arrays read are mutable by type, frozen in fact)
  get addresses(): string[] {
    return readList(this.addrs) as string[];
  }

  get podCIDRs(): string[] {
    return readList(this.pods) as string[];
  }

  /**
   * The record as the plain literal the codec decoded: what JSON.stringify writes (the reconciler's comparison,
   * encode, `policy trace --json`). toEqual does not call it: compare with a literal through `held.toJSON()`.
   */
  toJSON(): NodeRecord {
    return { cluster: this.cluster, clusterId: this.clusterId, name: this.name, addresses: this.addresses, port: this.port, publicKey: this.publicKey, podCIDRs: this.podCIDRs, bootId: this.bootId };
  }
}

/** `v` as the agent holds it (HeldNode): its `addresses` and `podCIDRs` arrays become the record's, frozen. */
export function compactNode(v: NodeRecord): NodeRecord {
  return new HeldNode(internName(v.cluster), v.clusterId, internName(v.name), v.addresses, v.port, v.publicKey, v.podCIDRs, v.bootId);
}

/** The same decode without the compaction (endpointCheckCodec says why). */
export const nodeCheckCodec: Codec<NodeRecord> = nodeJson;

export const nodeCodec: Codec<NodeRecord> = { ...nodeJson, decode: (key, value) => compactNode(nodeJson.decode(key, value)) };
