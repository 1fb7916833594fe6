/**
 * `wiremesh policy trace`: what the data path would decide for a new flow
 * from --src to --dst, and which rule decides it. It reads one cluster's etcd
 * (its own state and the cache of every connected cluster, policies included)
 * and runs the agent's own compiler and the TypeScript twin of the native
 * lookup on it: egress at the source's node, then ingress at the
 * destination's node.
 */
import type { Etcd3 } from 'etcd3';
import { cachePrefix, clusterConfigPrefix, pinnedPrefix, statePrefix, type StateType } from '../controlplane/keys.js';
import {
  clusterConfigCodec,
  endpointCodec,
  identityCodec,
  namespaceCodec,
  nodeCodec,
  pinnedClusterCodec,
  policyCodec,
  Rejections,
  stateLocation,
  tryDecode,
  Trust,
  type Codec,
  type EndpointRecord,
  type NodeRecord,
} from '../controlplane/records/index.js';
import { Admission } from '../agent/admission.js';
import { AgentError } from '../errors.js';
import { describeIdentity, endpointIdentityLabels, RESERVED, type Labels } from '../identity/identity.js';
import type { Manifest } from '../manifests/validate.js';
import { parseIP, prefixContains } from '../net/ip.js';
import { compileEndpoint, evaluate, IdentityUniverse, ruleWarnings, type Verdict } from './compile.js';
import { enforcedRules, rulePrefixes, type StoredPolicy } from './repository.js';
import { PROTOCOLS, type Direction, type Rule } from './rules.js';

export interface MeshState {
  endpoints: EndpointRecord[];
  identities: Map<number, Labels>;
  policies: StoredPolicy[];
  nodes: NodeRecord[];
  /** The cluster whose etcd this is, and which remotes' mesh-wide policies it accepts. */
  cluster?: string;
  acceptsPoliciesOf?: (cluster: string) => boolean;
  /** Records refused as an agent of that cluster refuses them. */
  rejected?: string[];
  /** Namespaces with a v1 Namespace object, by cluster (their labels are in the identities already). */
  namespaces?: Map<string, Set<string>>;
  /** The per-node endpoint bound admission assumed (the agents' admission.maxEndpointsPerNode), and how many it held back. */
  endpointBound?: { max: number; heldBack: number };
}

/**
 * One cluster's view, as its agents have it: every record decoded by its
 * codec and admitted by the agents' own Admission against what this cluster
 * pinned (so trace explains what the data path does, refusals included). No own node is given (`self`): on a
 * conflict with one agent's own node, that agent's view can differ (docs/policy.md).
 * `maxEndpointsPerNode`: the agents' admission.maxEndpointsPerNode (etcd does not hold agent config; by default
 * the agents' default); the state says which it assumed.
 */
export async function loadMeshState(etcd: Etcd3, opts: { maxEndpointsPerNode?: number } = {}): Promise<MeshState> {
  const st: MeshState = { endpoints: [], identities: new Map(), policies: [], nodes: [], rejected: [] };
  const read = async <T>(type: StateType, codec: Codec<T>, each: (key: string, cluster: string, name: string, v: T) => void) => {
    for (const prefix of [statePrefix(type), cachePrefix(type)])
      for (const [key, raw] of Object.entries(await etcd.getAll().prefix(prefix).strings())) {
        const loc = stateLocation(type, key);
        const r = tryDecode(codec, key, raw);
        if (!loc) continue;
        if (r.ok) each(key, loc.cluster, loc.name, r.value);
        else st.rejected!.push(r.error.message);
      }
  };
  const configs = Object.entries(await etcd.getAll().prefix(clusterConfigPrefix()).strings()).map(([k, v]) => tryDecode(clusterConfigCodec, k, v));
  const own = configs.length === 1 && configs[0]!.ok ? configs[0]!.value : undefined;
  const trust = own ? new Trust(own.name, own.id, own.podCIDRs, own.maxConnectedClusters ?? 255) : undefined;
  if (trust) {
    trust.setLocalUnderlay(own!.underlayCIDRs);
    st.cluster = own!.name;
    for (const [k, v] of Object.entries(await etcd.getAll().prefix(pinnedPrefix()).strings())) {
      const r = tryDecode(pinnedClusterCodec, k, v);
      if (r.ok) trust.pin(r.value);
    }
    st.acceptsPoliciesOf = (c) => trust.enforcesPoliciesOf(c);
  }
  const rejections = new Rejections();
  const nodes = new Map<string, NodeRecord>();
  const endpoints = new Map<string, EndpointRecord>();
  const admission = trust
    ? new Admission(trust, rejections, {
        node: (k, r) => (r ? nodes.set(k, r) : nodes.delete(k)),
        endpoint: (k, r) => (r ? endpoints.set(k, r) : endpoints.delete(k)),
        identity: (_k, r) => r && st.identities.set(r.id, r.labels),
        relay: () => undefined,
      }, undefined, opts.maxEndpointsPerNode)
    : undefined;
  // without a cluster-config (not enabled yet) records are shown as stored
  await read('nodes', nodeCodec, (k, c, _n, v) => (admission ? admission.upsert('node', k, c, v) : nodes.set(k, v)));
  await read('ip', endpointCodec, (k, c, _n, v) => (admission ? admission.upsert('endpoint', k, c, v) : endpoints.set(k, v)));
  await read('identities', identityCodec, (k, c, _n, v) => (admission ? admission.upsert('identity', k, c, v) : st.identities.set(v.id, v.labels)));
  await read('policies', policyCodec, (_k, cluster, name, manifest) => st.policies.push({ cluster, name, manifest }));
  st.namespaces = new Map();
  await read('namespaces', namespaceCodec, (_k, cluster, name) => {
    let set = st.namespaces!.get(cluster);
    if (!set) st.namespaces!.set(cluster, (set = new Set()));
    set.add(name);
  });
  st.nodes = [...nodes.values()];
  st.endpoints = [...endpoints.values()];
  if (admission) {
    const q = admission.quota.status();
    st.endpointBound = { max: q.maxEndpointsPerNode, heldBack: Object.values(q.heldBack).reduce((a, b) => a + b, 0) };
  }
  for (const e of rejections.recent) st.rejected!.push(`${e.type} ${e.key}: ${e.reason}: ${e.detail}`);
  return st;
}

export interface TraceEndpoint {
  spec: string;
  ip: string;
  endpoint?: EndpointRecord;
  node?: NodeRecord;
}

export interface TraceStep {
  direction: Direction;
  /** Where the check runs. */
  at: string;
  endpoint: string;
  selectedBy: Array<{ id: string; text: string }>;
  remoteIdentity: number;
  remote: string;
  verdict: Verdict['verdict'];
  rule?: { id: string; text: string };
}

export interface TraceResult {
  src: TraceEndpoint;
  dst: TraceEndpoint;
  protocol: string;
  dport: number;
  steps: TraceStep[];
  verdict: 'ALLOWED' | 'DENIED';
  warnings: string[];
}

/** CLUSTER/NS/POD, NS/POD or POD (in `cluster`, namespace default), or an IP address. */
export function resolveEndpoint(st: MeshState, spec: string, cluster: string): TraceEndpoint {
  if (parseIP(spec)) {
    const endpoint = st.endpoints.find((e) => e.ip === spec);
    const node = st.nodes.find((n) => n.addresses.includes(spec));
    return { spec, ip: spec, endpoint, node };
  }
  const parts = spec.split('/');
  const [c, ns, name] = parts.length === 3 ? parts : parts.length === 2 ? [cluster, parts[0], parts[1]] : [cluster, 'default', parts[0]];
  const matches = st.endpoints.filter((e) => e.cluster === c && e.namespace === ns && e.name === name);
  if (matches.length === 0) throw new AgentError('WM_TRACE_UNKNOWN', `no endpoint ${c}/${ns}/${name} (give CLUSTER/NAMESPACE/POD or an IP address)`);
  const v4 = matches.find((e) => !e.ip.includes(':')) ?? matches[0]!;
  return { spec, ip: v4.ip, endpoint: v4 };
}

export function trace(st: MeshState, src: TraceEndpoint, dst: TraceEndpoint, protocol: string, dport: number, defaultLocalCluster = true): TraceResult {
  const proto = PROTOCOLS[protocol.toUpperCase() === 'ICMPV6' ? 'ICMPv6' : protocol.toUpperCase()];
  if (proto === undefined || proto === 0) throw new AgentError('WM_TRACE_PROTOCOL', `unknown protocol ${protocol} (TCP, UDP, SCTP, ICMP, ICMPv6)`);
  const hasPorts = proto === 6 || proto === 17 || proto === 132;
  const warnings: string[] = [];
  const steps: TraceStep[] = [];
  const side = (direction: Direction, local: TraceEndpoint, remote: TraceEndpoint): TraceStep | null => {
    const ep = local.endpoint;
    if (!ep || ep.identity === undefined) return null;
    // a remote's mesh-wide policies count where that cluster accepted them: known for the cluster whose etcd this is
    const accepts = ep.cluster === st.cluster ? st.acceptsPoliciesOf : (c: string) => c === ep.cluster;
    const { rules, u } = clusterRules(st, ep.cluster, defaultLocalCluster, warnings, accepts);
    const remoteId = remoteIdentity(remote, local, u);
    const byNumber = new Map<number, Rule>();
    const labels = st.identities.get(ep.identity) ?? endpointIdentityLabels(ep.labels, ep.namespace, ep.cluster);
    const pol = compileEndpoint(
      labels,
      rules,
      u,
      (r) => {
        const n = rules.indexOf(r) + 1;
        byNumber.set(n, r);
        return n;
      },
      ep.ports ?? [],
    );
    const v = evaluate(pol[direction], remoteId, proto, dport, hasPorts);
    const rule = v.entry && v.entry.rule ? byNumber.get(v.entry.rule) : undefined;
    return {
      direction,
      at: `${ep.cluster}/${ep.node}`,
      endpoint: `${ep.cluster}/${ep.namespace}/${ep.name}`,
      selectedBy: pol.selectedBy[direction].map((r) => ({ id: r.id, text: r.text })),
      remoteIdentity: remoteId,
      remote: remoteText(remote, remoteId, u),
      verdict: v.verdict,
      ...(rule ? { rule: { id: rule.id, text: rule.text } } : {}),
    };
  };
  for (const s of [side('egress', src, dst), side('ingress', dst, src)]) if (s) steps.push(s);
  const denied = steps.some((s) => s.verdict === 'deny' || s.verdict === 'default-deny');
  // which endpoints are in the mesh depends on the bound: an agent with another one admits others
  if (st.endpointBound?.heldBack)
    warnings.push(`${st.endpointBound.heldBack} endpoint(s) held back at the per-node bound ${st.endpointBound.max} trace assumed (--max-endpoints-per-node; the agents' admission.maxEndpointsPerNode)`);
  return { src, dst, protocol: protocol.toUpperCase(), dport, steps, verdict: denied ? 'DENIED' : 'ALLOWED', warnings: [...new Set(warnings)] };
}

/**
 * The rules `cluster` enforces and the universe they compile against, as its
 * agents build them (CIDR identities, endpoint addresses and ports, declared
 * namespaces); warnings collect what is not enforced or cannot be resolved.
 */
export function clusterRules(st: MeshState, cluster: string, defaultLocalCluster: boolean, warnings: string[], accepts?: (c: string) => boolean): { rules: Rule[]; u: IdentityUniverse } {
  const rules = enforcedRules(st.policies, cluster, defaultLocalCluster, warnings, accepts);
  const u = new IdentityUniverse(cluster);
  for (const [id, labels] of st.identities) u.identities.set(id, labels);
  for (const [text, prefix] of rulePrefixes(rules)) u.cidrIdentity(text, prefix);
  // the endpoints' addresses and ports, as the agent has them (named ports, NetworkPolicy ipBlocks)
  for (const e of st.endpoints) if (e.identity !== undefined) u.setEndpoint(`${e.cluster}/${e.node}/${e.ip}`, { identity: e.identity, ip: e.ip, ports: e.ports ?? [] });
  for (const n of st.namespaces?.get(cluster) ?? []) u.namespaces.add(n);
  warnings.push(...ruleWarnings(rules, u));
  return { rules, u };
}

/** The identity the data path sees for `remote` at `local`'s node. */
function remoteIdentity(remote: TraceEndpoint, local: TraceEndpoint, u: IdentityUniverse): number {
  if (remote.endpoint?.identity !== undefined) return remote.endpoint.identity;
  if (remote.node) return remote.node.cluster === local.endpoint?.cluster && remote.node.name === local.endpoint?.node ? RESERVED.host : RESERVED['remote-node'];
  const addr = parseIP(remote.ip);
  let best: { id: number; cidr: number } | undefined;
  if (addr) for (const c of u.cidrs.values()) if (prefixContains(c.prefix, addr) && (!best || c.prefix.cidr > best.cidr)) best = { id: c.id, cidr: c.prefix.cidr };
  return best?.id ?? RESERVED.world;
}

function remoteText(remote: TraceEndpoint, id: number, u: IdentityUniverse): string {
  if (remote.endpoint) return `${remote.endpoint.cluster}/${remote.endpoint.namespace}/${remote.endpoint.name} (identity ${id}: ${describeIdentity(id, u.identities.get(id))})`;
  const cidr = [...u.cidrs.entries()].find(([, c]) => c.id === id);
  return `${remote.ip} (identity ${id}: ${cidr ? `cidr:${cidr[0]}` : describeIdentity(id, undefined)})`;
}

export function formatTrace(t: TraceResult): string {
  const out: string[] = [`${t.src.spec} (${t.src.ip}) -> ${t.dst.spec} (${t.dst.ip}) ${t.protocol}${t.dport ? `/${t.dport}` : ''}`];
  if (t.steps.length === 0) out.push('  neither side is a mesh endpoint: no policy applies');
  for (const s of t.steps) {
    out.push(`  ${s.direction} at ${s.at} for ${s.endpoint}, ${s.direction === 'egress' ? 'to' : 'from'} ${s.remote}:`);
    if (s.selectedBy.length === 0) out.push('    no policy selects this endpoint in this direction: not enforced, allowed');
    else {
      out.push(`    selected by ${s.selectedBy.length} rule(s): ${s.selectedBy.map((r) => r.id).join(', ')}`);
      if (s.verdict === 'allow') out.push(`    ALLOWED by ${s.rule?.id ?? 'a policy with enableDefaultDeny: false'}${s.rule ? `: ${s.rule.text}` : ''}`);
      else if (s.verdict === 'proxy') out.push(`    TO THE L7 PROXY by ${s.rule!.id}: ${s.rule!.text} (each HTTP request is checked there)`);
      else if (s.verdict === 'deny') out.push(`    DENIED by ${s.rule!.id}: ${s.rule!.text}`);
      else out.push('    DENIED by default: the endpoint is selected and no rule allows this');
    }
  }
  for (const w of t.warnings) out.push(`  note: ${w}`);
  out.push(`Final verdict: ${t.verdict}`);
  return out.join('\n');
}
