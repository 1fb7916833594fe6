// NetworkPolicy / CiliumNetworkPolicy semantics of issue 17, compiled and
// evaluated without a network: policyTypes defaulting, named ports resolved
// per pod (failing closed), ipBlock matching pod addresses for NetworkPolicy
// only, namespace labels. Expectations come from the Kubernetes API's rules
// (stated next to each), never from `policy trace`.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { clusterIdentity, endpointIdentityLabels, NAMESPACE_LABELS_PREFIX, RESERVED, type Labels } from '../../src/identity/identity.js';
import { manifestName, validateManifest } from '../../src/manifests/validate.js';
import { validateEndpoint } from '../../src/agent/endpoint.js';
import { applyLabelPatch } from '../../src/agent/labels.js';
import { MAX_LABELS, MAX_NAMESPACE_LABELS, MAX_POD_LABELS } from '../../src/controlplane/records/fields.js';
import { parseTopology } from '../../src/testbed/topology.js';
import { compileEndpoint, evaluate, IdentityUniverse, ruleWarnings } from '../../src/policy/compile.js';
import { l7Rules } from '../../src/policy/l7.js';
import { parsePortFlag, parsePortFlags, type ContainerPort } from '../../src/policy/ports.js';
import { enforcedRules, rulePrefixes, type StoredPolicy } from '../../src/policy/repository.js';
import { ianaSvcNameError } from '../../src/controlplane/records/fields.js';

const TCP = 6;
const UDP = 17;

interface Pod {
  labels: Labels;
  id: number;
  ips: string[];
  ports: ContainerPort[];
}

/** Pods x/a.. with one identity per label set; the universe knows their addresses and ports. */
function mesh() {
  const u = new IdentityUniverse('c1');
  let n = 256;
  const byLabels = new Map<string, number>();
  const pod = (ns: string, labels: Record<string, string>, ips: string[], ports: ContainerPort[] = [], nsLabels: Record<string, string> = {}): Pod => {
    const l = endpointIdentityLabels(labels, ns, 'c1');
    for (const [k, v] of Object.entries(nsLabels)) l[`${NAMESPACE_LABELS_PREFIX}${k}`] = v;
    const text = JSON.stringify(Object.entries(l).sort());
    let id = byLabels.get(text);
    if (id === undefined) {
      id = clusterIdentity(1, n++);
      byLabels.set(text, id);
      u.identities.set(id, l);
    }
    for (const ip of ips) u.setEndpoint(`${ns}/${labels.pod}/${ip}`, { identity: id, ip, ports });
    return { labels: l, id, ips, ports };
  };
  return { u, pod };
}

function stored(yaml: string): StoredPolicy[] {
  return yaml.split('\n---\n').map((doc, i) => {
    const m = validateManifest(parse(doc));
    return { cluster: 'c1', name: `${m.metadata.namespace ?? '_clusterwide'}/p${i}`, manifest: m };
  });
}

function check(u: IdentityUniverse, ps: StoredPolicy[], subject: Pod) {
  const warnings: string[] = [];
  const rules = enforcedRules(ps, 'c1', true, warnings);
  for (const [t, p] of rulePrefixes(rules)) u.cidrIdentity(t, p);
  warnings.push(...ruleWarnings(rules, u));
  const pol = compileEndpoint(subject.labels, rules, u, (r) => rules.indexOf(r) + 1, subject.ports);
  return {
    warnings,
    pol,
    rules,
    v: (dir: 'ingress' | 'egress', remote: number, proto: number, port: number) => evaluate(pol[dir], remote, proto, port, true).verdict,
  };
}

const ALLOWED = ['allow', 'not-enforced'];

describe('policyTypes defaulting (networking.k8s.io/v1)', () => {
  const { u, pod } = mesh();
  const a = pod('x', { pod: 'a' }, ['100.65.1.10']);
  const b = pod('x', { pod: 'b' }, ['100.65.1.11']);
  const np = (spec: string) => stored(`apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p, namespace: x }\nspec: ${spec}`);

  it('empty ingress and egress lists without policyTypes isolate ingress only', () => {
    // API: policyTypes defaults to [Ingress] plus Egress when the policy has egress rules; [] has none
    const c = check(u, np('{ podSelector: {}, ingress: [], egress: [] }'), a);
    expect(c.v('ingress', b.id, TCP, 80)).toBe('default-deny');
    expect(c.v('egress', b.id, TCP, 80)).toBe('not-enforced');
  });
  it('a non-empty egress list implies Egress', () => {
    const c = check(u, np('{ podSelector: {}, egress: [{ ports: [{ port: 53, protocol: UDP }] }] }'), a);
    expect(c.v('ingress', b.id, TCP, 80)).toBe('default-deny');
    expect(c.v('egress', b.id, TCP, 80)).toBe('default-deny');
    expect(c.v('egress', b.id, UDP, 53)).toBe('allow');
  });
  it('regression: an empty policyTypes list is defaulted like an absent one (it isolated nothing)', () => {
    // API defaulting: len(policyTypes) == 0 gets [Ingress] (+ Egress with egress rules)
    const c = check(u, np('{ podSelector: {}, policyTypes: [], ingress: [{ from: [{ podSelector: { matchLabels: { pod: b } } }] }] }'), a);
    expect(c.v('ingress', b.id, TCP, 80)).toBe('allow');
    expect(c.v('ingress', a.id, TCP, 80)).toBe('default-deny');
    expect(c.v('egress', b.id, TCP, 80)).toBe('not-enforced');
  });
  it('explicit policyTypes win: [Egress] leaves ingress open even with ingress rules', () => {
    const c = check(u, np('{ podSelector: {}, policyTypes: [Egress], ingress: [{}] }'), a);
    expect(c.v('ingress', b.id, TCP, 80)).toBe('not-enforced');
    expect(c.v('egress', b.id, TCP, 80)).toBe('default-deny');
  });
});

describe('named ports', () => {
  const { u, pod } = mesh();
  const serve = (p: number, proto: 'TCP' | 'UDP' = 'TCP'): ContainerPort => ({ name: `serve-${p}-${proto.toLowerCase()}`, containerPort: p, protocol: proto });
  const a = pod('x', { pod: 'a' }, ['100.65.1.10'], [serve(80), serve(81), serve(80, 'UDP')]);
  const b = pod('x', { pod: 'b' }, ['100.65.1.11'], [serve(80), { name: 'http', containerPort: 8080, protocol: 'TCP' }]);
  const c = pod('y', { pod: 'c' }, ['100.65.2.12'], [{ name: 'http', containerPort: 9090, protocol: 'TCP' }]);

  it('ingress resolves against the selected pod itself, protocol included', () => {
    const p = stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: serve-80-tcp }, { port: serve-80-udp, protocol: UDP }] }]`);
    const k = check(u, p, a);
    expect(k.v('ingress', b.id, TCP, 80)).toBe('allow');
    expect(k.v('ingress', c.id, UDP, 80)).toBe('allow');
    expect(k.v('ingress', b.id, TCP, 81)).toBe('default-deny');
    expect(k.warnings).toEqual([]);
  });

  it('a name no pod declares matches nothing and the pod stays isolated, with a warning', () => {
    const p = stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: no-such-port }] }]`);
    const k = check(u, p, a);
    for (const port of [80, 81, 8080]) expect(k.v('ingress', b.id, TCP, port)).toBe('default-deny');
    expect(k.warnings.join('\n')).toMatch(/x\/p0:ingress\[0\]: named port no-such-port\/TCP is declared by no pod: it matches nothing/);
  });

  it('a name the selected pod lacks (another pod has it) matches nothing for it, without a warning', () => {
    const p = stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: {}
  ingress: [{ ports: [{ port: http }] }]`);
    expect(check(u, p, a).v('ingress', b.id, TCP, 8080)).toBe('default-deny');
    const kb = check(u, p, b);
    expect(kb.v('ingress', a.id, TCP, 8080)).toBe('allow');
    expect(kb.v('ingress', RESERVED.world, TCP, 8080)).toBe('allow'); // no from: every source
    expect(kb.warnings).toEqual([]);
  });

  it('egress resolves against each destination pod (to: everyone included)', () => {
    const p = stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  egress: [{ ports: [{ port: http }] }]`);
    const k = check(u, p, a);
    expect(k.v('egress', b.id, TCP, 8080)).toBe('allow');
    expect(k.v('egress', b.id, TCP, 9090)).toBe('default-deny');
    expect(k.v('egress', c.id, TCP, 9090)).toBe('allow');
    expect(k.v('egress', c.id, TCP, 8080)).toBe('default-deny');
    expect(k.v('egress', RESERVED.world, TCP, 8080)).toBe('default-deny'); // names resolve on pods only
  });

  it('CiliumNetworkPolicy named ports resolve the same way; a deny rule that cannot resolve denies every port', () => {
    const p = stored(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: p, namespace: x }
spec:
  endpointSelector: { matchLabels: { pod: a } }
  egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: http, protocol: TCP }] }] }]
  egressDeny: [{ toEndpoints: [{ matchLabels: { pod: b } }], toPorts: [{ ports: [{ port: nope, protocol: TCP }] }] }]`);
    const k = check(u, p, a);
    expect(k.v('egress', b.id, TCP, 8080)).toBe('deny');
    const q = check(u, stored(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: p, namespace: x }
spec:
  endpointSelector: { matchLabels: { pod: a } }
  egress: [{ toEndpoints: [{}], toPorts: [{ ports: [{ port: http }] }] }]`), a);
    expect(q.v('egress', b.id, TCP, 8080)).toBe('allow');
    expect(q.v('egress', b.id, UDP, 8080)).toBe('default-deny');
    expect(k.warnings.join('\n')).toMatch(/named port nope\/TCP is declared by no pod: the rule denies every port/);
  });

  it('replicas of one identity that disagree on a name allow none of their numbers (intersection)', () => {
    const m = mesh();
    const one = m.pod('x', { app: 'web' }, ['100.65.1.20'], [{ name: 'http', containerPort: 80, protocol: 'TCP' }]);
    m.u.setEndpoint('x/web2', { identity: one.id, ip: '100.65.1.21', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] });
    const src = m.pod('x', { pod: 'a' }, ['100.65.1.10']);
    const k = check(m.u, stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  egress: [{ ports: [{ port: http }] }]`), src);
    expect(k.v('egress', one.id, TCP, 80)).toBe('default-deny');
    expect(k.v('egress', one.id, TCP, 8080)).toBe('default-deny');
  });

  it('L7 rules on a named port apply to the port it names on the selected pod', () => {
    const p = stored(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: p, namespace: x }
spec:
  endpointSelector: { matchLabels: { pod: b } }
  ingress: [{ fromEndpoints: [{}], toPorts: [{ ports: [{ port: http, protocol: TCP }], rules: { http: [{ method: GET }] } }] }]`);
    const k = check(u, p, b);
    expect(k.v('ingress', a.id, TCP, 8080)).toBe('proxy');
    const l7 = l7Rules(k.pol.selectedBy.ingress, u, a.id, 8080, b.ports);
    expect(l7 !== 'all' && l7.map((x) => x.http.method)).toEqual(['GET']);
  });

  it('port names follow IANA_SVC_NAME; --port NAME:PORT[/PROTO]', () => {
    for (const ok of ['http', 'serve-80-tcp', 'a1', 'abcdefghijklmno']) expect(ianaSvcNameError(ok)).toBeUndefined();
    for (const bad of ['', '80', 'abcdefghijklmnop', '-http', 'http-', 'ht--tp', 'HTTP', 'h_t']) expect(ianaSvcNameError(bad)).toBeDefined();
    expect(parsePortFlag('serve-80-udp:80/udp')).toEqual({ name: 'serve-80-udp', containerPort: 80, protocol: 'UDP' });
    expect(parsePortFlag('http:8080')).toEqual({ name: 'http', containerPort: 8080, protocol: 'TCP' });
    expect(() => parsePortFlag('http')).toThrow(/NAME:PORT/);
    expect(() => parsePortFlag('http:0')).toThrow();
    expect(() => parsePortFlag('http:80/ICMP')).toThrow();
    expect(() => parsePortFlags(['http:80', 'http:81'])).toThrow(/unique/);
  });
});

describe('ipBlock and pod addresses', () => {
  const { u, pod } = mesh();
  const a = pod('x', { pod: 'a' }, ['100.65.1.10']);
  const b = pod('x', { pod: 'b' }, ['100.65.1.11']);
  const c = pod('y', { pod: 'c' }, ['100.65.2.12']);
  const dual = pod('y', { pod: 'd' }, ['100.65.2.13', 'fd65:0:2::13']);

  it('NetworkPolicy ipBlock 0.0.0.0/0 admits pods (upstream conformance), except removes one', () => {
    // API: ipBlock selects IP ranges; a pod's address is an IP like any other
    const p = stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: b } }
  ingress: [{ from: [{ ipBlock: { cidr: 0.0.0.0/0, except: [100.65.2.12/32] } }] }]`);
    const k = check(u, p, b);
    expect(k.v('ingress', a.id, TCP, 80)).toBe('allow');
    // an IPv4 host outside the mesh resolves to 0.0.0.0/0's CIDR identity; an IPv6 one misses it (world): the
    // block is IPv4 only (regression: /0 compiled to world, which admitted all of IPv6 too)
    expect(k.v('ingress', u.cidrs.get('0.0.0.0/0')!.id, TCP, 80)).toBe('allow');
    expect(k.v('ingress', RESERVED.world, TCP, 80)).toBe('default-deny');
    expect(k.v('ingress', c.id, TCP, 80)).toBe('default-deny');
    // a dual-stack pod: its IPv6 address is outside 0.0.0.0/0, so its identity is not admitted (fail closed)
    expect(k.v('ingress', dual.id, TCP, 80)).toBe('default-deny');
  });

  it('both families listed admit the dual-stack pod', () => {
    const p = stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: b } }
  ingress: [{ from: [{ ipBlock: { cidr: 0.0.0.0/0 } }, { ipBlock: { cidr: ::/0 } }] }]`);
    expect(check(u, p, b).v('ingress', dual.id, TCP, 80)).toBe('allow');
  });

  it('an egress ipBlock /32 names exactly one pod', () => {
    const p = stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  policyTypes: [Egress]
  egress: [{ to: [{ ipBlock: { cidr: 100.65.1.11/32 } }] }]`);
    const k = check(u, p, a);
    expect(k.v('egress', b.id, TCP, 80)).toBe('allow');
    expect(k.v('egress', c.id, TCP, 80)).toBe('default-deny');
  });

  it('an identity two pods share matches only if both addresses are in the block', () => {
    const m = mesh();
    const w1 = m.pod('x', { app: 'web' }, ['100.65.1.20']);
    m.u.setEndpoint('x/web2', { identity: w1.id, ip: '100.65.9.20', ports: [] });
    const src = m.pod('x', { pod: 'a' }, ['100.65.1.10']);
    const doc = (cidr: string) => stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  policyTypes: [Egress]
  egress: [{ to: [{ ipBlock: { cidr: ${cidr} } }] }]`);
    expect(check(m.u, doc('100.65.1.0/24'), src).v('egress', w1.id, TCP, 80)).toBe('default-deny');
    expect(check(m.u, doc('100.65.0.0/16'), src).v('egress', w1.id, TCP, 80)).toBe('allow');
  });

  it('CiliumNetworkPolicy fromCIDR 0.0.0.0/0 never matches mesh pods (Cilium semantics)', () => {
    const p = stored(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: p, namespace: x }
spec:
  endpointSelector: { matchLabels: { pod: b } }
  ingress: [{ fromCIDR: [0.0.0.0/0] }]`);
    const k = check(u, p, b);
    expect(k.v('ingress', u.cidrs.get('0.0.0.0/0')!.id, TCP, 80)).toBe('allow');
    expect(k.v('ingress', RESERVED.world, TCP, 80)).toBe('default-deny'); // IPv6 outside the mesh
    expect(k.v('ingress', a.id, TCP, 80)).toBe('default-deny');
  });
});

describe('namespaces', () => {
  it('namespaceSelector on namespace labels; a selector on an unknown namespace warns and matches nothing', () => {
    const { u, pod } = mesh();
    const a = pod('x', { pod: 'a' }, ['100.65.1.10']);
    const prod = pod('y', { pod: 'b' }, ['100.65.2.11'], [], { team: 'blue' });
    const other = pod('z', { pod: 'c' }, ['100.65.3.12']);
    const p = stored(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: blue } } }, { namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: nowhere } } }] }]`);
    const k = check(u, p, a);
    expect(k.v('ingress', prod.id, TCP, 80)).toBe('allow');
    expect(k.v('ingress', other.id, TCP, 80)).toBe('default-deny');
    expect(k.warnings.join('\n')).toMatch(/namespace nowhere is unknown/);
    u.namespaces.add('nowhere');
    expect(check(u, p, a).warnings).toEqual([]);
  });
});

describe('what cannot be resolved fails closed', () => {
  it('a CiliumNetworkPolicy whose only ports are named and unresolved still isolates', () => {
    const { u, pod } = mesh();
    const a = pod('x', { pod: 'a' }, ['100.65.1.10']);
    const b = pod('x', { pod: 'b' }, ['100.65.1.11']);
    const k = check(u, stored(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: p, namespace: x }
spec:
  endpointSelector: { matchLabels: { pod: a } }
  ingress: [{ toPorts: [{ ports: [{ port: ghost }] }] }]`), a);
    expect(k.pol.ingress).not.toBeNull();
    expect(ALLOWED).not.toContain(k.v('ingress', b.id, TCP, 80));
  });
});

describe('interfaces: Namespace manifests, endpoint and topology ports', () => {
  it('v1 Namespace: labels, no namespace, stored at state/namespaces/<cluster>/<name>', () => {
    const m = validateManifest(parse('apiVersion: v1\nkind: Namespace\nmetadata: { name: y, labels: { team: blue } }'));
    expect(m.metadata.namespace).toBeUndefined();
    expect(manifestName(m)).toEqual({ type: 'namespaces', name: 'y' });
    expect(() => validateManifest(parse('apiVersion: v1\nkind: Namespace\nmetadata: { name: y, namespace: x }'))).toThrow(/has no namespace/);
    expect(() => validateManifest(parse('apiVersion: v1\nkind: Namespace\nmetadata: { name: y, labels: { kubernetes.io/metadata.name: z } }'))).toThrow(/namespace's name/);
    expect(() => validateManifest(parse('apiVersion: v1\nkind: Namespace\nmetadata: { name: y }\nspec: { bogus: 1 }'))).toThrow(/unknown field/);
    expect(() => validateManifest(parse('apiVersion: v2\nkind: Namespace\nmetadata: { name: y }'))).toThrow(/must be v1/);
  });

  it("namespace labels enter the identity; kubernetes.io/metadata.name stays the namespace's name", () => {
    const l = endpointIdentityLabels({ pod: 'a' }, 'y', 'c1', { team: 'blue', 'kubernetes.io/metadata.name': 'evil' });
    expect(l[`${NAMESPACE_LABELS_PREFIX}team`]).toBe('blue');
    expect(l[`${NAMESPACE_LABELS_PREFIX}kubernetes.io/metadata.name`]).toBe('y');
    expect(endpointIdentityLabels({ pod: 'a' }, 'y', 'c1')).toEqual(endpointIdentityLabels({ pod: 'a' }, 'y', 'c1', {}));
  });

  it('regression: a pod has at most MAX_POD_LABELS labels, so its identity with a full namespace stays readable', () => {
    // an identity over MAX_LABELS was refused by every reader: no rule, deny rules included, could match the pod
    const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`l${i}`, 'v']));
    const nsLabels = Object.fromEntries(Array.from({ length: MAX_NAMESPACE_LABELS }, (_, i) => [`n${i}`, 'v']));
    expect(Object.keys(endpointIdentityLabels(many(MAX_POD_LABELS), 'y', 'c1', nsLabels)).length).toBeLessThanOrEqual(MAX_LABELS);
    const base = { name: 'a', namespace: 'x', ips: ['100.65.1.10'] };
    expect(validateEndpoint({ ...base, labels: many(MAX_POD_LABELS) }).labels).toEqual(many(MAX_POD_LABELS));
    expect(() => validateEndpoint({ ...base, labels: many(MAX_POD_LABELS + 1) })).toThrow(/at most 45 labels/);
    expect(() => applyLabelPatch(many(MAX_POD_LABELS), { extra: 'v' }, false)).toThrow(/at most 45 labels/);
  });

  it('agent API and topology take ports [{name, containerPort, protocol?}] and refuse bad names', () => {
    const base = { name: 'a', namespace: 'x', labels: {}, ips: ['100.65.1.10'] };
    expect(validateEndpoint({ ...base, ports: [{ name: 'serve-80-tcp', containerPort: 80 }] }).ports).toEqual([{ name: 'serve-80-tcp', containerPort: 80, protocol: 'TCP' }]);
    expect(validateEndpoint(base).ports).toBeUndefined();
    expect(() => validateEndpoint({ ...base, ports: [{ name: 'Serve', containerPort: 80 }] })).toThrow(/ports\[0\]\.name/);
    expect(() => validateEndpoint({ ...base, ports: [{ name: 'http', containerPort: 70000 }] })).toThrow(/containerPort/);
    expect(() => validateEndpoint({ ...base, ports: [{ name: 'http', containerPort: 80, extra: 1 }] })).toThrow();
    expect(() => validateEndpoint({ ...base, ports: 'http' })).toThrow(/ports/);
    const t = parseTopology(`clusters: [{ name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1] }]
pods: [{ name: a, cluster: c1, node: n1, namespace: x, ports: [{ name: serve-81-udp, containerPort: 81, protocol: UDP }] }]`);
    expect(t.pods[0]!.ports).toEqual([{ name: 'serve-81-udp', containerPort: 81, protocol: 'UDP' }]);
    expect(() => parseTopology(`clusters: [{ name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1] }]
pods: [{ name: a, cluster: c1, node: n1, ports: [{ name: a--b, containerPort: 81 }] }]`)).toThrow(/pods\[0\]\.ports\[0\]\.name/);
  });
});
