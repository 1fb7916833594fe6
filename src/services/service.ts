/**
 * Services as the data path sees them: the v1 Service manifests stored by
 * `wiremesh apply` (one per cluster that defines the service), merged by
 * namespace/name into one view per service, and the backend choice by
 * affinity. Pure functions: the agent (datapath.ts) feeds them etcd state and
 * liveness, the unit tests feed them literals.
 *
 * Semantics follow Cilium's global services:
 *  - A service is global when its local definition says service.cilium.io/global: "true".
 *    Its backends are the local endpoints matching its selector plus the
 *    endpoints of every other cluster whose definition of the same
 *    namespace/name is global and shared (service.cilium.io/shared, default
 *    true); shared: "false" keeps a cluster's backends to itself while it
 *    still uses the others'.
 *  - Affinity (service.cilium.io/affinity): local = local backends while any
 *    is healthy, else remote; remote = the reverse; none = all; nearest
 *    (wiremesh) = the healthy cluster with the lowest measured round-trip time.
 *  - wiremesh.io/weight (1..1000, default 1): the Maglev weight of every
 *    backend this cluster's definition exports.
 *  - Frontends: the local definition's cluster IP and ports. A port of a
 *    remote definition matches by name (or by number when unnamed); its
 *    targetPort is that cluster's backend port.
 */
import { ConfigError } from '../errors.js';
import type { EndpointRecord } from '../controlplane/types.js';
import { AFFINITY_ANNOTATION, GLOBAL_ANNOTATION, SHARED_ANNOTATION, validateManifest, type Manifest } from '../manifests/validate.js';

export const WEIGHT_ANNOTATION = 'wiremesh.io/weight';
export type Affinity = 'none' | 'local' | 'remote' | 'nearest';
export type Protocol = 'TCP' | 'UDP';

export interface ServicePort {
  name: string;
  port: number;
  /** Backend port (targetPort, else port). */
  targetPort: number;
  protocol: Protocol;
}

/** One cluster's definition of a service. */
export interface ClusterService {
  cluster: string;
  namespace: string;
  name: string;
  vip?: string;
  ports: ServicePort[];
  selector?: Record<string, string>;
  global: boolean;
  shared: boolean;
  affinity: Affinity;
  weight: number;
}

/** Parses a Service manifest's JSON (tests; the agent gets manifests decoded by records/manifest.ts). */
export function parseServiceRecord(cluster: string, json: string): ClusterService {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    throw new ConfigError('service', 'not valid JSON');
  }
  return serviceFromManifest(cluster, validateManifest(doc));
}

/** One cluster's definition of a service from its validated manifest. */
export function serviceFromManifest(cluster: string, m: Manifest): ClusterService {
  if (m.kind !== 'Service') throw new ConfigError('kind', 'must be Service');
  const spec = m.spec as { clusterIP?: string; selector?: Record<string, string>; ports: Array<{ name?: string; port: number; targetPort?: number; protocol?: string }> };
  const ann = m.metadata.annotations ?? {};
  const global = ann[GLOBAL_ANNOTATION] === 'true';
  const weight = ann[WEIGHT_ANNOTATION] === undefined ? 1 : Number(ann[WEIGHT_ANNOTATION]);
  return {
    cluster,
    namespace: m.metadata.namespace!,
    name: m.metadata.name,
    ...(spec.clusterIP && spec.clusterIP !== 'None' ? { vip: spec.clusterIP } : {}),
    ports: spec.ports.map((p) => ({ name: p.name ?? '', port: p.port, targetPort: p.targetPort ?? p.port, protocol: (p.protocol ?? 'TCP') as Protocol })),
    ...(spec.selector ? { selector: spec.selector } : {}),
    global,
    shared: global && ann[SHARED_ANNOTATION] !== 'false',
    affinity: (ann[AFFINITY_ANNOTATION]?.toLowerCase() ?? 'none') as Affinity,
    weight,
  };
}

export interface Backend {
  cluster: string;
  node: string;
  /** namespace/name of the pod. */
  pod: string;
  ip: string;
  port: number;
  weight: number;
}

/** One frontend port of a service with every candidate backend. */
export interface ServicePortView {
  key: string; // namespace/name/portName|port
  service: ClusterService; // the local definition
  port: ServicePort;
  backends: Backend[];
}

function portMatches(a: ServicePort, b: ServicePort, single: boolean): boolean {
  if (a.protocol !== b.protocol) return false;
  return a.name !== '' || !single ? a.name === b.name : a.port === b.port;
}

/** The fields of an endpoint that services read (an EndpointRecord has them). */
export type ServiceEndpoint = Pick<EndpointRecord, 'cluster' | 'node' | 'namespace' | 'name' | 'ip' | 'labels'>;

/** Whether a definition's selector picks the endpoint (its namespace, every selector label equal). */
export function selects(selector: Record<string, string> | undefined, ep: ServiceEndpoint, namespace: string): boolean {
  if (!selector || ep.namespace !== namespace) return false;
  // (read per member on every recompute of a service: its keys once, no entry pairs)
  const keys = Object.keys(selector);
  for (const k of keys) if (ep.labels[k] !== selector[k]) return false;
  return keys.length > 0; // no selector: no managed backends (Kubernetes)
}

/** Endpoints by "cluster/namespace": built once per recompute, so matching is not services x endpoints. */
export type EndpointIndex = Map<string, EndpointRecord[]>;

export function indexEndpoints(endpoints: Iterable<EndpointRecord>): EndpointIndex {
  const idx: EndpointIndex = new Map();
  for (const e of endpoints) {
    const k = `${e.cluster}/${e.namespace}`;
    let l = idx.get(k);
    if (!l) idx.set(k, (l = []));
    l.push(e);
  }
  return idx;
}

/**
 * The ports of the local definition of a service with their candidate
 * backends from every contributing cluster. defs: every cluster's
 * definition of this namespace/name; endpoints: all known endpoints.
 */
export function servicePorts(localCluster: string, defs: ClusterService[], endpoints: EndpointIndex | Iterable<EndpointRecord>): ServicePortView[] {
  const idx = endpoints instanceof Map ? endpoints : indexEndpoints(endpoints);
  return portViews(localCluster, defs, (def) => (idx.get(`${def.cluster}/${def.namespace}`) ?? []).filter((ep) => selects(def.selector, ep, def.namespace)));
}

/** Backend order in a port's list (and so in the Maglev input): address, port, then who it is, so ties do not depend on arrival order. */
function backendOrder(a: Backend, b: Backend): number {
  if (a.ip !== b.ip) return a.ip < b.ip ? -1 : 1;
  if (a.port !== b.port) return a.port - b.port;
  const x = `${a.cluster}/${a.node}/${a.pod}`;
  const y = `${b.cluster}/${b.node}/${b.pod}`;
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The definitions a service's backends come from (defs: every cluster's definition of it): with a definition of
 * the local cluster, the local cluster's and, when the first of them is global, the other clusters' shared ones;
 * none without one (the service is not served here). In defs' order.
 */
export function contributingDefinitions(localCluster: string, defs: readonly ClusterService[]): ClusterService[] {
  const local = localDefinition(localCluster, defs);
  return local ? defs.filter((d) => d.cluster === localCluster || (local.global && d.shared)) : [];
}

/** The local definition a service is served by (defs: every cluster's definition of it): its VIP, ports and flags; DNS answers with it. */
export const localDefinition = (localCluster: string, defs: readonly ClusterService[]): ClusterService | undefined => defs.find((d) => d.cluster === localCluster);

/**
 * servicePorts over pre-matched endpoints: members(def) yields the endpoints
 * def's selector picks in its cluster and namespace (selects() true), e.g.
 * from an index maintained per change (endpoints.ts).
 */
export function portViews(localCluster: string, defs: ClusterService[], members: (def: ClusterService) => Iterable<ServiceEndpoint>): ServicePortView[] {
  const local = localDefinition(localCluster, defs);
  if (!local) return [];
  const contributing = contributingDefinitions(localCluster, defs);
  // backends of the VIP's address family only (a pod has one record per address)
  const v6 = local.vip?.includes(':');
  return local.ports.map((port) => {
    const backends: Backend[] = [];
    for (const def of contributing) {
      const theirs = def.ports.find((p) => portMatches(p, port, local.ports.length === 1 && def.ports.length === 1));
      if (!theirs) continue;
      for (const ep of members(def)) {
        if (local.vip !== undefined && ep.ip.includes(':') !== v6) continue;
        backends.push({ cluster: def.cluster, node: ep.node, pod: `${ep.namespace}/${ep.name}`, ip: ep.ip, port: theirs.targetPort, weight: def.weight });
      }
    }
    backends.sort(backendOrder);
    return { key: `${local.namespace}/${local.name}/${port.name || port.port}`, service: local, port, backends };
  });
}

export interface Selection {
  /** Backends new flows may pick (weight > 0 in the Maglev table). */
  selected: Backend[];
  /** Healthy backends kept for their established flows but not picked (another tier is preferred). */
  standby: Backend[];
  /** For affinity nearest: the cluster chosen. */
  nearest?: string;
}

/**
 * Applies affinity to the healthy backends. rtt: measured round-trip time in
 * ms per cluster (the local cluster included); previousNearest: the cluster
 * chosen last time, kept unless another is clearly closer (20 % and 0.5 ms),
 * so nearest does not flap on noise.
 */
export function selectBackends(localCluster: string, affinity: Affinity, healthy: Backend[], rtt: Map<string, number>, previousNearest?: string): Selection {
  const local = healthy.filter((b) => b.cluster === localCluster);
  const remote = healthy.filter((b) => b.cluster !== localCluster);
  const tier = (preferred: Backend[], other: Backend[]): Selection => (preferred.length ? { selected: preferred, standby: other } : { selected: other, standby: [] });
  switch (affinity) {
    case 'local':
      return tier(local, remote);
    case 'remote':
      return tier(remote, local);
    case 'nearest': {
      const clusters = [...new Set(healthy.map((b) => b.cluster))];
      if (clusters.length === 0) return { selected: [], standby: [] };
      const r = (c: string): number => rtt.get(c) ?? (c === localCluster ? 0 : Number.POSITIVE_INFINITY);
      let best = clusters.reduce((a, b) => (r(b) < r(a) || (r(b) === r(a) && b < a) ? b : a));
      if (previousNearest && previousNearest !== best && clusters.includes(previousNearest)) {
        const keep = r(best) > r(previousNearest) * 0.8 || r(previousNearest) - r(best) < 0.5;
        if (keep) best = previousNearest;
      }
      return { selected: healthy.filter((b) => b.cluster === best), standby: healthy.filter((b) => b.cluster !== best), nearest: best };
    }
    default:
      return { selected: healthy, standby: [] };
  }
}
