/**
 * Shared control-plane types. Configuration is validated by src/validate.ts;
 * records stored in etcd are decoded by their codecs in ./records/ (one module
 * per type); their types are re-exported here.
 */
import type { Prefix } from '../net/ip.js';

import { CLUSTER_NAME_RE } from './records/fields.js';

export { CLUSTER_NAME_RE };

export type { NodeRecord } from './records/node.js';
export type { EndpointRecord } from './records/endpoint.js';
export type { ClusterConfig } from './records/cluster.js';
export type { GatewayRecord } from './records/gateway.js';
export type { RelayRecord } from './records/relay.js';

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
