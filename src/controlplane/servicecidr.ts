/**
 * A cluster's service VIP range (`serviceCIDR`, records/cluster.ts) kept apart from the addresses it would shadow:
 * the node's load balancer answers a VIP before the packet is routed, so a pod or node address inside any
 * cluster's service range is unreachable at that address from that cluster's pods. Checked at `clustermesh enable`
 * (a cluster's own pod and underlay CIDRs) and at `connect` (each side's against the other's, and the two service
 * ranges against each other: VIPs are unique across the mesh).
 */
import { MeshError } from '../errors.js';
import { parseIP, parsePrefix, prefixContains, type Prefix } from '../net/ip.js';
import { vipKey } from './keys.js';
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

/**
 * A cluster's service range against a cluster it pinned (connect's pre-flight, and enable run again): apart from
 * the pin's pod and underlay CIDRs, and both ways from the pin's default service range. A pin carries no service
 * range: the pinned cluster's default one (100.127.<id>.0/24), which its VIPs come from unless it named another
 * (then this may refuse a range that was apart: fail closed). Throws MeshError WM_SERVICE_CIDR_OVERLAP.
 */
export function serviceClearOfPin(a: ServiceOf & CIDRsOf, pin: CIDRsOf & { id: number }): void {
  serviceClear(a, pin);
  const pinned = { name: pin.name, id: pin.id };
  servicesApart(a, pinned);
  serviceClear(pinned, a);
}

/**
 * The address a VIP claim's name (the key after keys.vipPrefix) holds: one address ("100.80.0.9", as apply keys
 * claims since spec.clusterIP is canonical), or a host prefix of one ("100.80.0.9/32", "fd00::9/128": claims
 * stored before that), else null (another prefix length, or not an address: the callers refuse it).
 */
export function claimedAddress(name: string): Buffer | null {
  const slash = name.indexOf('/');
  const addr = parseIP(slash < 0 ? name : name.slice(0, slash));
  if (!addr || (slash >= 0 && name.slice(slash + 1) !== String(addr.length * 8))) return null;
  return addr;
}

/**
 * Throws MeshError WM_SERVICE_CIDR_IN_USE when a VIP claimed in the cluster (`claims`: the claims' names,
 * claimedAddress) is not an address inside its service range, or is no address at all (fail closed; the message
 * names the claim's key): enable must not move the range from under Services holding VIPs, or those live VIPs
 * would escape connect's checks (which look at the range only).
 */
export function vipsInside(cfg: ServiceOf, claims: string[]): void {
  const range = serviceRange(cfg);
  const out = claims.find((v) => { const a = claimedAddress(v); return !range || !a || !prefixContains(range, a); });
  if (out !== undefined)
    throw new MeshError('WM_SERVICE_CIDR_IN_USE', `service CIDR ${serviceCIDR(cfg)} of ${cfg.name} does not hold VIP ${out}, claimed by a Service (${vipKey(cfg.name, out)}): delete or re-address the Services outside it first`);
}
