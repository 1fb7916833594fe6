/**
 * Validation helpers for configuration (node.yaml, CLI flags); every validator
 * names the field and the reason. Records stored in etcd are decoded by their
 * codecs in ./records/ (one module per type); their types are re-exported here.
 */
import { ConfigError } from '../errors.js';
import { parseIP, parsePrefix, type Prefix } from '../net/ip.js';

import { CLUSTER_NAME_RE } from './records/fields.js';

export { CLUSTER_NAME_RE };

export type { NodeRecord } from './records/node.js';
export type { EndpointRecord } from './records/endpoint.js';
export type { ClusterConfig } from './records/cluster.js';
export type { GatewayRecord } from './records/gateway.js';
export type { RelayRecord } from './records/relay.js';

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
