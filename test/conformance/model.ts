/**
 * An independent NetworkPolicy evaluator: what networking.k8s.io/v1 says a
 * set of policies allows, written from the API reference (NetworkPolicySpec,
 * NetworkPolicyPeer, NetworkPolicyPort, IPBlock, LabelSelector) and the
 * upstream e2e model (kubernetes/kubernetes test/e2e/network/netpol), never
 * from this project's policy code: it imports nothing from src/, so the
 * conformance suite judges the data path and `policy trace` with an oracle
 * that cannot share their mistakes.
 *
 * The rules it encodes:
 * - a policy selects the pods of its own namespace (and of the cluster it is
 *   applied in) that its podSelector matches; {} matches every pod;
 * - policyTypes defaulting: an empty or absent list means ["Ingress"], plus
 *   "Egress" when spec.egress has at least one rule;
 * - a pod is isolated for ingress (egress) iff some policy selecting it has
 *   that type; an isolated pod accepts (sends) only what some rule of those
 *   policies allows; rules only add (a union; no order, no deny);
 * - traffic between two pods passes iff the source's egress allows it AND the
 *   destination's ingress allows it;
 * - a rule with no from/to allows every peer; with no ports every port and
 *   protocol; a peer is an ipBlock (cidr minus except, matched against pod
 *   addresses as the upstream suite expects) or pod/namespace selectors
 *   (podSelector alone: the policy's namespace; namespaceSelector alone:
 *   every pod of the matching namespaces; both: their intersection);
 * - ports: protocol defaults to TCP; no port means every port of that
 *   protocol; endPort makes a range; a named port matches the destination
 *   pod's container port of that name and protocol (for ingress the selected
 *   pod, for egress the peer), and matches nothing when it has none;
 * - namespaces carry kubernetes.io/metadata.name = their name;
 * - across clusters (Cilium Cluster Mesh, policy-default-local-cluster as the
 *   project documents it): selector peers match only pods of the cluster the
 *   policy is applied in; ipBlock matches addresses of any cluster.
 */

export type Labels = Record<string, string>;
export type Protocol = 'TCP' | 'UDP' | 'SCTP';

export interface SelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: SelectorRequirement[];
}

export interface PolicyPort {
  protocol?: Protocol;
  port?: number | string;
  endPort?: number;
}

export interface PolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

export interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes?: Array<'Ingress' | 'Egress'>;
  ingress?: Array<{ from?: PolicyPeer[]; ports?: PolicyPort[] }>;
  egress?: Array<{ to?: PolicyPeer[]; ports?: PolicyPort[] }>;
}

export interface NetworkPolicy {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'NetworkPolicy';
  metadata: { name: string; namespace: string };
  spec: NetworkPolicySpec;
}

export interface ContainerPort {
  name: string;
  containerPort: number;
  protocol: Protocol;
}

export interface ModelPod {
  cluster: string;
  namespace: string;
  name: string;
  labels: Labels;
  ip: string;
  node: string;
  ports: ContainerPort[];
}

export interface ModelNamespace {
  cluster: string;
  name: string;
  /** Labels as written; kubernetes.io/metadata.name is added by the model. */
  labels: Labels;
}

/** A policy and the cluster it was applied in. */
export interface AppliedPolicy {
  cluster: string;
  policy: NetworkPolicy;
}

export interface World {
  namespaces: ModelNamespace[];
  pods: ModelPod[];
  policies: AppliedPolicy[];
}

export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export function selectorMatches(s: LabelSelector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(s.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const r of s.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, r.key);
    const values = r.values ?? [];
    const ok =
      r.operator === 'In' ? has && values.includes(labels[r.key]!) :
      r.operator === 'NotIn' ? !has || !values.includes(labels[r.key]!) :
      r.operator === 'Exists' ? has :
      !has;
    if (!ok) return false;
  }
  return true;
}

/** The types a policy has after the API server's defaulting. */
export function policyTypes(spec: NetworkPolicySpec): Array<'Ingress' | 'Egress'> {
  if (spec.policyTypes && spec.policyTypes.length > 0) return spec.policyTypes;
  return (spec.egress?.length ?? 0) > 0 ? ['Ingress', 'Egress'] : ['Ingress'];
}

function ipv4(text: string): number {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`model: not an IPv4 address: ${text}`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function cidrContains(cidr: string, ip: string): boolean {
  const [base, len] = cidr.split('/');
  const bits = Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new Error(`model: not an IPv4 CIDR: ${cidr}`);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return ((ipv4(base!) & mask) >>> 0) === ((ipv4(ip) & mask) >>> 0);
}

export function namespaceLabels(world: World, cluster: string, name: string): Labels {
  const ns = world.namespaces.find((n) => n.cluster === cluster && n.name === name);
  return { ...(ns?.labels ?? {}), [NAMESPACE_NAME_LABEL]: name };
}

function peerMatches(world: World, applied: AppliedPolicy, peer: PolicyPeer, pod: ModelPod): boolean {
  if (peer.ipBlock) return cidrContains(peer.ipBlock.cidr, pod.ip) && !(peer.ipBlock.except ?? []).some((e) => cidrContains(e, pod.ip));
  if (pod.cluster !== applied.cluster) return false; // selectors see the local cluster only
  if (peer.namespaceSelector === undefined) {
    if (pod.namespace !== applied.policy.metadata.namespace) return false;
  } else if (!selectorMatches(peer.namespaceSelector, namespaceLabels(world, pod.cluster, pod.namespace))) return false;
  return peer.podSelector === undefined || selectorMatches(peer.podSelector, pod.labels);
}

function portMatches(p: PolicyPort, protocol: Protocol, port: number, destination: ModelPod): boolean {
  if ((p.protocol ?? 'TCP') !== protocol) return false;
  if (p.port === undefined) return true;
  if (typeof p.port === 'string' && !/^\d+$/.test(p.port))
    return destination.ports.some((c) => c.name === p.port && c.protocol === protocol && c.containerPort === port);
  const lo = Number(p.port);
  return port >= lo && port <= (p.endPort ?? lo);
}

export function selects(applied: AppliedPolicy, pod: ModelPod): boolean {
  const { policy } = applied;
  return applied.cluster === pod.cluster && policy.metadata.namespace === pod.namespace && selectorMatches(policy.spec.podSelector, pod.labels);
}

/**
 * The verdict of one direction at `local` for traffic with `remote`:
 * 'not-isolated' when no policy of that type selects local, else 'allow' or 'deny'.
 */
export function directionVerdict(world: World, direction: 'ingress' | 'egress', local: ModelPod, remote: ModelPod, protocol: Protocol, port: number): 'not-isolated' | 'allow' | 'deny' {
  const type = direction === 'ingress' ? 'Ingress' : 'Egress';
  const selecting = world.policies.filter((a) => selects(a, local) && policyTypes(a.policy.spec).includes(type));
  if (selecting.length === 0) return 'not-isolated';
  const destination = direction === 'ingress' ? local : remote;
  for (const a of selecting) {
    const rules = direction === 'ingress' ? (a.policy.spec.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports })) : (a.policy.spec.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
    for (const r of rules) {
      const peerOk = !r.peers || r.peers.length === 0 || r.peers.some((p) => peerMatches(world, a, p, remote));
      const portOk = !r.ports || r.ports.length === 0 || r.ports.some((p) => portMatches(p, protocol, port, destination));
      if (peerOk && portOk) return 'allow';
    }
  }
  return 'deny';
}

/** Whether a new connection from `from` to `to` on protocol/port is allowed. */
export function allowed(world: World, from: ModelPod, to: ModelPod, protocol: Protocol, port: number): boolean {
  return directionVerdict(world, 'egress', from, to, protocol, port) !== 'deny' && directionVerdict(world, 'ingress', to, from, protocol, port) !== 'deny';
}
