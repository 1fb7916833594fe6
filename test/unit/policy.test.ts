// Policy semantics (rules -> compiled maps -> verdict) without a network, and
// the native ipcache/policy tables through a TUN-less device.
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { clusterIdentity, endpointIdentityLabels, LOCAL_SCOPE, RESERVED, type Labels } from '../../src/identity/identity.js';
import { validateManifest } from '../../src/manifests/validate.js';
import { parseIP } from '../../src/net/ip.js';
import { compileEndpoint, encodeEntries, evaluate, IdentityUniverse } from '../../src/policy/compile.js';
import { enforcedRules, rulePrefixes, type StoredPolicy } from '../../src/policy/repository.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { ipcacheRow } from '../../src/native/rows.js';
import { testhooks } from '../../src/native/testhooks.js';

const TCP = 6;
const UDP = 17;
const ICMP = 1;

/** A mesh of identities: app labels per cluster and namespace. */
function universe(local: string): { u: IdentityUniverse; id: (cluster: number, ns: string, labels: Labels) => number } {
  const u = new IdentityUniverse(local);
  let n = 256;
  const id = (cluster: number, ns: string, labels: Labels) => {
    const i = clusterIdentity(cluster, n++);
    u.identities.set(i, endpointIdentityLabels(labels, ns, `c${cluster}`));
    return i;
  };
  return { u, id };
}

function policies(cluster: string, yaml: string): StoredPolicy[] {
  return yaml.split('\n---\n').map((doc, i) => {
    const m = validateManifest(parse(doc));
    return { cluster, name: `${m.metadata.namespace ?? '_clusterwide'}/p${i}`, manifest: m };
  });
}

function verdictFor(stored: StoredPolicy[], local: string, u: IdentityUniverse, subject: Labels, dir: 'ingress' | 'egress', remote: number, proto: number, port: number, defaultLocalCluster = true) {
  const warnings: string[] = [];
  const rules = enforcedRules(stored, local, defaultLocalCluster, warnings);
  for (const [t, p] of rulePrefixes(rules)) u.cidrIdentity(t, p);
  const pol = compileEndpoint(subject, rules, u, (r) => rules.indexOf(r) + 1);
  const v = evaluate(pol[dir], remote, proto, port, proto === TCP || proto === UDP);
  return { verdict: v.verdict, rule: v.entry ? rules[v.entry.rule - 1]?.id : undefined, warnings };
}

describe('policy semantics', () => {
  const { u, id } = universe('c1');
  const fe1 = id(1, 'shop', { app: 'frontend' });
  const fe2 = id(2, 'shop', { app: 'frontend' });
  const fe3 = id(3, 'shop', { app: 'frontend' });
  const feOther = id(1, 'other', { app: 'frontend' });
  const be = endpointIdentityLabels({ app: 'backend' }, 'shop', 'c1');

  it('allows only app=frontend, only from the local cluster by default, only in the namespace', () => {
    const p = policies('c1', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: be, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress: [{ fromEndpoints: [{ matchLabels: { app: frontend } }], toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }] }]`);
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 8080).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 8081).verdict).toBe('default-deny');
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, ICMP, 0).verdict).toBe('default-deny');
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe2, TCP, 8080).verdict).toBe('default-deny'); // other cluster
    expect(verdictFor(p, 'c1', u, be, 'ingress', feOther, TCP, 8080).verdict).toBe('default-deny'); // other namespace
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe2, TCP, 8080, false).verdict).toBe('allow'); // policy-default-local-cluster off
    expect(verdictFor(p, 'c1', u, be, 'egress', fe1, TCP, 8080).verdict).toBe('not-enforced');
  });

  it('names clusters with matchExpressions: clusters 1 and 2 in, 3 out', () => {
    const p = policies('c2', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: be, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress:
    - fromEndpoints:
        - matchLabels: { app: frontend }
          matchExpressions: [{ key: io.cilium.k8s.policy.cluster, operator: In, values: [c1, c2] }]`);
    const be2 = endpointIdentityLabels({ app: 'backend' }, 'shop', 'c2');
    expect(verdictFor(p, 'c2', u, be2, 'ingress', fe1, TCP, 80).verdict).toBe('allow');
    expect(verdictFor(p, 'c2', u, be2, 'ingress', fe2, TCP, 80).verdict).toBe('allow');
    expect(verdictFor(p, 'c2', u, be2, 'ingress', fe3, TCP, 80).verdict).toBe('default-deny');
  });

  it('deny beats allow, port ranges, protocols', () => {
    const p = policies('c1', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: be, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress: [{ fromEntities: [all], toPorts: [{ ports: [{ port: "9000", endPort: 9100, protocol: TCP }, { port: "53", protocol: UDP }] }] }]
  ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: frontend } }], toPorts: [{ ports: [{ port: "9050", protocol: TCP }] }] }]`);
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 9000).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 9100).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 9101).verdict).toBe('default-deny');
    const d = verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 9050);
    expect(d.verdict).toBe('deny');
    expect(d.rule).toBe('c1/shop/p0:ingressDeny[0]');
    expect(verdictFor(p, 'c1', u, be, 'ingress', RESERVED.world, TCP, 9050).verdict).toBe('allow'); // deny names frontends only
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, UDP, 53).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 53).verdict).toBe('default-deny');
  });

  it('entities and CIDR sets with except: the longest CIDR identity decides', () => {
    const p = policies('c1', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: be, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress:
    - fromCIDRSet: [{ cidr: 100.120.0.0/16, except: [100.120.9.0/24] }]
    - fromEntities: [host, remote-node]`);
    verdictFor(p, 'c1', u, be, 'ingress', RESERVED.world, TCP, 1); // allocates the CIDR identities
    const wide = u.cidrs.get('100.120.0.0/16')!.id;
    const except = u.cidrs.get('100.120.9.0/24')!.id;
    expect(wide).toBeGreaterThanOrEqual(LOCAL_SCOPE);
    expect(verdictFor(p, 'c1', u, be, 'ingress', wide, TCP, 1).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', except, TCP, 1).verdict).toBe('default-deny');
    expect(verdictFor(p, 'c1', u, be, 'ingress', RESERVED.world, TCP, 1).verdict).toBe('default-deny');
    expect(verdictFor(p, 'c1', u, be, 'ingress', RESERVED.host, ICMP, 0).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', RESERVED['remote-node'], TCP, 22).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 22).verdict).toBe('default-deny');
  });

  it('NetworkPolicy: namespace isolation, namespaceSelector, empty ingress = deny all', () => {
    const p = policies('c1', `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: iso, namespace: shop }
spec:
  podSelector: {}
  ingress: [{ from: [{ podSelector: {} }] }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: lockdown, namespace: vault }
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: from-other, namespace: shop }
spec:
  podSelector: { matchLabels: { app: backend } }
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: other } } }], ports: [{ port: 443 }] }]`);
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 1).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', feOther, TCP, 1).verdict).toBe('default-deny');
    expect(verdictFor(p, 'c1', u, be, 'ingress', feOther, TCP, 443).verdict).toBe('allow');
    expect(verdictFor(p, 'c1', u, be, 'ingress', feOther, UDP, 443).verdict).toBe('default-deny'); // ports default to TCP
    const vault = endpointIdentityLabels({ app: 'db' }, 'vault', 'c1');
    expect(verdictFor(p, 'c1', u, vault, 'ingress', fe1, TCP, 1).verdict).toBe('default-deny');
    expect(verdictFor(p, 'c1', u, vault, 'egress', fe1, TCP, 1).verdict).toBe('default-deny');
  });

  it("mesh-wide policies apply in every cluster; other clusters' plain ones do not", () => {
    const doc = (meshWide: boolean) => `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: { name: lock${meshWide ? '-mw' : ''}, annotations: { wiremesh.io/mesh-wide: "${meshWide}" } }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress: [{}]`;
    expect(verdictFor(policies('c2', doc(false)), 'c1', u, be, 'ingress', fe1, TCP, 80).verdict).toBe('not-enforced');
    expect(verdictFor(policies('c2', doc(true)), 'c1', u, be, 'ingress', fe1, TCP, 80).verdict).toBe('default-deny');
  });

  it('enableDefaultDeny: false keeps a direction open while its deny rules still apply', () => {
    const p = policies('c1', `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: be, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  enableDefaultDeny: { ingress: false }
  ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: frontend } }] }]`);
    expect(verdictFor(p, 'c1', u, be, 'ingress', fe1, TCP, 80).verdict).toBe('deny');
    expect(verdictFor(p, 'c1', u, be, 'ingress', RESERVED.world, TCP, 80).verdict).toBe('allow');
  });
});

describe('native ipcache and policy maps', () => {
  const devs: WireGuardDevice[] = [];
  afterEach(() => {
    for (const d of devs.splice(0)) d.close();
  });
  const row = (cidrText: string, identity: number, endpoint: number) => {
    const [ip, len] = cidrText.split('/');
    const addr = parseIP(ip!)!;
    return ipcacheRow(addr, len === undefined ? addr.length * 8 : Number(len), identity, endpoint);
  };

  it('longest prefix match across host entries and prefixes, v4 and v6; removal', () => {
    const d = new WireGuardDevice({ createTun: false });
    devs.push(d);
    expect(() => d.native.ipcacheLookup(parseIP('1.2.3.4')!)).toThrow(/not enabled/);
    d.native.enablePolicy();
    d.native.ipcacheUpdate(Buffer.concat([row('100.64.0.0/10', LOCAL_SCOPE + 1, 0), row('100.65.1.0/24', LOCAL_SCOPE + 2, 0), row('100.65.1.7', 70000, 3), row('fd00::/8', LOCAL_SCOPE + 3, 0), row('fd00::7', 70001, 0)]), Buffer.alloc(0));
    const look = (ip: string) => d.native.ipcacheLookup(parseIP(ip)!);
    expect(look('100.65.1.7')).toEqual({ identity: 70000, endpoint: 3 });
    expect(look('100.65.1.8')).toEqual({ identity: LOCAL_SCOPE + 2, endpoint: 0 });
    expect(look('100.66.0.1')).toEqual({ identity: LOCAL_SCOPE + 1, endpoint: 0 });
    expect(look('8.8.8.8')).toBeNull();
    expect(look('fd00::7')).toEqual({ identity: 70001, endpoint: 0 });
    expect(look('fd00::8')).toEqual({ identity: LOCAL_SCOPE + 3, endpoint: 0 });
    d.native.ipcacheUpdate(Buffer.alloc(0), Buffer.concat([row('100.65.1.0/24', 0, 0), row('100.65.1.7', 0, 0)]));
    expect(look('100.65.1.7')).toEqual({ identity: LOCAL_SCOPE + 1, endpoint: 0 });
    expect(d.native.counters().ipcache_entries).toBe(3);
  });

  it('rejects malformed tables with a clear error and keeps serving', () => {
    const d = new WireGuardDevice({ createTun: false });
    devs.push(d);
    d.native.enablePolicy();
    expect(() => d.native.ipcacheUpdate(Buffer.alloc(27), Buffer.alloc(0))).toThrow(/28 bytes/);
    // family 5; 16 (the address length, this row's encoding before rows.h made it 4|6 everywhere); /33 in IPv4
    for (const [family, len] of [[5, 0], [16, 32], [4, 33]] as const) {
      const bad = Buffer.alloc(28);
      bad[0] = family;
      bad[1] = len;
      expect(() => d.native.ipcacheUpdate(bad, Buffer.alloc(0))).toThrow(/family/);
      expect(() => d.native.ipcacheUpdate(Buffer.alloc(0), bad)).toThrow(/family/);
    }
    const inverted = encodeEntries([{ identity: 0, proto: 6, deny: false, lo: 90, hi: 80, rule: 1 }]);
    expect(() => d.native.setEndpointPolicy(1, 70000, inverted, null)).toThrow(/port_lo <= port_hi/);
    d.native.setEndpointPolicy(1, 70000, encodeEntries([{ identity: 0, proto: 6, deny: false, lo: 80, hi: 90, rule: 1 }]), null);
    expect(d.native.drainFlows().records.length).toBe(0);
  });
});

describe('native policy microbenchmark harness', () => {
  it('runs every kind and finds every entry it inserted (timings are for bench:policy, not asserted)', () => {
    for (const kind of ['ipcache', 'ipcache+policy', 'conntrack', 'engine'] as const) {
      const r = testhooks.policyBench(kind, 1000, 100, 10_000);
      expect(r.hits).toBe(10_000);
    }
    expect(() => testhooks.policyBench('nope' as 'ipcache', 10, 1, 1)).toThrow(/unknown benchmark/);
  });
});
