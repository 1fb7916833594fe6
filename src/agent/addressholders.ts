/**
 * Who else holds a local endpoint's addresses (registration.ts addEndpoint): a pod
 * speaks only from addresses no other endpoint holds, unless it takes them over.
 */
import type { EndpointRecord } from '../controlplane/records/index.js';
import type { LocalEndpoint } from './endpoint.js';

/** One holder of an address: EndpointConflictError's `holders`. */
export type Holder = { ip: string; cluster: string; node: string; endpoint: string };

/**
 * The holders of any of `ips` other than the local endpoint `key` (namespace/name) of node `node` in `cluster`:
 * this node's other local endpoints, and the endpoint records (`records`, those naming any of `ips` or more) of other
 * nodes.
 */
export function addressHolders(ips: string[], key: string, at: { cluster: string; node: string }, local: Iterable<LocalEndpoint>, records: Iterable<EndpointRecord>): Holder[] {
  const out: Holder[] = [];
  const { cluster, node } = at;
  for (const other of local) {
    const k = `${other.namespace}/${other.name}`;
    if (k === key) continue;
    for (const ip of other.ips) if (ips.includes(ip)) out.push({ ip, cluster, node, endpoint: k });
  }
  for (const rec of records) {
    if (!ips.includes(rec.ip)) continue;
    if (rec.cluster === cluster && rec.node === node) continue; // ours: seen above
    out.push({ ip: rec.ip, cluster: rec.cluster, node: rec.node, endpoint: `${rec.namespace}/${rec.name}` });
  }
  return out;
}
