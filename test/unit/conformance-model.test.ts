// The conformance suite's oracle (test/conformance/model.ts) on hand-computed
// cases: each expectation below was worked out from the NetworkPolicy API
// reference, not by running the model.
import { describe, expect, it } from 'vitest';
import { allowed, cidrContains, directionVerdict, policyTypes, selectorMatches, type ModelPod, type NetworkPolicy, type NetworkPolicySpec, type World } from '../conformance/model.js';

const SERVE = ['tcp', 'udp'].flatMap((p) => [80, 81].map((n) => ({ name: `serve-${n}-${p}`, containerPort: n, protocol: p.toUpperCase() as 'TCP' | 'UDP' })));
const pod = (cluster: string, ns: string, name: string, ip: string, extra: Record<string, string> = {}): ModelPod => ({ cluster, namespace: ns, name: `${ns}${name}`, labels: { pod: name, ...extra }, ip, node: 'n1', ports: SERVE });
const xa = pod('c1', 'x', 'a', '100.65.1.10');
const xb = pod('c1', 'x', 'b', '100.65.2.10');
const xc = pod('c1', 'x', 'c', '100.65.1.11');
const ya = pod('c1', 'y', 'a', '100.65.2.11');
const za = pod('c1', 'z', 'a', '100.65.1.12');
const c2xa = pod('c2', 'x', 'a', '100.66.1.10');
const np = (ns: string, name: string, spec: NetworkPolicySpec): NetworkPolicy => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: ns }, spec });
const world = (...policies: NetworkPolicy[]): World => ({
  namespaces: [
    { cluster: 'c1', name: 'x', labels: {} },
    { cluster: 'c1', name: 'y', labels: { team: 'blue' } },
    { cluster: 'c1', name: 'z', labels: {} },
  ],
  pods: [xa, xb, xc, ya, za, c2xa],
  policies: policies.map((policy) => ({ cluster: 'c1', policy })),
});
const tcp = (w: World, a: ModelPod, b: ModelPod, port = 80) => allowed(w, a, b, 'TCP', port);

describe('conformance model', () => {
  it('selectors: matchLabels and every matchExpressions operator (NotIn and DoesNotExist match an absent key)', () => {
    expect(selectorMatches({}, {})).toBe(true);
    expect(selectorMatches({ matchLabels: { pod: 'a' } }, { pod: 'a', x: '1' })).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] }, { pod: 'a' })).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['b'] }] }, {})).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, { pod: 'a' })).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, { pod: 'a' })).toBe(true);
    expect(selectorMatches({ matchLabels: { pod: 'a' }, matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, { pod: 'a' })).toBe(false);
  });

  it('policyTypes defaulting: Ingress always, Egress only with egress rules', () => {
    expect(policyTypes({ podSelector: {}, ingress: [], egress: [] })).toEqual(['Ingress']);
    expect(policyTypes({ podSelector: {}, egress: [{}] })).toEqual(['Ingress', 'Egress']);
    expect(policyTypes({ podSelector: {}, policyTypes: [], egress: [{}] })).toEqual(['Ingress', 'Egress']);
    expect(policyTypes({ podSelector: {}, policyTypes: ['Egress'] })).toEqual(['Egress']);
    // ingress: [] and egress: [] without policyTypes isolates ingress only
    const w = world(np('x', 'p', { podSelector: {}, ingress: [], egress: [] }));
    expect([tcp(w, ya, xa), tcp(w, xa, xb), tcp(w, xa, ya)]).toEqual([false, false, true]);
  });

  it('default deny ingress in x: nothing reaches x, x reaches the others', () => {
    const w = world(np('x', 'deny', { podSelector: {}, policyTypes: ['Ingress'] }));
    expect([tcp(w, ya, xa), tcp(w, xb, xa), tcp(w, xa, ya), tcp(w, ya, za)]).toEqual([false, false, true, true]);
  });

  it('PodSelector OR NamespaceSelector (two peers), and both in one peer (AND)', () => {
    const or = world(np('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['x'] }] } }, { podSelector: { matchLabels: { pod: 'b' } } }] }] }));
    expect([tcp(or, xb, xa), tcp(or, xc, xa), tcp(or, ya, xa), tcp(or, za, xa)]).toEqual([true, false, true, true]);
    const and = world(np('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } }, podSelector: { matchLabels: { pod: 'a' } } }] }] }));
    expect([tcp(and, ya, xa), tcp(and, za, xa), tcp(and, xb, xa)]).toEqual([true, false, false]);
  });

  it('egress AND ingress: the server allowing is not enough', () => {
    const w = world(
      np('x', 'egress', { podSelector: { matchLabels: { pod: 'a' } }, egress: [{ to: [{ podSelector: { matchLabels: { pod: 'c' } } }] }] }),
      np('x', 'ingress', { podSelector: { matchLabels: { pod: 'b' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'a' } } }] }] }),
    );
    expect([tcp(w, xa, xb), tcp(w, xa, xc), tcp(w, xc, xb), tcp(w, ya, xa)]).toEqual([false, true, false, false]);
    expect(directionVerdict(w, 'ingress', xb, xa, 'TCP', 80)).toBe('allow');
    expect(directionVerdict(w, 'egress', xa, xb, 'TCP', 80)).toBe('deny');
    expect(directionVerdict(w, 'egress', xb, xa, 'TCP', 80)).toBe('not-isolated');
  });

  it('ipBlock matches pod addresses, except carves out, and it crosses clusters', () => {
    expect(cidrContains('96.0.0.0/4', '100.65.1.10')).toBe(true);
    expect(cidrContains('100.65.2.10/32', '100.65.2.11')).toBe(false);
    const w = world(np('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, egress: [{ to: [{ ipBlock: { cidr: '96.0.0.0/4', except: ['100.65.2.10/32'] } }] }] }));
    expect([tcp(w, xa, xb), tcp(w, xa, xc), tcp(w, xa, c2xa)]).toEqual([false, true, true]);
  });

  it('ports: default TCP, protocol only, endPort ranges, named ports resolve on the destination and fail closed', () => {
    const byProto = world(np('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ protocol: 'TCP' }] }] }));
    expect([allowed(byProto, ya, xa, 'TCP', 81), allowed(byProto, ya, xa, 'UDP', 80)]).toEqual([true, false]);
    const range = world(np('x', 'p', { podSelector: {}, ingress: [{ ports: [{ protocol: 'UDP', port: 79, endPort: 80 }] }] }));
    expect([allowed(range, ya, xa, 'UDP', 80), allowed(range, ya, xa, 'UDP', 81), allowed(range, ya, xa, 'TCP', 80)]).toEqual([true, false, false]);
    const named = world(np('x', 'p', { podSelector: {}, ingress: [{ ports: [{ port: 'serve-81-tcp' }] }] }));
    expect([tcp(named, ya, xa, 81), tcp(named, ya, xa, 80), allowed(named, ya, xa, 'UDP', 81)]).toEqual([true, false, false]);
    // egress: the name is looked up on the destination (y/a declares it; a pod without ports would not)
    const egress = world(np('x', 'p', { podSelector: {}, egress: [{ ports: [{ port: 'serve-80-tcp' }] }] }));
    expect([tcp(egress, xa, ya, 80), tcp(egress, xa, ya, 81)]).toEqual([true, false]);
    const bare = { ...ya, ports: [] };
    expect(tcp(egress, xa, bare, 80)).toBe(false);
    const undeclared = world(np('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ port: 'serve-99-tcp' }] }] }));
    expect([tcp(undeclared, ya, xa, 80), tcp(undeclared, ya, xb, 80)]).toEqual([false, true]);
  });

  it('across clusters: selectors see the local cluster only, an empty from everyone', () => {
    const sel = world(np('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ namespaceSelector: {} }] }] }));
    expect([tcp(sel, ya, xa), tcp(sel, c2xa, xa)]).toEqual([true, false]);
    const all = world(np('x', 'p', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{}] }));
    expect(tcp(all, c2xa, xa)).toBe(true);
    // a policy applied in c1 does not select c2's x/a
    const deny = world(np('x', 'deny', { podSelector: {} }));
    expect(tcp(deny, ya, c2xa)).toBe(true);
  });
});
