// Identity-aware policy across 3 clusters on the testbed: the scenarios of the
// Cilium documentation and more, a full connectivity matrix checked against
// `wiremesh policy trace`, flow records, policy updates under an established
// flow, and a hostile node (forged identity, spoofed source).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callAgent } from '../../src/agent/client.js';
import { canRunNetns, execIn, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { cliIn, stopRole, testbedClusterAccess, testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import type { Flow } from '../../src/policy/flows.js';
import type { TraceResult } from '../../src/policy/trace.js';
import { ECHO, startEchoServers } from '../helpers/echo.js';
import { shopPod, writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');
const STREAM = join(ROOT, 'test', 'helpers', 'tcpstream.mjs');
const ROGUE = join(ROOT, 'test', 'helpers', 'rogue-node.mjs');
const PORTS = [7000, 7050, 7200];
const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');

const C1 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: backend, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: frontend } }]
      toPorts: [{ ports: [{ port: "7000", endPort: 7100, protocol: TCP }] }]
  ingressDeny:
    - fromEndpoints: [{ matchLabels: { app: frontend } }]
      toPorts: [{ ports: [{ port: "7050", protocol: TCP }] }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: isolate, namespace: vault }
spec:
  podSelector: {}
  ingress: [{ from: [{ podSelector: {} }] }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: frontend-from-c2, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: frontend } }
  ingress:
    - fromEndpoints: [{ matchLabels: { io.cilium.k8s.policy.cluster: c2 } }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: probe-egress, namespace: tools }
spec:
  endpointSelector: { matchLabels: { app: probe } }
  egress:
    - toEntities: [cluster]
    - toCIDRSet: [{ cidr: 100.66.0.0/16, except: [100.66.1.128/25] }]
`;

const C2 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: backend, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress:
    - fromEndpoints:
        - matchLabels: { app: frontend }
          matchExpressions: [{ key: io.cilium.k8s.policy.cluster, operator: In, values: [c1, c2] }]
`;

describe.skipIf(!enabled)('identity-aware policy on a 3-cluster mesh', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmpol-'));
  const file = join(dir, 'topo.yaml');
  const name = `p${process.pid % 100000}`;
  let st: TestbedState;
  const procs: ChildProcess[] = [];
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;
  const node = (c: string, n: string) => st.clusters.find((x) => x.name === c)!.nodes.find((x) => x.name === n)!;
  const cp = (c: string) => st.clusters.find((x) => x.name === c)!.cpNetns;
  const flags = (c: string) => ['--cluster', c];

  const answered = (out: string, dsts: string[]): Set<string> => {
    const ips = dsts.map((d) => pod(d).ip);
    const ok = new Set<string>();
    for (const line of out.split('\n')) {
      const [ip, res] = line.trim().split(' ');
      if (res === 'ok') ok.add(dsts[ips.indexOf(ip!)]!);
    }
    return ok;
  };

  /** TCP echo from src to every destination on port: names of those that answered. */
  function reach(src: string, dsts: string[], port: number): Set<string> {
    return answered(execIn(pod(src).netns, process.execPath, ECHO, 'client', String(port), ...dsts.map((d) => pod(d).ip)).out, dsts);
  }

  /** reach() for many sources at once (failures wait out a 3 s timeout: run them side by side). */
  function reachAll(jobs: Array<{ src: string; dsts: string[]; port: number }>): Promise<Set<string>[]> {
    return Promise.all(
      jobs.map(
        (j) =>
          new Promise<Set<string>>((resolve) => {
            const p = spawn('ip', ['netns', 'exec', pod(j.src).netns, process.execPath, ECHO, 'client', String(j.port), ...j.dsts.map((d) => pod(d).ip)], { stdio: ['ignore', 'pipe', 'ignore'] });
            let out = '';
            p.stdout!.on('data', (d) => (out += d));
            p.once('close', () => resolve(answered(out, j.dsts)));
          }),
      ),
    );
  }

  function flows(c: string, n: string, query: string): Flow[] {
    // through the CLI, as a user would
    const out = execFileSync(process.execPath, [WIREMESH, 'observe', '--socket', node(c, n).socket, '--last', '5000', '-o', 'json', ...query.split('&').filter(Boolean).flatMap((kv) => { const [k, v] = kv.split('='); return [`--${k}`, v!]; })], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Flow);
  }

  beforeAll(async () => {
    writeFileSync(join(dir, 'c1.yaml'), C1);
    writeFileSync(join(dir, 'c2.yaml'), C2);
    writeTopology(file, {
      name,
      clusters: [2, 1, 1],
      pods: [
        shopPod('fe1', 'c1/n1', 'frontend'),
        shopPod('be1', 'c1/n2', 'backend'),
        shopPod('be1b', 'c1/n1', 'backend'),
        { name: 'db1', cluster: 'c1', node: 'n2', namespace: 'vault', labels: { app: 'db' } },
        { name: 'cli1', cluster: 'c1', node: 'n2', namespace: 'vault', labels: { app: 'client' } },
        { name: 'probe1', cluster: 'c1', node: 'n1', namespace: 'tools', labels: { app: 'probe' } },
        shopPod('fe2', 'c2/n1', 'frontend'),
        shopPod('be2', 'c2/n1', 'backend'),
        shopPod('fe3', 'c3/n1', 'frontend'),
      ],
      manifests: { c1: [join(dir, 'c1.yaml')], c2: [join(dir, 'c2.yaml')] },
    });
    st = await testbedUp(file);
    for (const port of PORTS) procs.push(...(await startEchoServers(st.pods, port)));
    // every agent has compiled the policies and every remote identity
    await waitFor(async () => {
      for (const c of st.clusters)
        for (const n of c.nodes) {
          const s = (await callAgent(n.socket, 'GET', '/v1/status')).body as { policy?: { identities: number } };
          if ((s.policy?.identities ?? 0) < 8 + 8) return false; // reserved + one per distinct label set (be1 and be1b share one)
        }
      return true;
    }, 30_000);
  }, 180_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('identities: cluster-scoped numbers, one per label set across nodes, carrying cluster and namespace labels', async () => {
    const ids = new Map<string, number>();
    for (const c of st.clusters)
      for (const n of c.nodes) {
        const eps = ((await callAgent(n.socket, 'GET', '/v1/policy')).body as { endpoints: Array<{ endpoint: string; identity: number }> }).endpoints;
        for (const e of eps) ids.set(`${c.name}/${e.endpoint}`, e.identity);
      }
    expect(ids.get('c1/shop/be1')).toBe(ids.get('c1/shop/be1b')); // same labels on two nodes
    expect(ids.get('c1/shop/fe1')).not.toBe(ids.get('c1/shop/be1'));
    expect(ids.get('c1/shop/fe1')! >>> 16).toBe(1);
    expect(ids.get('c2/shop/fe2')! >>> 16).toBe(2);
    expect(ids.get('c3/shop/fe3')! >>> 16).toBe(3);
  });

  it('the connectivity matrix equals what `policy trace` predicts, and the documented scenarios hold', async () => {
    const names = st.pods.map((p) => p.name);
    const actual = new Map<string, boolean>();
    const jobs = names.flatMap((src) => PORTS.map((port) => ({ src, port, dsts: names.filter((d) => d !== src) })));
    const results = await reachAll(jobs);
    jobs.forEach((j, i) => {
      for (const d of j.dsts) actual.set(`${j.src}>${d}:${j.port}`, results[i]!.has(d));
    });
    const specs = st.pods.map((p) => `${p.cluster}/${p.namespace}/${p.name}`);
    const traces = JSON.parse(cliIn(cp('c1'), ['policy', 'trace', ...flags('c1'), '--src', specs.join(','), '--dst', specs.join(','), '--dport', PORTS.join(','), '--json', ...traceEtcd()])) as TraceResult[];
    const mismatches: string[] = [];
    for (const t of traces) {
      const src = t.src.endpoint!.name;
      const dst = t.dst.endpoint!.name;
      if (src === dst) continue;
      const key = `${src}>${dst}:${t.dport}`;
      if (actual.get(key) !== (t.verdict === 'ALLOWED')) mismatches.push(`${key}: data path ${actual.get(key) ? 'allowed' : 'denied'}, trace ${t.verdict}`);
    }
    expect(mismatches).toEqual([]);
    const a = (k: string) => actual.get(k);
    // allow only app=frontend to reach app=backend (local cluster by default), on the port range
    expect([a('fe1>be1:7000'), a('fe1>be1b:7000'), a('probe1>be1:7000'), a('fe2>be1:7000')]).toEqual([true, true, false, false]);
    expect(a('fe1>be1:7200')).toBe(false); // outside 7000-7100
    expect(a('fe1>be1:7050')).toBe(false); // deny beats allow
    // frontends from clusters 1 and 2 reach the backend in cluster 2; cluster 3 is blocked
    expect([a('fe1>be2:7000'), a('fe2>be2:7000'), a('fe3>be2:7000')]).toEqual([true, true, false]);
    // frontend only from cluster 2 (replies of fe1's own flows still pass: conntrack)
    expect([a('fe2>fe1:7000'), a('fe3>fe1:7000'), a('be1b>fe1:7000')]).toEqual([true, false, false]);
    // namespace isolation
    expect([a('cli1>db1:7000'), a('fe1>db1:7000')]).toEqual([true, false]);
    // egress to the cluster entity only: c1 endpoints pass egress, other clusters' do not
    expect([a('probe1>fe1:7000'), a('probe1>fe2:7000')]).toEqual([false, false]);
    expect(a('probe1>be1b:7000')).toBe(false);
    // unselected endpoints are open
    expect(a('fe3>fe2:7000')).toBe(true);
  }, 120_000);

  const traceEtcd = (): string[] => testbedClusterAccess('c1', name).flags;

  it('flow records say who was dropped, why and by which rule', async () => {
    reach('fe1', ['be1'], 7050);
    await new Promise((r) => setTimeout(r, 300));
    const dropped = (flows('c1', 'n2', 'verdict=DROPPED&pod=be1&port=7050')).filter((f) => f.source.pod === 'fe1');
    expect(dropped.length).toBeGreaterThan(0);
    const f = dropped.at(-1)!;
    expect(f).toMatchObject({ verdict: 'DROPPED', dropReason: 'policy-denied', direction: 'ingress', protocol: 'TCP', rule: 'c1/shop/cnp.backend:ingressDeny[0]' });
    expect(f.source).toMatchObject({ cluster: 'c1', namespace: 'shop', pod: 'fe1', port: expect.any(Number) });
    expect(f.source.labels?.app).toBe('frontend');
    expect(f.destination).toMatchObject({ pod: 'be1', port: 7050 });
    const fromC3 = (flows('c2', 'n1', 'verdict=DROPPED&cluster=c3')).filter((x) => x.destination.pod === 'be2');
    expect(fromC3.at(-1)).toMatchObject({ dropReason: 'policy-default-deny', source: { cluster: 'c3', pod: 'fe3' } });
    const allowed = (flows('c1', 'n2', 'verdict=FORWARDED&pod=be1&port=7000')).filter((x) => x.source.pod === 'fe1');
    expect(allowed.at(-1)).toMatchObject({ rule: 'c1/shop/cnp.backend:ingress[0]', direction: 'ingress' });
    const status = (await callAgent(node('c1', 'n2').socket, 'GET', '/v1/status')).body as { counters: Record<string, number> };
    expect(status.counters.drop_policy_denied).toBeGreaterThan(0);
    expect(status.counters.drop_policy_default_deny).toBeGreaterThan(0);
  });

  it('CIDR rules with except decide traffic to addresses outside the mesh', async () => {
    // addresses in c2's node pod CIDR (routed into the mesh) that are no endpoint
    execIn(pod('probe1').netns, 'ping', '-c', '1', '-W', '1', '100.66.1.100');
    execIn(pod('probe1').netns, 'ping', '-c', '1', '-W', '1', '100.66.1.200');
    await new Promise((r) => setTimeout(r, 300));
    const fl = flows('c1', 'n1', 'pod=probe1');
    const to = (ip: string) => fl.filter((f) => f.destination.ip === ip && f.direction === 'egress').at(-1);
    expect(to('100.66.1.100')).toMatchObject({ verdict: 'FORWARDED', destination: { identityText: 'cidr:100.66.0.0/16' } });
    expect(to('100.66.1.200')).toMatchObject({ verdict: 'DROPPED', dropReason: 'policy-default-deny', destination: { identityText: 'cidr:100.66.1.128/25' } });
  });

  it('a policy update keeps established allowed flows while new ones follow the new policy', async () => {
    const stream = new Promise<string>((resolve) => {
      const p = spawn('ip', ['netns', 'exec', pod('fe1').netns, process.execPath, STREAM, pod('be1').ip, '7000', '6'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      p.once('close', () => resolve(out));
    });
    await new Promise((r) => setTimeout(r, 1500));
    // narrow the allowed range to 7001-7100: 7000 is no longer allowed for new flows
    writeFileSync(join(dir, 'c1b.yaml'), C1.replace('port: "7000", endPort: 7100', 'port: "7001", endPort: 7100'));
    cliIn(cp('c1'), ['apply', '--cluster', 'c1', ...traceEtcd(), '-f', join(dir, 'c1b.yaml')]);
    await waitFor(() => !reach('fe1', ['be1'], 7000).has('be1'), 10_000);
    const out = await stream;
    const m = /sent (\d+) echoed (\d+) errors (\d+)/.exec(out);
    expect(m, out).not.toBeNull();
    expect(Number(m![3])).toBe(0);
    expect(Number(m![2])).toBeGreaterThan(50);
    expect(Number(m![2])).toBe(Number(m![1]));
    cliIn(cp('c1'), ['apply', '--cluster', 'c1', ...traceEtcd(), '-f', join(dir, 'c1.yaml')]);
    await waitFor(() => reach('fe1', ['be1'], 7000).has('be1'), 10_000);
  }, 30_000);

  it('a hostile node: a forged identity of another cluster and a spoofed source are dropped, and the flow records say why', async () => {
    // c3/n1 turns hostile: its agent dies, a rogue engine takes its key and port
    // and tags fe3's packets with c1's frontend identity.
    const feIdentity = ((await callAgent(node('c1', 'n1').socket, 'GET', '/v1/policy')).body as { endpoints: Array<{ endpoint: string; identity: number }> }).endpoints.find((e) => e.endpoint === 'shop/fe1')!.identity;
    const target = node('c1', 'n2');
    const targetKey = ((await callAgent(target.socket, 'GET', '/v1/status')).body as { publicKey: string }).publicKey;
    expect(await stopRole(st, 'c3-n1-agent')).toBe(true);
    const rogue = spawn('ip', ['netns', 'exec', node('c3', 'n1').netns, process.execPath, ROGUE, join(st.dir, 'keys', 'c3-n1.key'), 'wmrogue', targetKey, `${target.address}:51820`, target.podCIDR, pod('fe3').ip, String(feIdentity)], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(rogue);
    await new Promise<void>((resolve, reject) => {
      rogue.stdout!.once('data', () => resolve());
      rogue.once('exit', (code) => reject(new Error(`rogue exited ${code}`)));
    });
    // forged: fe3 -> be1 on 7000 (allowed for c1 frontends) must not pass
    expect(reach('fe3', ['be1'], 7000).has('be1')).toBe(false);
    // spoofed: a source address of c1's n1 from c3's node (a hostile node does not validate its pods' sources:
    // its pod guard goes first, so the spoofed packet reaches the tunnel and c1/n2 must catch it)
    expect(execIn(node('c3', 'n1').netns, 'nft', 'delete', 'table', 'netdev', 'wiremesh_pods').ok).toBe(true);
    execIn(pod('fe3').netns, 'ip', 'addr', 'add', '100.65.1.99/32', 'dev', 'eth0');
    execIn(pod('fe3').netns, 'ping', '-c', '2', '-W', '1', '-I', '100.65.1.99', pod('be1').ip);
    await new Promise((r) => setTimeout(r, 300));
    const drops = flows('c1', 'n2', 'verdict=DROPPED');
    const forged = drops.filter((f) => f.dropReason === 'identity-cluster-mismatch');
    expect(forged.length).toBeGreaterThan(0);
    expect(forged.at(-1)!.source.identity).toBe(feIdentity);
    expect(forged.at(-1)!.destination.pod).toBe('be1');
    const spoofed = drops.filter((f) => f.dropReason === 'source-not-in-allowed-ips');
    expect(spoofed.at(-1)).toMatchObject({ source: { ip: '100.65.1.99' }, destination: { pod: 'be1' } });
    const counters = ((await callAgent(target.socket, 'GET', '/v1/status')).body as { counters: Record<string, number> }).counters;
    expect(counters.drop_identity_cluster_mismatch).toBeGreaterThan(0);
    expect(counters.drop_source_not_allowed).toBeGreaterThan(0);
  }, 60_000);

  // Red team s15 (test/unit/redteam-s15-transit.test.ts has the engine's cases): the hostile node tags its pod's
  // packets `host` (read as remote-node) and sends them through c1/n2's tunnel to c1's etcd (198.18.1.2, no pod,
  // not c1/n2): before s15 c1/n2's host firewall let remote-node through to anything not a pod and its kernel
  // forwarded the SYN onto c1's underlay. The etcd host's capture must see nothing from the pod's address.
  it("a hostile node cannot route through another cluster's node into its underlay (its etcd)", async () => {
    for (const p of procs.filter((x) => x.spawnargs.includes(ROGUE))) p.kill('SIGKILL');
    const target = node('c1', 'n2');
    const etcd = '198.18.1.2';
    const targetKey = ((await callAgent(target.socket, 'GET', '/v1/status')).body as { publicKey: string }).publicKey;
    const rogue = spawn('ip', ['netns', 'exec', node('c3', 'n1').netns, process.execPath, ROGUE, join(st.dir, 'keys', 'c3-n1.key'), 'wmrogue2', targetKey, `${target.address}:51820`, `${etcd}/32`, pod('fe3').ip, '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(rogue);
    await new Promise<void>((resolve, reject) => {
      rogue.stdout!.once('data', () => resolve());
      rogue.once('exit', (code) => reject(new Error(`rogue exited ${code}`)));
    });
    const pcap = join(dir, 'etcd.pcap');
    const dump = spawn('ip', ['netns', 'exec', cp('c1'), 'timeout', '-s', 'INT', '6', 'tcpdump', '-i', 'eth0', '-U', '-w', pcap, 'src', 'host', pod('fe3').ip], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve) => dump.stderr!.on('data', (d) => String(d).includes('listening') && resolve()));
    execIn(pod('fe3').netns, process.execPath, ECHO, 'client', '2379', etcd);
    await new Promise((r) => dump.once('exit', r));
    const raw = readFileSync(pcap);
    expect(raw.length).toBeGreaterThanOrEqual(24); // a pcap file (its header)
    expect(raw.includes(Buffer.from(pod('fe3').ip.split('.').map(Number)))).toBe(false);
    const drops = flows('c1', 'n2', 'verdict=DROPPED').filter((f) => f.destination.ip === etcd);
    expect(drops.at(-1)).toMatchObject({ direction: 'ingress', dropReason: 'transit-denied', source: { ip: pod('fe3').ip, identity: 6 } });
  }, 60_000);
});
