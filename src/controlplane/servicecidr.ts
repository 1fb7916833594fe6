/**
 * A cluster's service VIP range (`serviceCIDR`, records/cluster.ts) kept apart from the addresses it would shadow:
 * the node's load balancer answers a VIP before the packet is routed, so a pod or node address inside any
 * cluster's service range is unreachable at that address from that cluster's pods. Checked at `clustermesh enable`
 * (a cluster's own pod and underlay CIDRs) and at `connect` (each side's against the other's, and the two service
 * ranges against each other: VIPs are unique across the mesh).
 */
import { MeshError } from '../errors.js';
import { parsePrefix, type Prefix } from '../net/ip.js';
import { prefixesOverlap } from './types.js';
import type { ClusterConfig } from './records/cluster.js';

type CIDRsOf = Pick<ClusterConfig, 'name' | 'podCIDRs' | 'underlayCIDRs'>;
type ServiceOf = Pick<ClusterConfig, 'name' | 'id' | 'serviceCIDR'>;

/** The range VIPs are allocated from: the cluster's serviceCIDR, else 100.127.<id>.0/24 (docs/etcd-keys.md). */
export function serviceCIDR(cfg: { id: number; serviceCIDR?: string }): string {
  return cfg.serviceCIDR ?? `100.127.${cfg.id}.0/24`;
}

/** The service range as a prefix; undefined for a default that is no address (an id above 255 without serviceCIDR). */
function serviceRange(cfg: ServiceOf): Prefix | undefined {
  try {
    return parsePrefix(serviceCIDR(cfg));
  } catch {
    return undefined;
  }
}

const overlap = (a: ServiceOf, what: string, b: string, c: string, why: string) =>
  new MeshError('WM_SERVICE_CIDR_OVERLAP', `service CIDR ${serviceCIDR(a)} of ${a.name} overlaps ${what} ${c} of ${b}: ${why}`);

/**
 * Throws MeshError WM_SERVICE_CIDR_OVERLAP when a's service range overlaps b's pod or underlay CIDRs (b: a
 * cluster, a pinned one, or a itself).
 */
export function serviceClear(a: ServiceOf, b: CIDRsOf): void {
  const range = serviceRange(a);
  if (!range) return;
  const hit = (list: string[] | undefined) => list?.find((c) => prefixesOverlap(range, parsePrefix(c)));
  const pod = hit(b.podCIDRs);
  if (pod) throw overlap(a, 'pod CIDR', b.name, pod, 'those pods would be unreachable at their addresses (the VIPs answer first)');
  const under = hit(b.underlayCIDRs);
  if (under) throw overlap(a, 'underlay CIDR', b.name, under, 'those nodes would be unreachable at their addresses (the VIPs answer first)');
}

/** Throws MeshError WM_SERVICE_CIDR_OVERLAP when two clusters' service ranges overlap (VIPs are unique in a mesh). */
export function servicesApart(a: ServiceOf, b: ServiceOf): void {
  const [ra, rb] = [serviceRange(a), serviceRange(b)];
  if (ra && rb && prefixesOverlap(ra, rb)) throw overlap(a, 'service CIDR', b.name, serviceCIDR(b), 'VIPs are unique across the mesh');
}
