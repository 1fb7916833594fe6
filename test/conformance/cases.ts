/**
 * The conformance cases: the upstream Kubernetes NetworkPolicy e2e cases
 * (kubernetes/kubernetes test/e2e/network/netpol/network_policy.go, "Netpol
 * NetworkPolicy between server and client", and its UDP context; policies
 * built as its helpers build them: SetSpecIngressRules/SetSpecEgressRules set
 * policyTypes explicitly), restated as data, then the API's own rules the
 * upstream suite does not cover (policyTypes defaulting, matchExpressions
 * operators, endPort, named ports that resolve to nothing, namespace labels).
 *
 * Expectations are not written here: the model (model.ts) computes the full
 * truth table (every ordered pair of pods, TCP and UDP, ports 80 and 81) after
 * each step. Pods are named by namespace and label: "x/a" is the pod labelled
 * pod=a in namespace x (in every cluster that has one).
 */
import type { Labels, LabelSelector, NetworkPolicy, NetworkPolicySpec } from './model.js';

/** Features a case needs that are being built (issue 17); a failure of such a case is reported against them. */
export type Feature = 'namespace-labels' | 'named-ports' | 'policytypes-defaulting' | 'ipblock-pods';

export interface NamespaceManifest {
  apiVersion: 'v1';
  kind: 'Namespace';
  metadata: { name: string; labels: Labels };
}

export interface Step {
  /** Policies (created or replaced by name) and Namespace objects, applied to every cluster. */
  apply?: Array<NetworkPolicy | NamespaceManifest>;
  /** Policies to delete, as "namespace/name". */
  delete?: string[];
  /** New full label sets of pods ("x/a"), in every cluster. */
  labelPods?: Record<string, Labels>;
}

export interface Case {
  name: string;
  source: 'upstream' | 'api';
  needs?: Feature[];
  steps: Step[];
  /** How long cells may take to agree with the model (default: 3 s after a policy change, else 8 s). */
  settleMs?: number;
}

export interface CaseContext {
  /** A pod's address in cluster 1 ("x/b"). */
  ip(pod: string): string;
}

const np = (namespace: string, name: string, spec: NetworkPolicySpec): NetworkPolicy => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace }, spec });
const nsObj = (name: string, labels: Labels): NamespaceManifest => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const pods = (labels: Labels): LabelSelector => ({ matchLabels: labels });
const podA = pods({ pod: 'a' });
const nsNamed = (name: string): LabelSelector => ({ matchLabels: { 'kubernetes.io/metadata.name': name } });
const nsNotIn = (...names: string[]): LabelSelector => ({ matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: names }] });
/** SetSpecIngressRules(rules...) of the upstream helpers. */
const ingressOnly = (podSelector: LabelSelector, ...rules: NonNullable<NetworkPolicySpec['ingress']>): NetworkPolicySpec => ({ podSelector, policyTypes: ['Ingress'], ingress: rules });
const egressOnly = (podSelector: LabelSelector, ...rules: NonNullable<NetworkPolicySpec['egress']>): NetworkPolicySpec => ({ podSelector, policyTypes: ['Egress'], egress: rules });
/** makeLargeCIDRForIP: the /4 holding an address. */
const large = (ip: string): string => `${(Number(ip.split('.')[0]) >> 4) << 4}.0.0.0/4`;

function upstream(ctx: CaseContext): Case[] {
  const c = (name: string, steps: Step[], needs?: Feature[]): Case => ({ name, source: 'upstream', steps, ...(needs ? { needs } : {}) });
  const one = (...apply: NetworkPolicy[]): Step[] => [{ apply }];
  return [
    c("should support a 'default-deny-ingress' policy", one(np('x', 'deny-ingress', ingressOnly({})))),
    c("should support a 'default-deny-all' policy", one(np('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] }))),
    c('should enforce policy to allow traffic from pods within server namespace based on PodSelector', one(np('x', 'x-a-allows-x-b', ingressOnly(podA, { from: [{ podSelector: pods({ pod: 'b' }) }] })))),
    c('should enforce policy to allow ingress traffic for a target', one(np('x', 'deny-all', ingressOnly({})), np('x', 'allow-all-to-a', ingressOnly(podA, { from: [{ podSelector: {}, namespaceSelector: {} }] })))),
    c('should enforce policy to allow ingress traffic from pods in all namespaces', one(np('x', 'allow-from-another-ns', ingressOnly(podA, { from: [{ namespaceSelector: { matchLabels: {} } }] })))),
    c('should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector', one(np('x', 'allow-client-a-via-ns-selector', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y') }] })))),
    c('should enforce policy based on PodSelector with MatchExpressions', one(np('x', 'x-a-allows-x-b', ingressOnly(podA, { from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }] } }] })))),
    c('should enforce policy based on NamespaceSelector with MatchExpressions', one(np('x', 'allow-ns-y-match-selector', ingressOnly(podA, { from: [{ namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['y'] }] } }] })))),
    c('should enforce policy based on PodSelector or NamespaceSelector', one(np('x', 'allow-ns-y-match-selector', ingressOnly(podA, { from: [{ namespaceSelector: nsNotIn('x') }, { podSelector: pods({ pod: 'b' }) }] })))),
    c('should enforce policy based on PodSelector and NamespaceSelector', one(np('x', 'allow-ns-y-podselector-and-nsselector', ingressOnly(podA, { from: [{ namespaceSelector: nsNotIn('x'), podSelector: pods({ pod: 'b' }) }] })))),
    c('should enforce policy based on Multiple PodSelectors and NamespaceSelectors', one(np('x', 'allow-ns-y-z-pod-b-c', ingressOnly(podA, { from: [{ namespaceSelector: nsNotIn('x'), podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] } }] })))),
    c('should enforce policy based on any PodSelectors', one(np('x', 'allow-ns-x-pod-b-c', ingressOnly(podA, { from: [{ podSelector: pods({ pod: 'b' }) }, { podSelector: pods({ pod: 'c' }) }] })))),
    c('should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector', one(np('x', 'allow-ns-y-pod-a-via-namespace-pod-selector', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y'), podSelector: podA }] })))),
    c('should enforce policy based on Ports', one(np('x', 'allow-client-a-via-ns-selector', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y') }], ports: [{ port: 81, protocol: 'TCP' }] })))),
    c('should enforce multiple, stacked policies with overlapping podSelectors', [
      { apply: [np('x', 'allow-client-a-via-ns-selector', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y') }], ports: [{ port: 81, protocol: 'TCP' }] }))] },
      { apply: [np('x', 'allow-client-a-via-ns-selector-80', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y') }], ports: [{ port: 80, protocol: 'TCP' }] }))] },
    ]),
    c('should support allow-all policy', one(np('x', 'allow-all', ingressOnly({}, {})))),
    c('should allow ingress access on one named port', one(np('x', 'allow-all', ingressOnly({}, { ports: [{ port: 'serve-81-tcp' }] }))), ['named-ports']),
    c('should allow ingress access from namespace on one named port', one(np('x', 'allow-client-a-via-ns-selector-80', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y') }], ports: [{ port: 'serve-80-tcp', protocol: 'TCP' }] }))), ['named-ports']),
    c('should allow egress access on one named port', one(np('x', 'allow-egress', egressOnly({}, { ports: [{ port: 'serve-80-tcp' }] }))), ['named-ports']),
    c('should enforce updated policy', [
      { apply: [np('x', 'allow-all-mutate-to-deny-all', ingressOnly({}, {}))] },
      { apply: [np('x', 'allow-all-mutate-to-deny-all', ingressOnly({}))] },
    ]),
    c('should allow ingress access from updated namespace', [
      { apply: [np('x', 'allow-client-a-via-ns-selector', ingressOnly(podA, { from: [{ namespaceSelector: { matchLabels: { ns2: 'updated' } } }] }))] },
      { apply: [nsObj('y', { ns2: 'updated' })] },
    ], ['namespace-labels']),
    c('should allow ingress access from updated pod', [
      { apply: [np('x', 'allow-client-a-via-pod-selector', ingressOnly(podA, { from: [{ podSelector: pods({ pod: 'b', pod2: 'updated' }) }] }))] },
      { labelPods: { 'x/b': { pod: 'b', pod2: 'updated' } } },
    ]),
    c('should deny ingress from pods on other namespaces', one(np('x', 'deny-empty-policy', ingressOnly({}, { from: [{ podSelector: { matchLabels: {} } }] })))),
    c('should deny ingress access to updated pod', [
      { apply: [np('x', 'deny-ingress-via-label-selector', ingressOnly(pods({ target: 'isolated' })))] },
      { labelPods: { 'x/a': { pod: 'a', target: 'isolated' } } },
    ]),
    c('should deny egress from pods based on PodSelector', one(np('x', 'deny-egress-pod-a', egressOnly(podA)))),
    c('should deny egress from all pods in a namespace', one(np('x', 'deny-egress-ns-x', egressOnly({})))),
    c('should work with Ingress, Egress specified together', one(np('x', 'allow-client-a-via-pod-selector', { podSelector: podA, policyTypes: ['Egress', 'Ingress'], ingress: [{ from: [{ podSelector: pods({ pod: 'b' }) }] }], egress: [{ ports: [{ port: 80 }] }] }))),
    c('should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)', one(
      np('x', 'allow-to-ns-y-pod-a', egressOnly(podA, { to: [{ namespaceSelector: nsNamed('y'), podSelector: podA }] })),
      np('y', 'allow-from-xa-on-ya-match-selector', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('x'), podSelector: podA }] })),
      np('y', 'allow-from-xa-on-yb-match-selector', ingressOnly(pods({ pod: 'b' }), { from: [{ namespaceSelector: nsNamed('x'), podSelector: podA }] })),
    )),
    c('should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector', one(np('x', 'allow-to-ns-y-pod-a', egressOnly(podA, { to: [{ namespaceSelector: nsNamed('y'), podSelector: podA }] })))),
    c('should enforce ingress policy allowing any port traffic to a server on a specific protocol', one(np('x', 'allow-ingress-by-proto', ingressOnly(podA, { ports: [{ protocol: 'TCP' }] })))),
    c('should enforce multiple ingress policies with ingress allow-all policy taking precedence', [
      { apply: [np('x', 'allow-ingress-port-80', ingressOnly({}, { ports: [{ port: 80 }] }))] },
      { apply: [np('x', 'allow-ingress', ingressOnly({}, {}))] },
    ]),
    c('should enforce multiple egress policies with egress allow-all policy taking precedence', [
      { apply: [np('x', 'allow-egress-port-80', egressOnly({}, { ports: [{ port: 80 }] }))] },
      { apply: [np('x', 'allow-egress', egressOnly({}, {}))] },
    ]),
    c('should stop enforcing policies after they are deleted', [
      { apply: [np('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] })] },
      { delete: ['x/deny-all'] },
    ]),
    c('should allow egress access to server in CIDR block', one(np('x', 'allow-client-a-via-cidr-egress-rule', egressOnly(podA, { to: [{ ipBlock: { cidr: `${ctx.ip('y/b')}/32` } }] }))), ['ipblock-pods']),
    c('should enforce except clause while egress access to server in CIDR block', one(np('x', 'allow-client-a-via-cidr-egress-rule', egressOnly(podA, { to: [{ ipBlock: { cidr: large(ctx.ip('x/b')), except: [`${ctx.ip('x/b')}/32`] } }] }))), ['ipblock-pods']),
    c('should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed', [
      { apply: [np('x', 'allow-client-a-via-cidr-egress-rule', egressOnly(podA, { to: [{ ipBlock: { cidr: large(ctx.ip('x/b')), except: [`${ctx.ip('x/b')}/32`] } }] }))] },
      { apply: [np('x', 'allow-client-a-via-cidr-egress-rule', egressOnly(podA, { to: [{ ipBlock: { cidr: `${ctx.ip('x/b')}/32` } }] }))] },
    ], ['ipblock-pods']),
    c('should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector', [
      { apply: [np('x', 'allow-egress-for-target', egressOnly(podA, {}))] },
      { apply: [np('x', 'deny-ingress-via-label-selector', ingressOnly(podA))] },
    ]),
    c("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP", one(np('x', 'deny-ingress', ingressOnly({})), np('x', 'allow-only-sctp-ingress-on-port-81', ingressOnly(podA, { ports: [{ port: 81, protocol: 'SCTP' }] })))),
    c("should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP", one(np('x', 'allow-only-sctp-ingress-on-port-80', ingressOnly(podA, { ports: [{ port: 80, protocol: 'SCTP' }] })))),
    c('should not allow access by TCP when a policy specifies only UDP', one(np('x', 'allow-only-udp-ingress-on-port-81', ingressOnly(podA, { ports: [{ port: 81, protocol: 'UDP' }] })))),
    c('should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label', one(np('x', 'allow-client-a-via-ns-selector-for-immutable-ns-label', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y') }] })))),
    c('should enforce policy based on NamespaceSelector with MatchExpressions using default ns label', one(np('x', 'allow-ns-y-match-selector-for-immutable-ns-label', egressOnly(podA, { to: [{ namespaceSelector: nsNotIn('y') }] })))),
    // "using UDP" context: its default-deny and PodSelector-and-NamespaceSelector cases are the TCP cases' policies (every case here probes UDP too)
    c('UDP: should enforce policy based on Ports', one(np('x', 'allow-ingress-on-port-81-ns-x', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y') }], ports: [{ port: 81, protocol: 'UDP' }] })))),
  ];
}

function api(): Case[] {
  const c = (name: string, steps: Step[], needs?: Feature[]): Case => ({ name, source: 'api', steps, ...(needs ? { needs } : {}) });
  const one = (...apply: Array<NetworkPolicy | NamespaceManifest>): Step[] => [{ apply }];
  return [
    c('policyTypes defaulting: ingress: [] and egress: [] without policyTypes isolate ingress only', one(np('x', 'empty-sections', { podSelector: {}, ingress: [], egress: [] })), ['policytypes-defaulting']),
    c('policyTypes defaulting: egress rules without policyTypes imply Ingress and Egress', one(np('x', 'both-implied', { podSelector: podA, ingress: [{ from: [{ podSelector: pods({ pod: 'b' }) }] }], egress: [{ to: [{ podSelector: pods({ pod: 'c' }) }] }] }))),
    c('policyTypes defaulting: an empty policyTypes list is defaulted (Ingress)', one(np('x', 'empty-types', { podSelector: podA, policyTypes: [], ingress: [{ from: [{ podSelector: pods({ pod: 'b' }) }] }] })), ['policytypes-defaulting']),
    c('policyTypes [Egress] ignores an ingress section', one(np('x', 'egress-only', { podSelector: podA, policyTypes: ['Egress'], ingress: [], egress: [{ to: [{ podSelector: {} }] }] }))),
    c('policyTypes [Ingress] ignores an egress section', one(np('y', 'ingress-only', { podSelector: pods({ pod: 'b' }), policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: nsNamed('z') }] }], egress: [] }))),
    c('matchExpressions: Exists subject, In peer', one(np('x', 'exists', { podSelector: { matchExpressions: [{ key: 'pod', operator: 'Exists' }] }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a', 'c'] }] } }] }] }))),
    c('matchExpressions: DoesNotExist peer, then the peer gains the key', [
      { apply: [np('y', 'no-tier', ingressOnly({}, { from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] } }] }))] },
      { labelPods: { 'x/a': { pod: 'a', tier: 'db' } } },
    ]),
    c('matchExpressions: NotIn subject isolates the others', one(np('z', 'not-a', { podSelector: { matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['a'] }] }, policyTypes: ['Ingress', 'Egress'] }))),
    c('matchExpressions with matchLabels in one selector (AND)', one(np('x', 'mixed', ingressOnly({ matchLabels: { pod: 'b' }, matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['c'] }] }, { from: [{ namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['y', 'z'] }] }, podSelector: { matchLabels: { pod: 'a' }, matchExpressions: [{ key: 'pod', operator: 'Exists' }] } }] })))),
    c('namespaceSelector on namespace labels, then a namespace is relabelled', [
      { apply: [nsObj('y', { team: 'blue' }), nsObj('z', { team: 'green' }), np('x', 'team-blue', ingressOnly(podA, { from: [{ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'In', values: ['blue'] }] } }] }))] },
      { apply: [nsObj('z', { team: 'blue' })] },
    ], ['namespace-labels']),
    c('endPort: a UDP range covers 80 and 81, TCP stays closed', one(np('x', 'udp-range', ingressOnly({}, { ports: [{ port: 80, endPort: 81, protocol: 'UDP' }] })))),
    c('endPort: 79-80 from every namespace', one(np('y', 'range-79-80', ingressOnly(pods({ pod: 'b' }), { from: [{ namespaceSelector: {} }], ports: [{ port: 79, endPort: 80 }] })))),
    c('ipBlock 0.0.0.0/0 admits every pod to a pod under deny-all', one(np('x', 'deny-b', ingressOnly(pods({ pod: 'b' }))), np('x', 'allow-cidr-b', ingressOnly(pods({ pod: 'b' }), { from: [{ ipBlock: { cidr: '0.0.0.0/0' } }] }))), ['ipblock-pods']),
    c("ipBlock naming the second cluster's pod CIDR", one(np('y', 'from-c2', ingressOnly(podA, { from: [{ ipBlock: { cidr: '100.66.0.0/16' } }] }))), ['ipblock-pods']),
    c('a named port no pod declares allows nothing and still isolates', one(np('x', 'undeclared', ingressOnly(podA, { ports: [{ port: 'serve-99-tcp' }] }))), ['named-ports']),
    c('a named UDP port', one(np('y', 'named-udp', ingressOnly({}, { ports: [{ port: 'serve-81-udp', protocol: 'UDP' }] }))), ['named-ports']),
    c('deleting one of two stacked policies leaves the other in force', [
      { apply: [np('x', 'from-y-81', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('y') }], ports: [{ port: 81, protocol: 'TCP' }] })), np('x', 'from-z-80', ingressOnly(podA, { from: [{ namespaceSelector: nsNamed('z') }], ports: [{ port: 80 }] }))] },
      { delete: ['x/from-y-81'] },
    ]),
  ];
}

export function conformanceCases(ctx: CaseContext): Case[] {
  return [...upstream(ctx), ...api()];
}
