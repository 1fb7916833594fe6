/**
 * Records stored in etcd (JSON values under the keys of keys.ts) and their
 * validation. Every validator names the field and the reason.
 */
import { ConfigError } from '../errors.js';
import { parseIP, parsePrefix, type Prefix } from '../net/ip.js';

export const CLUSTER_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

export interface NodeRecord {
  cluster: string;
  clusterId: number;
  name: string;
  /** Underlay addresses (IPv4 and/or IPv6) and the WireGuard port. */
  addresses: string[];
  port: number;
  publicKey: string; // base64
  podCIDRs: string[];
  /** ms since epoch when the agent (re)started: lets watchers see restarts. */
  bootId: string;
}

export interface EndpointRecord {
  ip: string;
  cluster: string;
  node: string;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** Security identity (src/identity); absent while it is being allocated. */
  identity?: number;
}

export interface ClusterConfig {
  name: string;
  id: number;
  podCIDRs: string[];
  /** Hub of a hub-and-spoke mesh: its nodes relay traffic between the clusters they reach. */
  relay?: boolean;
  /** Where `apply` allocates service VIPs (default 100.127.<id>.0/24); unique across the mesh. */
  serviceCIDR?: string;
}

/** An ingress gateway (agent `gateway` section): where it listens, for which services, in which region. */
export interface GatewayRecord {
  cluster: string;
  node: string;
  address: string;
  region?: string;
  listeners: Array<{ service: string; port: number; listenPort: number }>;
}

/** A hub node's offer to relay: the pod CIDRs of the remote clusters it reaches. */
export interface RelayRecord {
  cluster: string;
  node: string;
  podCIDRs: string[];
  /** Ids of the clusters behind those CIDRs: the hub's identity tags may carry them. */
  clusterIds?: number[];
}

export function validateClusterName(name: unknown, field = 'cluster.name'): string {
  if (typeof name !== 'string' || !CLUSTER_NAME_RE.test(name))
    throw new ConfigError(field, `"${String(name)}" must be 1-32 characters of lowercase letters, digits and "-", starting and ending with a letter or digit`);
  return name;
}

export function validateClusterId(id: unknown, field = 'cluster.id'): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > 255)
    throw new ConfigError(field, `${String(id)} must be an integer in 1..255`);
  return id;
}

export function validatePrefixes(v: unknown, field: string): Prefix[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw new ConfigError(field, 'at least one CIDR is required');
  return list.map((x, i) => {
    if (typeof x !== 'string') throw new ConfigError(`${field}[${i}]`, 'must be a CIDR string');
    const p = parsePrefix(x, `${field}[${i}]`);
    if (!x.includes('/')) throw new ConfigError(`${field}[${i}]`, `"${x}" needs a prefix length`);
    return p;
  });
}

export function prefixesOverlap(a: Prefix, b: Prefix): boolean {
  if (a.addr.length !== b.addr.length) return false;
  const cidr = Math.min(a.cidr, b.cidr);
  // overlapping = equal on the shorter prefix's bits
  for (let i = 0; i < cidr; i++) {
    const bit = 7 - (i & 7);
    if (((a.addr[i >> 3]! >> bit) & 1) !== ((b.addr[i >> 3]! >> bit) & 1)) return false;
  }
  return true;
}

export function validateAddress(v: unknown, field: string): string {
  if (typeof v !== 'string' || !parseIP(v)) throw new ConfigError(field, `"${String(v)}" is not an IP address`);
  return v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses a node record read from etcd; throws ConfigError naming the bad field. */
export function parseNodeRecord(json: string): NodeRecord {
  const v = JSON.parse(json) as unknown;
  if (!isObject(v)) throw new ConfigError('node', 'not an object');
  validateClusterName(v.cluster, 'node.cluster');
  validateClusterId(v.clusterId, 'node.clusterId');
  if (typeof v.name !== 'string' || !v.name) throw new ConfigError('node.name', 'missing');
  if (!Array.isArray(v.addresses) || v.addresses.length === 0) throw new ConfigError('node.addresses', 'missing');
  v.addresses.forEach((a, i) => validateAddress(a, `node.addresses[${i}]`));
  if (typeof v.port !== 'number' || v.port < 1 || v.port > 65535) throw new ConfigError('node.port', 'invalid');
  if (typeof v.publicKey !== 'string' || Buffer.from(v.publicKey, 'base64').length !== 32) throw new ConfigError('node.publicKey', 'not a base64 32-byte key');
  validatePrefixes(v.podCIDRs, 'node.podCIDRs');
  return v as unknown as NodeRecord;
}

export function parseEndpointRecord(json: string): EndpointRecord {
  const v = JSON.parse(json) as unknown;
  if (!isObject(v)) throw new ConfigError('endpoint', 'not an object');
  validateAddress(v.ip, 'endpoint.ip');
  for (const f of ['cluster', 'node', 'namespace', 'name'] as const)
    if (typeof v[f] !== 'string' || !v[f]) throw new ConfigError(`endpoint.${f}`, 'missing');
  if (!isObject(v.labels)) throw new ConfigError('endpoint.labels', 'must be a map of strings');
  if (v.identity !== undefined && (typeof v.identity !== 'number' || !Number.isInteger(v.identity) || v.identity < 256 || v.identity >= 1 << 24))
    throw new ConfigError('endpoint.identity', 'must be a cluster-scoped identity (256..16777215)');
  return v as unknown as EndpointRecord;
}
