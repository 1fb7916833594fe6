// The kubectl-style verbs (issue 17): kinds as typed, where objects are stored, label changes as
// `kubectl label` makes them, the agent's PATCH route, exit statuses, get's table, and the kernel
// names the testbed derives from long cluster/node/pod names. No etcd here: what reaches etcd is
// covered by test/netns/verbs.test.ts.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { serveApi } from '../../src/agent/api.js';
import { callAgent } from '../../src/agent/client.js';
import type { Agent, LocalEndpoint } from '../../src/agent/agent.js';
import { applyLabelPatch, parseLabelArgs, validateLabelPatch } from '../../src/agent/labels.js';
import { formatSelector, formatTable, parseOutput } from '../../src/cli/get.js';
import { EXIT, exitCodeFor } from '../../src/cli/exitcodes.js';
import { main } from '../../src/cli/wiremesh.js';
import { ConfigError, LabelExistsError, NotFoundError, WiremeshError } from '../../src/errors.js';
import { objectRef, pluralOf, refOf, resolveKind, storeName } from '../../src/manifests/kinds.js';
import { KINDS, manifestName, validateManifest } from '../../src/manifests/validate.js';
import { ifName, socketPath } from '../../src/testbed/ifname.js';
import { podVeth } from '../../src/testbed/pod.js';
import { nodeRole, nodeUser } from '../../src/controlplane/rbac.js';
import { parseTopology } from '../../src/testbed/topology.js';

const dir = mkdtempSync(join(tmpdir(), 'wmverbs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** main() with stderr captured; its exit status. */
async function run(...argv: string[]): Promise<{ status: number; stderr: string }> {
  const write = process.stderr.write.bind(process.stderr);
  let stderr = '';
  process.stderr.write = ((s: string) => ((stderr += s), true)) as typeof process.stderr.write;
  const before = process.exitCode;
  try {
    const status = await main(argv);
    return { status, stderr };
  } finally {
    process.stderr.write = write;
    process.exitCode = before;
  }
}

describe('kinds as users type them', () => {
  it('any case, singular, plural, with the API group, and the standard short names', () => {
    for (const t of ['cnp', 'CNP', 'ciliumnetworkpolicy', 'CiliumNetworkPolicies', 'ciliumnetworkpolicies.cilium.io']) expect(resolveKind(t)).toBe('CiliumNetworkPolicy');
    for (const t of ['svc', 'service', 'Services']) expect(resolveKind(t)).toBe('Service');
    for (const t of ['netpol', 'networkpolicy', 'networkpolicies.networking.k8s.io']) expect(resolveKind(t)).toBe('NetworkPolicy');
    expect(resolveKind('ccnp')).toBe('CiliumClusterwideNetworkPolicy');
    expect(pluralOf('NetworkPolicy')).toBe('networkpolicies');
  });
  it('an unknown kind (or a short name of a kind not in the table) is a usage error listing what is known', () => {
    expect(() => resolveKind('pods')).toThrow(ConfigError);
    expect(() => resolveKind('networkpolicies.cilium.io')).toThrow(/unknown kind/);
    if (!('Namespace' in KINDS)) expect(() => resolveKind('ns')).toThrow(/known: services/);
  });
  it('every kind of the table is stored where apply stores a manifest of that kind', () => {
    const docs = [
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { ports: [{ port: 80 }] } },
      { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: { endpointSelector: {} } },
      { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: 'p' }, spec: { endpointSelector: {} } },
      { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'p' }, spec: { podSelector: {} } },
    ];
    for (const d of docs) {
      const m = validateManifest(d);
      expect(storeName(refOf(m))).toEqual(manifestName(m));
      expect(storeName(objectRef(m.kind, m.metadata.name, m.metadata.namespace))).toEqual(manifestName(m));
    }
  });
  it('names are DNS-1123 labels; a cluster-scoped kind drops -n', () => {
    expect(() => objectRef('Service', 'Web', 'shop')).toThrow(/NAME/);
    expect(() => objectRef('Service', 'web', 'Shop')).toThrow(/--namespace/);
    expect(objectRef('CiliumClusterwideNetworkPolicy', 'p', 'shop')).toEqual({ kind: 'CiliumClusterwideNetworkPolicy', name: 'p' });
    expect(objectRef('Service', 'web', undefined)).toEqual({ kind: 'Service', name: 'web', namespace: 'default' });
  });
});

describe('pod label changes', () => {
  it('parses k=v and k- as kubectl does', () => {
    expect(parseLabelArgs(['app=web', 'tier-', 'example.com/team=a'])).toEqual({ app: 'web', tier: null, 'example.com/team': 'a' });
    expect(parseLabelArgs(['empty='])).toEqual({ empty: '' });
  });
  it('refuses what the agent API refuses: bad keys and values, derived keys, a key twice, nothing to do', () => {
    expect(() => parseLabelArgs([])).toThrow(ConfigError);
    expect(() => parseLabelArgs(['app'])).toThrow(/neither k=v nor k-/);
    expect(() => parseLabelArgs(['app=a b'])).toThrow(/invalid label value/);
    expect(() => parseLabelArgs(['-bad=x'])).toThrow(/invalid label key/);
    expect(() => parseLabelArgs(['io.cilium.k8s.policy.cluster=c2'])).toThrow(/set by wiremesh/);
    expect(() => parseLabelArgs(['io.kubernetes.pod.namespace=kube-system'])).toThrow(/set by wiremesh/);
    expect(() => parseLabelArgs(['app=a', 'app-'])).toThrow(/changed twice/);
  });
  it('an existing key changes only with overwrite (even to its own value); a missing key removed is a warning', () => {
    expect(() => applyLabelPatch({ app: 'web' }, { app: 'db' }, false)).toThrow(LabelExistsError);
    expect(() => applyLabelPatch({ app: 'web' }, { app: 'web' }, false)).toThrow(/already has a value \(web\), and --overwrite is false/);
    expect(applyLabelPatch({ app: 'web' }, { app: 'db' }, true)).toEqual({ labels: { app: 'db' }, warnings: [] });
    expect(applyLabelPatch({ app: 'web', x: '1' }, { x: null, y: null, z: '2' }, false)).toEqual({ labels: { app: 'web', z: '2' }, warnings: ['label "y" not found.'] });
  });
  it('the PATCH body is checked field by field', () => {
    expect(validateLabelPatch({ labels: { a: 'b', c: null }, overwrite: true })).toEqual({ patch: { a: 'b', c: null }, overwrite: true });
    expect(() => validateLabelPatch({ labels: { a: 1 } })).toThrow(/invalid label value/);
    expect(() => validateLabelPatch({ labels: {}, replace: true })).toThrow(/unknown field/);
    expect(() => validateLabelPatch({ labels: [] })).toThrow(/must be a map/);
    expect(() => validateLabelPatch({ labels: { 'io.cilium.k8s.namespace.labels.team': 'x' } })).toThrow(/set by wiremesh/);
  });

  it('the agent API: 200 with the new labels, 409 without overwrite, 404 for an unknown pod, 400 for a derived key', async () => {
    const eps = new Map<string, LocalEndpoint>([['shop/web', { name: 'web', namespace: 'shop', labels: { app: 'web' }, ips: ['100.65.1.10'] }]]);
    const fake = {
      updateEndpoint: async (ns: string, name: string, change: (cur: LocalEndpoint) => LocalEndpoint) => {
        const cur = eps.get(`${ns}/${name}`);
        if (!cur) return undefined;
        const ep = change(cur);
        eps.set(`${ns}/${name}`, ep);
        return ep;
      },
    } as unknown as Agent;
    const sock = join(dir, 'agent.sock');
    const server = await serveApi(fake, sock);
    try {
      const ok = await callAgent(sock, 'PATCH', '/v1/endpoints/shop/web', { labels: { tier: 'front', gone: null } });
      expect(ok).toEqual({ status: 200, body: { endpoint: { name: 'web', namespace: 'shop', labels: { app: 'web', tier: 'front' }, ips: ['100.65.1.10'] }, warnings: ['label "gone" not found.'] } });
      expect(eps.get('shop/web')!.labels).toEqual({ app: 'web', tier: 'front' });
      expect((await callAgent(sock, 'PATCH', '/v1/endpoints/shop/web', { labels: { app: 'db' } })).status).toBe(409);
      expect(eps.get('shop/web')!.labels.app).toBe('web');
      expect((await callAgent(sock, 'PATCH', '/v1/endpoints/shop/web', { labels: { app: 'db' }, overwrite: true })).status).toBe(200);
      expect(eps.get('shop/web')!.labels.app).toBe('db');
      expect((await callAgent(sock, 'PATCH', '/v1/endpoints/shop/nope', { labels: { a: 'b' } })).status).toBe(404);
      const derived = await callAgent(sock, 'PATCH', '/v1/endpoints/shop/web', { labels: { 'io.cilium.k8s.policy.cluster': 'c2' } });
      expect(derived.status).toBe(400);
      expect(eps.get('shop/web')!.labels).toEqual({ app: 'db', tier: 'front' });
    } finally {
      server.close();
    }
  });
});

describe('exit statuses', () => {
  it('map errors to 1 failed, 2 usage, 3 not found, 4 conflict', () => {
    expect(exitCodeFor(new ConfigError('f', 'bad'))).toBe(EXIT.usage);
    expect(exitCodeFor(new NotFoundError('x'))).toBe(EXIT.notFound);
    expect(exitCodeFor(new LabelExistsError('app', 'web'))).toBe(EXIT.conflict);
    expect(exitCodeFor(new WiremeshError('WM_LABEL_EXISTS', 'x'))).toBe(EXIT.conflict);
    expect(exitCodeFor(new WiremeshError('WM_ETCD_UNREACHABLE', 'x'))).toBe(EXIT.failed);
    expect(exitCodeFor(new Error('x'))).toBe(EXIT.failed);
    expect(exitCodeFor({ code: 'commander.missingArgument', exitCode: 1 })).toBe(EXIT.usage);
    expect(exitCodeFor({ code: 'commander.helpDisplayed', exitCode: 0 })).toBe(EXIT.ok);
  });
  it('the verbs refuse bad arguments before reaching etcd or an agent (status 2)', async () => {
    const file = join(dir, 'p.yaml');
    writeFileSync(file, 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: { name: p }\nspec: { endpointSelector: {} }\n');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: { name: p }\nspec: { endpointSelector: {}, ingress: [{ fromEntities: [moon] }] }\n');
    const etcd = ['--etcd', 'http://198.18.255.1:1'];
    expect((await run('delete', '--cluster', 'c1', ...etcd)).status).toBe(2);
    expect((await run('delete', 'cnp', '--cluster', 'c1', ...etcd)).status).toBe(2);
    expect((await run('delete', 'cnp', 'p', '-f', file, '--cluster', 'c1', ...etcd)).stderr).toMatch(/either -f FILE or KIND NAME/);
    expect((await run('delete', 'pods', 'p', '--cluster', 'c1', ...etcd)).stderr).toMatch(/unknown kind "pods"/);
    expect((await run('delete', '-f', bad, '--cluster', 'c1', ...etcd)).stderr).toMatch(/unknown entity "moon"/);
    expect((await run('delete', 'cnp', 'p')).status).toBe(2); // --cluster is required
    expect((await run('get', 'bogus', '--cluster', 'c1', ...etcd)).status).toBe(2);
    expect((await run('get', 'cnp', '-A', '-n', 'x', '--cluster', 'c1', ...etcd)).stderr).toMatch(/cannot be combined/);
    expect((await run('get', 'cnp', '-o', 'xml', '--cluster', 'c1', ...etcd)).stderr).toMatch(/--output/);
    expect((await run('pod', 'label', 'web')).status).toBe(2);
    expect((await run('pod', 'label', 'web', 'io.cilium.k8s.policy.cluster=c2', '--socket', join(dir, 'none.sock'))).status).toBe(2);
    expect((await run('pod', 'label', 'web', 'app', '--socket', join(dir, 'none.sock'))).status).toBe(2);
  });
});

describe('get output', () => {
  it('selectors print as kubectl prints them', () => {
    expect(formatSelector({})).toBe('<none>');
    expect(formatSelector({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 't', operator: 'In', values: ['a', 'b'] }, { key: 'x', operator: 'DoesNotExist' }] })).toBe('app=web,t in (a,b),!x');
    expect(parseOutput(undefined)).toBe('table');
  });
  it('a table with the kind columns and REVISION, NAMESPACE only for -A', () => {
    const m = validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop', labels: { a: 'b' } }, spec: { clusterIP: '100.127.1.1', ports: [{ port: 80 }] } });
    const rows = formatTable('Service', [{ manifest: m, key: 'k', revision: 42 }], { allNamespaces: true, namespaced: true, wide: true });
    expect(rows[0]!.split(/\s+/)).toEqual(['NAMESPACE', 'NAME', 'CLUSTER-IP', 'PORT(S)', 'GLOBAL', 'REVISION', 'LABELS']);
    expect(rows[1]!.split(/\s+/)).toEqual(['shop', 'web', '100.127.1.1', '80/TCP', 'false', '42', 'a=b']);
    expect(formatTable('Service', [{ manifest: m, key: 'k', revision: 42 }], { allNamespaces: false, namespaced: true, wide: false })[0]).toMatch(/^NAME /);
  });
});

describe('kernel names from long names', () => {
  it('names that fit stay as they are; longer ones get a stable, distinct 15-byte form', () => {
    expect(podVeth('web')).toBe('vpweb');
    expect(podVeth('a'.repeat(13))).toBe(`vp${'a'.repeat(13)}`);
    const long = ['frontend-0123456789-a', 'frontend-0123456789-b', 'x'.repeat(63)];
    const names = long.map(podVeth);
    for (const n of names) expect(n.length).toBe(15);
    expect(new Set(names).size).toBe(3);
    expect(podVeth(long[0]!)).toBe(names[0]); // stable
    expect(names[0]).toMatch(/^vpfron_[0-9a-f]{8}$/);
    expect(ifName('ux', 'gateway-dns-host')).toHaveLength(15);
  });
  it('socket paths stay within sun_path', () => {
    const d = '/run/wiremesh-testbed/abcdefghijkl';
    expect(socketPath(d, 'c1-n1')).toBe(`${d}/c1-n1.sock`);
    const p = socketPath(d, `${'c'.repeat(32)}-${'n'.repeat(63)}`);
    expect(Buffer.byteLength(p)).toBeLessThanOrEqual(107);
    expect(p).not.toBe(socketPath(d, `${'c'.repeat(32)}-${'n'.repeat(62)}m`));
  });
  it("a node's etcd user (its certificate's CN) stays within X.509's 64 characters; its role grants the full name", () => {
    expect(nodeUser('n1')).toBe('node-n1');
    const long = `node-${'a'.repeat(58)}`;
    expect(nodeUser(long)).toHaveLength(64);
    expect(nodeUser(long)).not.toBe(nodeUser(`node-${'a'.repeat(57)}b`));
    const role = nodeRole('cluster-with-thirty-two-chars-xy', long);
    expect(role.user).toBe(nodeUser(long));
    expect(role.grants.some((g) => 'key' in g && g.key.endsWith(`/${long}`))).toBe(true);
  });
  it('the testbed takes cluster names up to 32 characters and node/pod names up to 63', () => {
    const c32 = 'cluster-with-a-name-of-32-chars-';
    const n63 = `node-${'x'.repeat(58)}`;
    const t = parseTopology(`clusters:
  - { name: cluster-one, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1] }
  - { name: cluster-three, id: 3, podCIDR: 100.67.0.0/16, nodes: [${n63}] }
  - { name: ${c32.slice(0, 31)}x, id: 4, podCIDR: 100.68.0.0/16, nodes: [n1] }
pods:
  - { name: ${'p'.repeat(63)}, cluster: cluster-three, node: ${n63} }
`);
    expect(t.clusters.map((c) => c.name)).toEqual(['cluster-one', 'cluster-three', `${c32.slice(0, 31)}x`]);
    expect(() => parseTopology(`clusters:\n  - { name: ${'c'.repeat(33)}, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1] }\n`)).toThrow(/1-32 characters/);
    expect(() => parseTopology(`clusters:\n  - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [${'n'.repeat(64)}] }\n`)).toThrow(/DNS label/);
  });
});
