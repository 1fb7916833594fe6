/**
 * Stored policy manifests (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy,
 * NetworkPolicy; validated by src/manifests/validate.ts) turned into rules:
 * who the rule applies to (subject), in which direction, from or to whom
 * (peers), on which ports, allow or deny.
 *
 * Semantics follow Cilium's where users expect them:
 * - a CiliumNetworkPolicy's selectors match only its namespace unless they
 *   name io.kubernetes.pod.namespace; a clusterwide policy's match any;
 * - policy-default-local-cluster (on by default): a peer selector that does
 *   not name io.cilium.k8s.policy.cluster matches only the cluster enforcing
 *   the policy;
 * - a rule with peers and no ports allows every protocol; ports without peers
 *   allow from/to everyone; a rule with neither (`ingress: [{}]`) allows
 *   nothing but puts the selected endpoints in default deny;
 * - NetworkPolicy: an empty `from`/`to` means everyone, ports default to TCP,
 *   policyTypes default to Ingress, plus Egress when `egress` holds at least
 *   one rule (the API's defaulting: `egress: []` alone isolates nothing);
 *   namespaceSelector matches namespace labels (kubernetes.io/metadata.name
 *   and those of v1 Namespace objects); ipBlock also matches pod addresses
 *   (compile.ts) where CiliumNetworkPolicy CIDR rules match outside
 *   addresses only, as in Cilium;
 * - named ports resolve per pod (ports.ts, compile.ts); a part of a rule that
 *   cannot be resolved matches nothing and the rule still isolates what it
 *   selects (fail closed), with a warning (compile.ts ruleWarnings).
 * A policy annotated wiremesh.io/mesh-wide: "true" is enforced in every
 * connected cluster (kvstoremesh replicates it).
 */
import { CLUSTER_LABEL, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX } from '../identity/identity.js';
import type { Manifest } from '../manifests/validate.js';
import { parsePrefix, type Prefix } from '../net/ip.js';
import { compileSelector, describeSelector, normalizeKey, requireLabel, selectorMentions, type LabelSelector, type Selector } from './selector.js';

export const MESH_WIDE_ANNOTATION = 'wiremesh.io/mesh-wide';

export type Direction = 'ingress' | 'egress';

export type PeerSpec =
  | { kind: 'all' }
  | { kind: 'selector'; selector: Selector }
  | { kind: 'entity'; entity: string }
  /** endpoints: a NetworkPolicy ipBlock, which also matches mesh endpoints by address (compile.ts). */
  | { kind: 'cidr'; cidr: Prefix; text: string; except: Array<{ prefix: Prefix; text: string }>; endpoints?: boolean };

/** One `toPorts[].rules.http` entry; regular expressions match whole values (as Cilium's Go regexps, anchored). */
export interface HttpRule {
  method?: string;
  path?: string;
  host?: string;
  /** "Name" (present) or "Name: value" (equal), from headers and headerMatches. */
  headers?: Array<{ name: string; value?: string }>;
}

export interface PortSpec {
  proto: number; // 0 = any
  lo: number;
  hi: number;
  /** A named port: lo/hi are unused; it resolves per pod when compiled (ports.ts), to nothing if no pod declares it. */
  name?: string;
  /** L7: requests on this port go through the agent's proxy and must match one of these (ingress allow rules). */
  http?: HttpRule[];
}

export interface Rule {
  /** Stable text id: `<cluster>/<policy key>:<section>[<i>]`, e.g. `c1/default/cnp.web:ingress[0]`. */
  id: string;
  policy: string;
  direction: Direction;
  deny: boolean;
  subject: Selector;
  peers: PeerSpec[];
  ports: PortSpec[];
  /** false only when the policy says enableDefaultDeny: {<direction>: false}. */
  defaultDeny: boolean;
  /** What the rule says, for traces and flow records. */
  text: string;
}

export interface RuleOptions {
  /** The cluster enforcing the rules. */
  localCluster: string;
  /** Cilium's policy-default-local-cluster. */
  defaultLocalCluster: boolean;
}

export const PROTOCOLS: Record<string, number> = { ANY: 0, TCP: 6, UDP: 17, SCTP: 132, ICMP: 1, ICMPv6: 58 };
export const protocolName = (p: number): string => Object.keys(PROTOCOLS).find((k) => PROTOCOLS[k] === p) ?? String(p);

type Obj = Record<string, unknown>;

export function isMeshWide(m: Manifest): boolean {
  return m.metadata.annotations?.[MESH_WIDE_ANNOTATION] === 'true';
}

/** Rules of one stored policy. `key` is its name under the policies prefix; warnings collect what is not enforced. */
export function policyRules(m: Manifest, key: string, storedIn: string, opts: RuleOptions, warnings: string[] = []): Rule[] {
  const ns = m.metadata.namespace;
  const clusterwide = m.kind === 'CiliumClusterwideNetworkPolicy';
  const policy = `${storedIn}/${key}`;
  const out: Rule[] = [];
  const peerSelector = (s: Selector, namespaced: boolean): Selector => {
    let r = s;
    if (namespaced && ns && !selectorMentions(r, NAMESPACE_LABEL)) r = requireLabel(r, NAMESPACE_LABEL, ns);
    if (opts.defaultLocalCluster && !selectorMentions(r, CLUSTER_LABEL)) r = requireLabel(r, CLUSTER_LABEL, opts.localCluster);
    return r;
  };
  const subjectOf = (s: LabelSelector | undefined): Selector => {
    const sel = compileSelector(s);
    return !clusterwide && ns && !selectorMentions(sel, NAMESPACE_LABEL) ? requireLabel(sel, NAMESPACE_LABEL, ns) : sel;
  };

  if (m.kind === 'NetworkPolicy') {
    const spec = m.spec as Obj;
    const subject = subjectOf(spec.podSelector as LabelSelector);
    // the API's defaulting: Ingress always, Egress only when there is an egress rule. An empty
    // list is defaulted as an absent one (the API's defaulter checks len == 0): kept as given it
    // would isolate nothing, failing open.
    const given = spec.policyTypes as string[] | undefined;
    const types = given && given.length > 0 ? given : ['Ingress', ...(((spec.egress as unknown[] | undefined) ?? []).length > 0 ? ['Egress'] : [])];
    for (const [dir, section, peerField] of [['ingress', 'Ingress', 'from'], ['egress', 'Egress', 'to']] as const) {
      if (!types.includes(section)) continue;
      const rules = (spec[dir] as Obj[] | undefined) ?? [];
      // selected with no rules: default deny in this direction
      if (rules.length === 0) out.push({ id: `${policy}:${dir}`, policy, direction: dir, deny: false, subject, peers: [], ports: [], defaultDeny: true, text: `${dir}: deny all (no rules)` });
      rules.forEach((r, i) => {
        const peersIn = (r[peerField] as Obj[] | undefined) ?? [];
        const peers: PeerSpec[] = peersIn.length === 0 ? [{ kind: 'all' }] : peersIn.map((p) => networkPolicyPeer(p, peerSelector));
        const ports = ((r.ports as Obj[] | undefined) ?? []).map((p) => portSpec(PROTOCOLS[(p.protocol as string | undefined) ?? 'TCP']!, p.port, p.endPort));
        out.push(rule(policy, `${dir}[${i}]`, dir, false, subject, peers, ports, true));
      });
    }
    return out;
  }

  const specs = [...(m.spec ? [m.spec] : []), ...(m.specs ?? [])] as Obj[];
  specs.forEach((spec, si) => {
    const subject = subjectOf(spec.endpointSelector as LabelSelector | undefined);
    if (spec.endpointSelector === undefined) {
      warnings.push(`${policy}: nodeSelector (host policies) is not enforced`);
      return;
    }
    const dd = (spec.enableDefaultDeny as { ingress?: boolean; egress?: boolean } | undefined) ?? {};
    for (const [section, dir, deny] of [['ingress', 'ingress', false], ['ingressDeny', 'ingress', true], ['egress', 'egress', false], ['egressDeny', 'egress', true]] as const) {
      const rules = spec[section] as Obj[] | undefined;
      if (!rules) continue;
      const peerWord = dir === 'ingress' ? 'from' : 'to';
      rules.forEach((r, i) => {
        const where = `${specs.length > 1 ? `specs[${si}].` : ''}${section}[${i}]`;
        const peers: PeerSpec[] = [];
        for (const s of (r[`${peerWord}Endpoints`] as LabelSelector[] | undefined) ?? []) peers.push({ kind: 'selector', selector: peerSelector(compileSelector(s), !clusterwide) });
        for (const e of (r[`${peerWord}Entities`] as string[] | undefined) ?? []) peers.push(e === 'all' ? { kind: 'all' } : { kind: 'entity', entity: e });
        for (const c of (r[`${peerWord}CIDR`] as string[] | undefined) ?? []) peers.push(cidrPeer(c, []));
        for (const c of (r[`${peerWord}CIDRSet`] as Obj[] | undefined) ?? []) peers.push(cidrPeer(c.cidr as string, (c.except as string[] | undefined) ?? []));
        for (const f of [`${peerWord}Requires`, 'toFQDNs', 'toServices'])
          if (r[f] !== undefined) warnings.push(`${policy}:${where}: ${f} is not enforced; the rule allows nothing through it`);
        const ports: PortSpec[] = [];
        for (const pr of (r.toPorts as Obj[] | undefined) ?? []) {
          const http = ((pr.rules as Obj | undefined)?.http as Obj[] | undefined)?.map(httpRule);
          const l7 = http !== undefined && dir === 'ingress' && !deny;
          if (pr.rules !== undefined && !l7) warnings.push(`${policy}:${where}: L7 rules are enforced at L4 only here (${deny ? 'deny rules' : dir === 'egress' ? 'egress' : 'non-HTTP rules'}; the ports are allowed)`);
          for (const p of (pr.ports as Obj[] | undefined) ?? []) {
            const spec = portSpec(PROTOCOLS[(p.protocol as string | undefined) ?? 'ANY']!, p.port, p.endPort);
            // the proxy speaks HTTP over TCP: an L7 port is a TCP port
            ports.push(l7 ? { ...spec, proto: 6, http: http! } : spec);
          }
        }
        if (r.icmps !== undefined) {
          warnings.push(`${policy}:${where}: icmps allow ICMP and ICMPv6 as a whole (types are not matched)`);
          ports.push({ proto: 1, lo: 0, hi: 65535 }, { proto: 58, lo: 0, hi: 65535 });
        }
        const hasPeerFields = Object.keys(r).some((k) => k.startsWith(peerWord));
        if (!hasPeerFields && ports.length > 0) peers.push({ kind: 'all' });
        out.push(rule(policy, where, dir, deny, subject, peers, ports, dd[dir] !== false));
      });
    }
  });
  return out;
}

function httpRule(h: Obj): HttpRule {
  const headers: Array<{ name: string; value?: string }> = [];
  for (const s of (h.headers as string[] | undefined) ?? []) {
    const i = s.indexOf(':');
    headers.push(i < 0 ? { name: s.trim().toLowerCase() } : { name: s.slice(0, i).trim().toLowerCase(), value: s.slice(i + 1).trim() });
  }
  for (const m of (h.headerMatches as Array<{ name: string; value?: string }> | undefined) ?? []) headers.push({ name: m.name.toLowerCase(), ...(m.value !== undefined ? { value: m.value } : {}) });
  return {
    ...(h.method !== undefined ? { method: h.method as string } : {}),
    ...(h.path !== undefined ? { path: h.path as string } : {}),
    ...(h.host !== undefined ? { host: h.host as string } : {}),
    ...(headers.length ? { headers } : {}),
  };
}

function rule(policy: string, where: string, direction: Direction, deny: boolean, subject: Selector, peers: PeerSpec[], ports: PortSpec[], defaultDeny: boolean): Rule {
  const peerText = peers.length === 0 ? 'nobody' : peers.map(describePeer).join(' | ');
  const portText = ports.length === 0 ? 'any port' : ports.map((p) => `${p.name !== undefined ? `named:${p.name}` : p.lo === 0 && p.hi === 65535 ? 'any' : p.lo === p.hi ? p.lo : `${p.lo}-${p.hi}`}/${protocolName(p.proto)}${p.http ? ` (HTTP: ${p.http.map(describeHttp).join(' | ')})` : ''}`).join(',');
  return {
    id: `${policy}:${where}`,
    policy,
    direction,
    deny,
    subject,
    peers,
    ports,
    defaultDeny,
    text: `${deny ? 'deny' : 'allow'} ${direction} ${direction === 'ingress' ? 'from' : 'to'} ${peerText} on ${portText}`,
  };
}

export function describePeer(p: PeerSpec): string {
  switch (p.kind) {
    case 'all':
      return 'all';
    case 'entity':
      return `entity:${p.entity}`;
    case 'cidr':
      return `${p.endpoints ? 'ipBlock ' : ''}${p.except.length ? `${p.text} except ${p.except.map((e) => e.text).join(',')}` : p.text}`;
    case 'selector':
      return `{${describeSelector(p.selector)}}`;
  }
}

function cidrPeer(cidr: string, except: string[], endpoints = false): PeerSpec {
  return { kind: 'cidr', cidr: parsePrefix(cidr), text: cidr, except: except.map((e) => ({ prefix: parsePrefix(e), text: e })), ...(endpoints ? { endpoints } : {}) };
}

function portSpec(proto: number, port: unknown, endPort: unknown): PortSpec {
  if (port === undefined) return { proto, lo: 0, hi: 65535 };
  const n = typeof port === 'number' ? port : /^\d+$/.test(String(port)) ? Number(port) : NaN;
  if (Number.isNaN(n)) return { proto, lo: 0, hi: 0, name: String(port) }; // resolved per pod at compile time
  if (n === 0) return { proto, lo: 0, hi: 65535 };
  const hi = endPort === undefined ? n : Number(endPort);
  return { proto, lo: n, hi };
}

function networkPolicyPeer(p: Obj, peerSelector: (s: Selector, namespaced: boolean) => Selector): PeerSpec {
  if (p.ipBlock) {
    const b = p.ipBlock as Obj;
    return cidrPeer(b.cidr as string, (b.except as string[] | undefined) ?? [], true);
  }
  const pod = compileSelector(p.podSelector as LabelSelector | undefined);
  if (p.namespaceSelector === undefined) return { kind: 'selector', selector: peerSelector(pod, true) };
  // namespace labels are identity labels under NAMESPACE_LABELS_PREFIX
  const nsSel = compileSelector(p.namespaceSelector as LabelSelector);
  const merged: Selector = {
    labels: [...pod.labels, ...nsSel.labels.map(([k, v]) => [`${NAMESPACE_LABELS_PREFIX}${normalizeKey(k)}`, v] as [string, string])],
    expressions: [...pod.expressions, ...nsSel.expressions.map((e) => ({ ...e, key: `${NAMESPACE_LABELS_PREFIX}${e.key}` }))],
  };
  return { kind: 'selector', selector: peerSelector(merged, false) };
}

export function describeHttp(h: HttpRule): string {
  const parts = [h.method ?? '*', h.path ?? '/*'];
  if (h.host) parts.push(`host ${h.host}`);
  for (const x of h.headers ?? []) parts.push(x.value === undefined ? `${x.name}` : `${x.name}: ${x.value}`);
  return parts.join(' ');
}
