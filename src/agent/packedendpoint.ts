/**
 * An admitted endpoint record as admission's table keeps it (issue 16; endpointstore.ts): the common record (an
 * IPv4 address in its canonical text, its cluster and node the ones its key names) as five fields, the address a
 * number and the cluster and node left to the node id the table files it under, and a sixth for named ports when
 * it has them. A record is an object of 6–8 fields (72–88 B) and its address a string (32 B); this is 64 B (72 B
 * with ports).
 *
 * `unpack` gives back a record equal to the one packed, field by field and in compactEndpoint's order and shape
 * (records/endpoint.ts), but a new object each time: readers compare records by content (shallowSame), not `===`.
 */
import { recordNodeId, type EndpointRecord } from '../controlplane/endpointrecords.js';
import { formatIPv4Value, ipv4HostValue } from '../net/ip.js';

export class PackedEndpoint {
  constructor(
    /** The address as a signed 32-bit number (a Smi on 64-bit V8, where an unsigned one above 2^31 is a heap number). */
    readonly ip: number,
    readonly namespace: string,
    readonly name: string,
    readonly labels: EndpointRecord['labels'],
    /** The identity, or -1 when the record has none. */
    readonly identity: number,
  ) {}
}

/** One with named container ports (a class of its own: a record without them does not carry the field). */
class PackedEndpointPorts extends PackedEndpoint {
  constructor(ip: number, namespace: string, name: string, labels: EndpointRecord['labels'], identity: number, readonly ports: NonNullable<EndpointRecord['ports']>) {
    super(ip, namespace, name, labels, identity);
  }
}

/** A packed record of these fields (ports undefined: a record without them), as packEndpoint makes it. */
export function packedOf(ip: number, namespace: string, name: string, labels: EndpointRecord['labels'], identity: number, ports: EndpointRecord['ports']): PackedEndpoint {
  return ports !== undefined ? new PackedEndpointPorts(ip, namespace, name, labels, identity, ports) : new PackedEndpoint(ip, namespace, name, labels, identity);
}

/** The codec's own key lists, in its order (compactEndpoint's literals): a record with any other is kept as it came. */
const SHAPES = new Set(['', 'identity', 'ports', 'identity,ports'].map((t) => ['ip', 'cluster', 'node', 'namespace', 'name', 'labels', ...(t ? t.split(',') : [])].join()));

/** `rec` packed for node id `nodeId` ("cluster/node"), or undefined when it is not of the common shape. */
export function packEndpoint(rec: EndpointRecord, nodeId: string): PackedEndpoint | undefined {
  if (nodeId !== recordNodeId(rec) || rec.cluster.includes('/')) return undefined;
  // only the codec's shape, keys in its order, a plain object: another (a caller's own object, a field unknown to
  // the schema, keys in another order, a class) would not read back as it was
  if (Object.getPrototypeOf(rec) !== Object.prototype || !SHAPES.has(Object.keys(rec).join())) return undefined;
  // a key present holds a value (identity present as undefined would read back absent)
  if (('identity' in rec && rec.identity === undefined) || ('ports' in rec && !Array.isArray(rec.ports))) return undefined;
  const v = ipv4HostValue(rec.ip);
  if (v === undefined || formatIPv4Value(v) !== rec.ip) return undefined;
  // -1 is "none" here: a record's own identity must be ≥ 0 (and -0 would read back as 0)
  const id = rec.identity ?? -1;
  if (rec.identity !== undefined && (!Number.isInteger(id) || id < 0 || id > 0x7fffffff || Object.is(id, -0))) return undefined;
  return packedOf(v | 0, rec.namespace, rec.name, rec.labels, id, rec.ports);
}

/** unpack's last node id and its two parts: a node's records read in a row split its id once. */
let lastId = '';
let lastCluster = '';
let lastNode = '';

/** The record `p` packs, filed under node id `nodeId`. */
export function unpackEndpoint(p: PackedEndpoint, nodeId: string): EndpointRecord {
  if (nodeId !== lastId) {
    const slash = nodeId.indexOf('/');
    // not interned: a record built here is read and dropped (a reader that keeps one keeps what it reads of it)
    lastCluster = nodeId.slice(0, slash);
    lastNode = nodeId.slice(slash + 1);
    lastId = nodeId;
  }
  const ip = formatIPv4Value(p.ip >>> 0), cluster = lastCluster, node = lastNode, namespace = p.namespace, name = p.name, labels = p.labels;
  // compactEndpoint's literals, one per shape
  if (p instanceof PackedEndpointPorts) {
    const ports = p.ports;
    return p.identity < 0 ? { ip, cluster, node, namespace, name, labels, ports } : { ip, cluster, node, namespace, name, labels, identity: p.identity, ports };
  }
  return p.identity < 0 ? { ip, cluster, node, namespace, name, labels } : { ip, cluster, node, namespace, name, labels, identity: p.identity };
}

/**
 * Whether two values are the same object or plain objects with the same own keys and the same values by `===` (the
 * parts decoding shares are one object each): what a record read back from the table is to the one it packed.
 */
export function shallowSame(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.prototype || Object.getPrototypeOf(b) !== Object.prototype) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && (a as Record<string, unknown>)[k] === (b as Record<string, unknown>)[k]);
}
