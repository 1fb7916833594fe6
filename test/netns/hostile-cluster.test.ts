// A hostile cluster on a 3-cluster testbed: c2's operator credentials are
// stolen and c2's own etcd (its wiremesh/state/.../c2/... keys) is filled with
// records that claim what c2 may not: another cluster's identity labels, id
// bits and pod CIDRs, relay offers, foreign gateway addresses, mesh-wide
// policies nobody accepted, garbage of every kind, and 100k records. Each is
// refused by c1's kvstoremesh or agents and reported (remote status, metrics,
// `clustermesh status` WARNING lines), while c1 and c3 keep working exactly as
// before and no process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRequest, callAgent } from '../../src/agent/client.js';
import { canRunNetns, execIn, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { addUnderlayHost, cliIn, etcdFlags, spawnIn, stopRole, testbedClusterAccess, testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { ECHO, startEchoServers, startPodServers } from '../helpers/echo.js';
import { shopPod, writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');
const HOSTILE = join(ROOT, 'test', 'helpers', 'hostile-etcd.mjs');
const PROBE = join(ROOT, 'test', 'helpers', 'svcprobe.mjs');
const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');
const PORT = 7000;
const BUDGET = 1000;
const DNS_ADDR = '198.18.0.53';
const CLIENT_ADDR = '198.18.200.10';
const CLUSTER_LABEL = 'io.cilium.k8s.policy.cluster';

const C1_POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: api, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: api } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: web } }]
`;

const MESH_WIDE = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: { name: allow-all, annotations: { wiremesh.io/mesh-wide: "true" } }
spec:
  endpointSelector: {}
  ingress: [{ fromEntities: [all] }]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: { name: deny-all, annotations: { wiremesh.io/mesh-wide: "true" } }
spec:
  endpointSelector: {}
  ingressDeny: [{ fromEntities: [all] }]
`;

type Rejected = Record<string, number>;

describe.skipIf(!enabled)('a hostile cluster: c2 writes what it may not claim into its own etcd', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmhostile-'));
  const file = join(dir, 'topo.yaml');
  const name = `h${process.pid % 100000}`;
  let st: TestbedState;
  const procs: ChildProcess[] = [];
  let baseline: Map<string, boolean>;
  let opsSeq = 0;
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;
  const node = (c: string, n: string) => st.clusters.find((x) => x.name === c)!.nodes.find((x) => x.name === n)!;
  const cp = (c: string) => st.clusters.find((x) => x.name === c)!.cpNetns;
  const access = (c: string) => testbedClusterAccess(c, name).flags;
  const MATRIX_PODS = ['web1', 'api1', 'other1', 'web3', 'api3'];

  /** Raw etcd operations in cluster c's etcd with its root certificate (hostile-etcd.mjs). */
  function etcd(c: string, ops: unknown[]): unknown[] {
    const f = access(c);
    const flag = (x: string) => f[f.indexOf(x) + 1]!;
    const opsFile = join(dir, `ops-${opsSeq++}.json`);
    writeFileSync(opsFile, JSON.stringify(ops));
    const r = execIn(cp(c), process.execPath, HOSTILE, flag('--etcd'), flag('--etcd-ca'), flag('--etcd-cert'), flag('--etcd-key'), opsFile);
    rmSync(opsFile, { force: true });
    if (!r.ok) throw new Error(`hostile-etcd in ${c} failed: ${r.out}`);
    return JSON.parse(r.out) as unknown[];
  }
  const put = (key: string, value: string) => etcd('c2', [{ op: 'put', key, value }]);
  const del = (key: string) => etcd('c2', [{ op: 'delete', key }]);
  const list = (c: string, prefix: string) => etcd(c, [{ op: 'list', prefix }])[0] as Array<{ key: string; value: string }>;
  const get = (c: string, key: string) => etcd(c, [{ op: 'get', key }])[0] as string | null;

  /** c1's kvstoremesh's view of c2: refusals by "<type>/<reason>". */
  const rejected = (): Rejected => {
    const v = get('c1', 'wiremesh/mesh/v1/status/c2');
    return v ? ((JSON.parse(v) as { rejected?: Rejected }).rejected ?? {}) : {};
  };
  const remoteStatus = () => JSON.parse(get('c1', 'wiremesh/mesh/v1/status/c2') ?? '{}') as { rejected?: Rejected; recentRejections?: Array<{ key: string; type: string; reason: string; detail: string }>; budget?: { records: number; maxRecords: number } };
  /** Waits until c1's kvstoremesh reports at least `n` more refusals of type/reason than `before`. */
  async function refused(before: Rejected, what: string, n = 1, ms = 20_000): Promise<void> {
    await waitFor(() => (rejected()[what] ?? 0) >= (before[what] ?? 0) + n, ms, `c1 kvstoremesh refusing ${n} more ${what} (had ${before[what] ?? 0}, has ${JSON.stringify(rejected())})`);
  }
  /** An agent API call, retried: a refused or reset connection is logged and tried again. */
  async function retried<T>(what: string, f: () => Promise<T>): Promise<T> {
    for (let i = 0; ; i++) {
      try {
        return await f();
      } catch (err) {
        console.log(`${what}: ${(err as Error).message} (attempt ${i + 1})`);
        if (i >= 4) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
  const metrics = (c = 'c1', n = 'n1') => retried(`GET /metrics on ${c}/${n}`, async () => (await agentRequest(node(c, n).socket, 'GET', '/metrics')).text);
  const agentGet = (c: string, n: string, path: string) => retried(`GET ${path} on ${c}/${n}`, async () => (await callAgent(node(c, n).socket, 'GET', path)).body);
  const metricValue = (text: string, metric: string, labels: Record<string, string>): number => {
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${metric}{`)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  };
  const statusWarnings = () => cliIn(cp('c1'), ['clustermesh', 'status', ...access('c1')]).split('\n').filter((l) => l.startsWith('WARNING:'));

  /** TCP echo from every matrix pod to every other: "src>dst" -> answered. */
  async function matrix(): Promise<Map<string, boolean>> {
    const res = await Promise.all(
      MATRIX_PODS.map(
        (src) =>
          new Promise<[string, string]>((resolve) => {
            const dsts = MATRIX_PODS.filter((d) => d !== src);
            const p = spawn('ip', ['netns', 'exec', pod(src).netns, process.execPath, ECHO, 'client', String(PORT), ...dsts.map((d) => pod(d).ip)], { stdio: ['ignore', 'pipe', 'ignore'] });
            let out = '';
            p.stdout!.on('data', (d) => (out += d));
            p.once('close', () => resolve([src, out]));
          }),
      ),
    );
    const m = new Map<string, boolean>();
    for (const [src, out] of res) {
      for (const d of MATRIX_PODS.filter((x) => x !== src)) m.set(`${src}>${d}`, false);
      for (const line of out.split('\n')) {
        const [ip, r] = line.trim().split(' ');
        const d = st.pods.find((p) => p.ip === ip)?.name;
        if (d && r === 'ok') m.set(`${src}>${d}`, true);
      }
    }
    return m;
  }
  const reach = (src: string, dst: string): boolean => execIn(pod(src).netns, process.execPath, ECHO, 'client', String(PORT), pod(dst).ip).out.includes(' ok');
  const trace = (src: string, dst: string) =>
    [JSON.parse(cliIn(cp('c1'), ['policy', 'trace', '--cluster', 'c1', '--src', src, '--dst', dst, '--dport', String(PORT), '--json', ...access('c1')])) as { verdict: string } | Array<{ verdict: string }>].flat().map((t) => t.verdict);

  /** The latest process of each role is alive (restarted ones replace their first record). */
  function deadProcesses(): string[] {
    const latest = new Map<string, number>();
    for (const p of st.processes) latest.set(p.role, p.pid);
    const dead: string[] = [];
    for (const [role, pid] of latest) {
      try {
        process.kill(pid, 0);
      } catch {
        dead.push(role);
      }
    }
    return dead;
  }
  const rss = (role: string): number => {
    const pid = [...st.processes].reverse().find((p) => p.role === role)!.pid;
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  };

  let c2n1: { key: string; value: Record<string, unknown> };
  let traceBefore: string[];

  beforeAll(async () => {
    writeFileSync(join(dir, 'c1.yaml'), C1_POLICY);
    writeTopology(file, {
      name,
      clusters: [2, 2, 2],
      pods: [
        shopPod('web1', 'c1/n1', 'web'),
        shopPod('other1', 'c1/n1', 'other'),
        shopPod('api1', 'c1/n2', 'api'),
        shopPod('web2', 'c2/n1', 'web'),
        shopPod('api2', 'c2/n2', 'api'),
        shopPod('web3', 'c3/n1', 'web'),
        shopPod('api3', 'c3/n2', 'api'),
      ],
      manifests: { c1: [join(dir, 'c1.yaml')] },
    });
    st = await testbedUp(file);
    // c1's kvstoremesh again, with a small per-remote record budget (case 8)
    expect(await stopRole(st, 'c1-kvstoremesh', 'SIGTERM')).toBe(true);
    const c1 = st.clusters[0]!;
    spawnIn(st, c1.cpNetns, 'c1-kvstoremesh', [process.execPath, WIREMESH, 'kvstoremesh', '--cluster', 'c1', ...etcdFlags('', c1.etcd, join(st.dir, 'pki', 'c1'), 'kvstoremesh'), '--max-records-per-remote', String(BUDGET)]);
    procs.push(...(await startEchoServers(st.pods, PORT)));
    // every agent knows every identity, and c1's kvstoremesh reports on c2 again
    await waitFor(async () => {
      for (const c of st.clusters)
        for (const n of c.nodes) {
          const s = (await callAgent(n.socket, 'GET', '/v1/status')).body as { policy?: { identities: number } };
          if ((s.policy?.identities ?? 0) < 8 + 4) return false; // reserved + web, api, other (c1) and web, api (c2, c3)
        }
      return (remoteStatus().budget?.maxRecords ?? 0) === BUDGET;
    }, 60_000, 'identities everywhere and the budgeted kvstoremesh');
    const nodes = list('c2', 'wiremesh/state/nodes/v1/c2/');
    const n1 = nodes.find((x) => x.key.endsWith('/n1'))!;
    c2n1 = { key: n1.key, value: JSON.parse(n1.value) as Record<string, unknown> };
    // The expectation from the policy alone (Cilium's default-local-cluster: only c1's app=web reaches c1/api1;
    // nothing else is selected). Wait for the mesh to converge to it before the baseline is judged: right after the
    // testbed came up one CI run saw a c3 pair not reachable yet, then reachable in the final matrix.
    const expected = (k: string): boolean => !k.endsWith('>api1') || k === 'web1>api1';
    const deadline = Date.now() + 60_000;
    for (;;) {
      baseline = await matrix();
      if ([...baseline].every(([k, v]) => v === expected(k)) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    traceBefore = trace('c2/shop/web2', 'c1/shop/api1');
  }, 300_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    if (st) await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('the baseline: c1 allows only its own web pods to api, c2 cannot reach c1/api', () => {
    expect(baseline.get('web1>api1')).toBe(true);
    expect(baseline.get('other1>api1')).toBe(false);
    expect(baseline.get('web3>api1')).toBe(false);
    expect(baseline.get('web1>web3')).toBe(true);
    expect(baseline.get('web3>api3')).toBe(true);
    expect(reach('web2', 'api1')).toBe(false);
    expect(traceBefore).toEqual(['DENIED']);
  });

  it('1. an identity of c2 relabelled as c1 is refused (identity/claim); c1 still drops c2, trace unchanged', async () => {
    const before = rejected();
    const ids = list('c2', 'wiremesh/state/identities/v1/c2/');
    const web = ids.find((x) => Object.entries((JSON.parse(x.value) as { labels: Record<string, string> }).labels).some(([k, v]) => k.endsWith('app') && v === 'web'))!;
    expect(web, JSON.stringify(ids.map((x) => x.value))).toBeDefined();
    const rec = JSON.parse(web.value) as { id: number; labels: Record<string, string> };
    put(web.key, JSON.stringify({ ...rec, labels: { ...rec.labels, [CLUSTER_LABEL]: 'c1' } }));
    await refused(before, 'identity/claim');
    // the cache keeps the good value
    const cached = JSON.parse(get('c1', web.key.replace('wiremesh/state/', 'wiremesh/cache/'))!) as { labels: Record<string, string> };
    expect(cached.labels[CLUSTER_LABEL]).not.toBe('c1');
    expect(reach('web2', 'api1')).toBe(false);
    expect(trace('c2/shop/web2', 'c1/shop/api1')).toEqual(traceBefore);
    await waitFor(async () => metricValue(await metrics(), 'wiremesh_kvstoremesh_records_rejected_total', { remote: 'c2', type: 'identity', reason: 'claim' }) >= 1, 10_000, 'the kvstoremesh rejection in c1/n1 metrics');
    expect(remoteStatus().recentRejections?.some((e) => e.key === web.key && e.reason === 'claim')).toBe(true);
  }, 60_000);

  it("2. a node claiming c1's cluster id, an endpoint and an identity with c1's cluster bits are refused (claim)", async () => {
    const before = rejected();
    const v = c2n1.value;
    put('wiremesh/state/nodes/v1/c2/evil-id', JSON.stringify({ ...v, name: 'evil-id', clusterId: 1, podCIDRs: ['100.66.90.0/24'] }));
    const forged = (1 << 16) | 300;
    put('wiremesh/state/ip/v2/c2/n1/100.66.1.200', JSON.stringify({ ip: '100.66.1.200', cluster: 'c2', node: 'n1', namespace: 'shop', name: 'evil', labels: { app: 'web' }, identity: forged }));
    put(`wiremesh/state/identities/v1/c2/${forged}`, JSON.stringify({ id: forged, labels: { app: 'web', [CLUSTER_LABEL]: 'c2' } }));
    await refused(before, 'node/claim');
    await refused(before, 'endpoint/claim');
    await refused(before, 'identity/claim');
    expect(get('c1', 'wiremesh/cache/nodes/v1/c2/evil-id')).toBeNull();
    expect(get('c1', 'wiremesh/cache/ip/v2/c2/n1/100.66.1.200')).toBeNull();
    expect(get('c1', `wiremesh/cache/identities/v1/c2/${forged}`)).toBeNull();
  }, 60_000);

  it("3. node records with c1/n2's pod CIDR (claim) or another c2 node's (conflict) are refused; c1's route stays", async () => {
    const before = rejected();
    const c1n2 = node('c1', 'n2').podCIDR;
    const c2n2 = node('c2', 'n2').podCIDR;
    const v = c2n1.value;
    // the real n1 record, with c1/n2's CIDR appended, and a made-up node with it
    put(c2n1.key, JSON.stringify({ ...v, podCIDRs: [...(v.podCIDRs as string[]), c1n2] }));
    put('wiremesh/state/nodes/v1/c2/evil-cidr', JSON.stringify({ ...v, name: 'evil-cidr', podCIDRs: [c1n2] }));
    await refused(before, 'node/claim', 2);
    const cached = JSON.parse(get('c1', c2n1.key.replace('wiremesh/state/', 'wiremesh/cache/'))!) as { podCIDRs: string[] };
    expect(cached.podCIDRs).not.toContain(c1n2);
    expect(get('c1', 'wiremesh/cache/nodes/v1/c2/evil-cidr')).toBeNull();
    // inside c2's pin, but c2/n2's: kvstoremesh copies it, c1's agents refuse it (conflict)
    const agentBefore = metricValue(await metrics(), 'wiremesh_records_rejected_total', { origin: 'c2', type: 'node', reason: 'conflict' });
    put('wiremesh/state/nodes/v1/c2/evil-dup', JSON.stringify({ ...v, name: 'evil-dup', podCIDRs: [c2n2] }));
    await waitFor(async () => metricValue(await metrics(), 'wiremesh_records_rejected_total', { origin: 'c2', type: 'node', reason: 'conflict' }) > agentBefore, 20_000, "c1/n1's agent refusing evil-dup (conflict)");
    // c1/n2's pods: reached through c1/n2's tunnel, as before
    expect(reach('web1', 'api1')).toBe(true);
    const route = execIn(node('c1', 'n1').netns, 'ip', 'route', 'get', pod('api1').ip).out;
    expect(route).toMatch(/dev wm0/);
    const peers = ((await agentGet('c1', 'n1', '/v1/status')) as { peers: Array<{ id: string; cluster: string; podCIDRs: string[] }> }).peers;
    expect(peers.map((p) => p.id).filter((id) => id.includes('evil'))).toEqual([]);
    // the only peer carrying c1/n2's CIDR is c1/n2; c2/n1 carries its own CIDR only
    expect(peers.filter((p) => p.podCIDRs.includes(c1n2)).map((p) => p.cluster)).toEqual(['c1']);
    expect(peers.filter((p) => p.cluster === 'c2').flatMap((p) => p.podCIDRs).sort()).toEqual([node('c2', 'n1').podCIDR, c2n2].sort());
    // restore n1's record; the fakes go (kept, they would win on any agent that lists them first: docs/security.md)
    put(c2n1.key, JSON.stringify(v));
    del('wiremesh/state/nodes/v1/c2/evil-cidr');
    del('wiremesh/state/nodes/v1/c2/evil-dup');
  }, 60_000);

  it("3b. node records naming a resolver, c1's node or a NAT64 address (outside c2's pinned underlay CIDRs) are refused (claim); no route to them enters c1's tunnels", async () => {
    const before = rejected();
    const v = c2n1.value;
    const evil = { '8.8.8.8': 'evil-dns', [node('c1', 'n2').address]: 'evil-c1', '64:ff9b::808:808': 'evil-nat64' };
    for (const [addr, name] of Object.entries(evil)) put(`wiremesh/state/nodes/v1/c2/${name}`, JSON.stringify({ ...v, name, addresses: [addr], podCIDRs: ['100.66.250.0/24'] }));
    await refused(before, 'node/claim', 3);
    for (const name of Object.values(evil)) expect(get('c1', `wiremesh/cache/nodes/v1/c2/${name}`)).toBeNull();
    expect(remoteStatus().recentRejections?.some((e) => e.key.endsWith('/evil-dns') && /8\.8\.8\.8 is outside c2's pinned underlay CIDRs/.test(e.detail))).toBe(true);
    expect(execIn(node('c1', 'n1').netns, 'ip', 'route', 'get', '8.8.8.8').out).not.toMatch(/dev wm0/);
    expect(reach('web1', 'api1')).toBe(true);
    for (const name of Object.values(evil)) del(`wiremesh/state/nodes/v1/c2/${name}`);
  }, 60_000);

  it('4. garbage of every record type is refused with the right reason; nothing reaches the cache, nothing exits', async () => {
    const before = rejected();
    const v = c2n1.value;
    const big = 'x'.repeat(1 << 20);
    const takenIdentities = new Set(list('c2', 'wiremesh/state/identities/v1/c2/').map((e) => Number(e.key.slice(e.key.lastIndexOf('/') + 1))));
    const freeIdentity = (id: number): number => (takenIdentities.has(id) ? freeIdentity(id + 100) : id);
    const valid: Record<string, { key: (n: string) => string; name: (k: number) => string; type: string; value: (n: string) => unknown; wrong: unknown; missing: unknown }> = {
      nodes: { type: 'node', key: (n) => `wiremesh/state/nodes/v1/c2/${n}`, name: (k) => `junk-${k}`, value: (n) => ({ ...v, name: n }), wrong: { ...v, name: 'junk-w', clusterId: '2', addresses: '198.18.1.1', port: 'x' }, missing: { ...v, name: 'junk-m', publicKey: undefined } },
      ip: { type: 'endpoint', key: (n) => `wiremesh/state/ip/v2/c2/n1/${n}`, name: (k) => `100.66.1.${150 + k}`, value: (n) => ({ ip: n, cluster: 'c2', node: 'n1', namespace: 'shop', name: 'junk', labels: {} }), wrong: { ip: 5, cluster: ['c2'], node: 'n1', namespace: 'shop', name: 'junk', labels: 'app=web' }, missing: { cluster: 'c2', node: 'n1' } },
      // c2's own agents allocate identities at random: a junk id must not be one of theirs (its cached good value would stay)
      identities: { type: 'identity', key: (n) => `wiremesh/state/identities/v1/c2/${n}`, name: (k) => String(freeIdentity(2 * 65536 + 60000 + k)), value: (n) => ({ id: Number(n), labels: { app: 'junk' } }), wrong: { id: '131072', labels: [1, 2] }, missing: { labels: {} } },
      services: { type: 'service', key: (n) => `wiremesh/state/services/v1/c2/shop/${n}`, name: (k) => `junk-${k}`, value: (n) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: n, namespace: 'shop' }, spec: { ports: [{ port: 80 }] } }), wrong: { apiVersion: 'v1', kind: 'Service', metadata: { name: 7, namespace: 'shop' }, spec: { ports: 'all' } }, missing: { apiVersion: 'v1', kind: 'Service' } },
      policies: { type: 'policy', key: (n) => `wiremesh/state/policies/v1/c2/shop/cnp.${n}`, name: (k) => `junk-${k}`, value: (n) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: n, namespace: 'shop' }, spec: { endpointSelector: {} } }), wrong: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: ['x'], namespace: 'shop' }, spec: { endpointSelector: 'all' } }, missing: { kind: 'CiliumNetworkPolicy', metadata: { namespace: 'shop' } } },
      relays: { type: 'relay', key: (n) => `wiremesh/state/relays/v1/c2/${n}`, name: (k) => `junk-${k}`, value: (n) => ({ cluster: 'c2', node: n, podCIDRs: [] }), wrong: { cluster: 'c2', node: 'junk-w', podCIDRs: '0.0.0.0/0' }, missing: { cluster: 'c2' } },
      gateways: { type: 'gateway', key: (n) => `wiremesh/state/gateways/v1/c2/${n}`, name: (k) => `junk-${k}`, value: (n) => ({ cluster: 'c2', node: n, address: '198.18.2.10', listeners: [{ service: 'shop/web', port: 80, listenPort: 8080 }] }), wrong: { cluster: 'c2', node: 'junk-w', address: 12, listeners: {} }, missing: { cluster: 'c2', node: 'junk-m' } },
      heartbeat: { type: 'heartbeat', key: (n) => `wiremesh/state/heartbeat/v1/c2/${n}`, name: (k) => (k === 0 ? 'kvstoremesh' : `junk-${k}`), value: () => ({ at: Date.now(), seq: 1 }), wrong: { at: 'now', seq: -1 }, missing: { at: 1 } },
    };
    const written: Array<{ type: string; key: string; reason: string; value: string }> = [];
    for (const [, t] of Object.entries(valid)) {
      const cases: Array<[string, string]> = [
        ['not-json', '{"cluster": c2'],
        ['not-json', 'hello'],
        ['schema', JSON.stringify(t.wrong)],
        ['schema', 'null'],
        ['schema', '{}'],
        ['schema', '[]'],
        ['schema', JSON.stringify(t.missing)],
        ['too-large', big],
      ];
      // heartbeat: only "kvstoremesh" is a heartbeat's name; the others are key errors whatever the value
      if (t.type === 'heartbeat') for (let i = 0; i < cases.length; i++) if (cases[i]![0] !== 'too-large' && cases[i]![0] !== 'not-json') cases[i] = ['schema', cases[i]![1]];
      cases.forEach(([reason, value], i) => written.push({ type: t.type, key: t.key(t.type === 'heartbeat' ? 'kvstoremesh' : t.name(i + 1)), reason, value }));
      // a valid value under another record's key: key
      if (t.type !== 'heartbeat') written.push({ type: t.type, key: t.key(t.name(20)), reason: 'key', value: JSON.stringify(t.value(t.name(21))) });
      else written.push({ type: t.type, key: t.key('junk-20'), reason: 'key', value: JSON.stringify(t.value('')) });
    }
    // every junk key is new in c2 (an existing key's cached good value would stay, and the test would blame the refusal)
    const listed = etcd('c2', Object.values(valid).map((t) => ({ op: 'list', prefix: t.key('') }))) as Array<Array<{ key: string }>>;
    const existing = new Set(listed.flat().map((e) => e.key));
    expect(written.filter((w) => !w.key.endsWith('/kvstoremesh') && existing.has(w.key)).map((w) => w.key)).toEqual([]);
    // one etcd call per 20 writes (the 1 MB values make big files)
    for (let i = 0; i < written.length; i += 8) etcd('c2', written.slice(i, i + 8).map((w) => ({ op: 'put', key: w.key, value: w.value })));
    const want = new Map<string, number>();
    for (const w of written) want.set(`${w.type}/${w.reason}`, (want.get(`${w.type}/${w.reason}`) ?? 0) + 1);
    await waitFor(() => {
      const now = rejected();
      return [...want].every(([k, n]) => (now[k] ?? 0) >= (before[k] ?? 0) + n);
    }, 30_000, `every refusal counted: want ${JSON.stringify(Object.fromEntries(want))}`).catch((err: Error) => {
      const now = rejected();
      throw new Error(`${err.message}; got deltas ${JSON.stringify(Object.fromEntries([...want].map(([k]) => [k, (now[k] ?? 0) - (before[k] ?? 0)])))}`);
    });
    // nothing of it in c1's cache (the heartbeat key holds c2 kvstoremesh's last good value)
    for (const w of written) {
      const cached = get('c1', w.key.replace('wiremesh/state/', 'wiremesh/cache/'));
      if (w.key.endsWith('/kvstoremesh')) expect(JSON.parse(cached!)).toMatchObject({ at: expect.any(Number), seq: expect.any(Number) });
      else expect(cached, w.key).toBeNull();
    }
    expect(deadProcesses()).toEqual([]);
  }, 180_000);

  it('5. a relay offer from c2, which is no hub, is refused (relay/claim)', async () => {
    const before = rejected();
    put('wiremesh/state/relays/v1/c2/n1', JSON.stringify({ cluster: 'c2', node: 'n1', podCIDRs: ['100.99.0.0/16', '100.65.0.0/16'], clusterIds: [1, 3] }));
    await refused(before, 'relay/claim');
    expect(get('c1', 'wiremesh/cache/relays/v1/c2/n1')).toBeNull();
    expect(reach('web1', 'api1')).toBe(true);
  }, 60_000);

  describe('6. gateway-dns', () => {
    let client: string;
    const dnsq = () =>
      new Promise<string[] | { error: string }>((resolve) => {
        const p = spawn('ip', ['netns', 'exec', client, process.execPath, PROBE, 'dnsq', DNS_ADDR, 'web.example.com'], { stdio: ['ignore', 'pipe', 'ignore'] });
        let out = '';
        p.stdout!.on('data', (d) => (out += d));
        p.once('close', () => resolve(JSON.parse(out || '{"error":"none"}') as string[] | { error: string }));
      });
    const gdnsLog = () => readFileSync(st.processes.find((p) => p.role === 'gateway-dns')!.log, 'utf8');

    beforeAll(async () => {
      client = addUnderlayHost(st, 'cl', CLIENT_ADDR);
      const dnsNs = addUnderlayHost(st, 'gdns', DNS_ADDR);
      const flags = testbedClusterAccess('c1', name, 'observer').flags;
      const flag = (f: string) => flags[flags.indexOf(f) + 1]!;
      const cfg = join(st.dir, 'gateway-dns.yaml');
      writeFileSync(cfg, `etcd: { endpoints: [${flag('--etcd')}], caFile: ${flag('--etcd-ca')}, certFile: ${flag('--etcd-cert')}, keyFile: ${flag('--etcd-key')} }\nlisten: { address: ${DNS_ADDR}, port: 53 }\nttl: 3\nnames: { web.example.com: shop/web }\n`);
      spawnIn(st, dnsNs, 'gateway-dns', [process.execPath, WIREMESH, 'gateway-dns', '--config', cfg]);
      // listeners the records point at: c2/n1's own (legitimate), c3/n1's (foreign)
      procs.push(...(await startPodServers([{ netns: node('c2', 'n1').netns, ip: node('c2', 'n1').address }], (p) => [ECHO, 'server', p.ip, '18080'])));
      procs.push(...(await startPodServers([{ netns: node('c3', 'n1').netns, ip: node('c3', 'n1').address }], (p) => [ECHO, 'server', p.ip, '18081'])));
      const gw = (n: string, address: string, listenPort: number) => JSON.stringify({ cluster: 'c2', node: n, address, listeners: [{ service: 'shop/web', port: 80, listenPort }] });
      put('wiremesh/state/gateways/v1/c2/n1', gw('n1', node('c2', 'n1').address, 18080));
      put('wiremesh/state/gateways/v1/c2/n2', gw('n2', node('c3', 'n1').address, 18081));
      await waitFor(async () => JSON.stringify(await dnsq()) === JSON.stringify([node('c2', 'n1').address]), 30_000, 'gateway-dns answering with c2/n1');
    }, 120_000);

    it("a gateway record pointing at c3's node or c1's etcd is never answered", async () => {
      for (let i = 0; i < 5; i++) {
        expect(await dnsq()).toEqual([node('c2', 'n1').address]);
        await new Promise((r) => setTimeout(r, 300));
      }
      expect(gdnsLog()).toMatch(/record rejected/);
      expect(gdnsLog()).toContain(node('c3', 'n1').address);
      const etcdAddr = new URL(st.clusters[0]!.etcd).hostname;
      put('wiremesh/state/gateways/v1/c2/n2', JSON.stringify({ cluster: 'c2', node: 'n2', address: etcdAddr, listeners: [{ service: 'shop/web', port: 80, listenPort: 2379 }] }));
      await waitFor(() => gdnsLog().includes(`address ${etcdAddr} is not one of node c2/n2`), 15_000, 'gateway-dns refusing the etcd address');
      for (let i = 0; i < 5; i++) {
        expect(await dnsq()).toEqual([node('c2', 'n1').address]);
        await new Promise((r) => setTimeout(r, 300));
      }
    }, 60_000);

    // Regression (found by this test): nothing checked a node record's underlay
    // addresses, and gateway-dns took "the gateway's address is one of its
    // node's" from the node record the same cluster wrote. c2 added c3/n1's
    // address to its own n2 record, pointed its n2 gateway at c3/n1:18081, and
    // gateway-dns answered web.example.com with c3/n1's address. Now c3/n1's
    // address lies outside c2's pinned underlay CIDRs: the record is refused
    // (node/claim: kvstoremesh, agents, gateway-dns), its previous value stays;
    // and an address two nodes claim still belongs to neither (gateway-dns).
    it("c2 adding c3's address to its own node record does not make gateway-dns answer with c3's address", async () => {
      const c2n2 = { key: 'wiremesh/state/nodes/v1/c2/n2', value: get('c2', 'wiremesh/state/nodes/v1/c2/n2')! };
      const rec = JSON.parse(c2n2.value) as { addresses: string[] };
      put(c2n2.key, JSON.stringify({ ...rec, addresses: [...rec.addresses, node('c3', 'n1').address] }));
      put('wiremesh/state/gateways/v1/c2/n2', JSON.stringify({ cluster: 'c2', node: 'n2', address: node('c3', 'n1').address, listeners: [{ service: 'shop/web', port: 80, listenPort: 18081 }] }));
      await new Promise((r) => setTimeout(r, 5000));
      const answers: unknown[] = [];
      for (let i = 0; i < 3; i++) answers.push(await dnsq());
      put(c2n2.key, c2n2.value);
      put('wiremesh/state/gateways/v1/c2/n2', JSON.stringify({ cluster: 'c2', node: 'n2', address: rec.addresses[0], listeners: [{ service: 'shop/web', port: 80, listenPort: 18099 }] }));
      for (const a of answers) expect(a).not.toContain(node('c3', 'n1').address);
    }, 60_000);
  });

  it('7. mesh-wide allow-all and deny-all policies from c2 without opt-in are not enforced in c1', async () => {
    writeFileSync(join(dir, 'meshwide.yaml'), MESH_WIDE);
    cliIn(cp('c2'), ['apply', '--cluster', 'c2', ...access('c2'), '-f', join(dir, 'meshwide.yaml')]);
    await waitFor(async () => {
      const w = ((await agentGet('c1', 'n1', '/v1/policy')) as { warnings?: string[] }).warnings ?? [];
      return w.some((x) => x.includes('c2/_clusterwide/ccnp.allow-all') && x.includes('not enforced')) && w.some((x) => x.includes('c2/_clusterwide/ccnp.deny-all') && x.includes('not enforced'));
    }, 20_000, "c1/n1's /v1/policy warning about c2's mesh-wide policies");
    expect(reach('web2', 'api1')).toBe(false); // allow-all not enforced
    expect(reach('web1', 'api1')).toBe(true); // deny-all not enforced
    expect(trace('c2/shop/web2', 'c1/shop/api1')).toEqual(traceBefore);
  }, 60_000);

  it('8. 100k records from c2: those past the budget are refused (budget) and reported, the ones held stay', async () => {
    const before = rejected();
    const rssBefore = { agent: rss('c1-n1-agent'), kvstoremesh: rss('c1-kvstoremesh'), c3kvstoremesh: rss('c3-kvstoremesh') };
    const heldBefore = remoteStatus().budget!.records;
    const template = JSON.stringify({ cluster: 'c2', node: 'bulk-%I%', address: '198.18.2.10', listeners: [{ service: 'shop/web', port: 80, listenPort: 8080 }] });
    const t = Date.now();
    const [res] = etcd('c2', [{ op: 'bulk', prefix: 'wiremesh/state/gateways/v1/c2/', count: 100_000, template }]) as Array<{ ms: number }>;
    const expectRefused = 100_000 - (BUDGET - heldBefore);
    await refused(before, 'gateway/budget', expectRefused, 240_000);
    const s = remoteStatus();
    expect(s.budget!.records).toBe(BUDGET);
    const cachedGateways = etcd('c1', [{ op: 'count', prefix: 'wiremesh/cache/gateways/v1/c2/' }])[0] as number;
    expect(cachedGateways).toBeLessThanOrEqual(BUDGET);
    // the records c2 had before are still there
    expect(get('c1', c2n1.key.replace('wiremesh/state/', 'wiremesh/cache/'))).not.toBeNull();
    expect(reach('web1', 'api1')).toBe(true);
    const rssAfter = { agent: rss('c1-n1-agent'), kvstoremesh: rss('c1-kvstoremesh'), c3kvstoremesh: rss('c3-kvstoremesh') };
    console.log(`100k records: written in ${res!.ms} ms, refused within ${Date.now() - t} ms; RSS MiB before ${JSON.stringify(rssBefore)} after ${JSON.stringify(rssAfter)}; c1 holds ${cachedGateways} of c2's gateways`);
    expect(statusWarnings().some((w) => w.includes('c2') && w.includes('budget'))).toBe(true);
  }, 420_000);

  it('throughout: the c1/c3 matrix is unchanged, status and metrics name c2 and its refused records, every process lives', async () => {
    const after = await matrix();
    const diff = [...baseline].filter(([k, ok]) => after.get(k) !== ok).map(([k, ok]) => `${k}: ${ok} -> ${after.get(k)}`);
    expect(diff).toEqual([]);
    const warnings = statusWarnings();
    for (const what of ['identity record(s) refused: claim', 'node record(s) refused: claim', 'endpoint record(s) refused: claim', 'relay record(s) refused: claim', 'refused: not-json', 'refused: schema', 'refused: too-large', 'refused: key', 'refused: budget'])
      expect(warnings.some((w) => w.includes('remote c2') && w.includes(what)), `${what} in\n${warnings.join('\n')}`).toBe(true);
    const m = await metrics();
    for (const [type, reason] of [['identity', 'claim'], ['node', 'claim'], ['endpoint', 'claim'], ['relay', 'claim'], ['gateway', 'budget'], ['policy', 'schema'], ['service', 'too-large'], ['heartbeat', 'key']])
      expect(metricValue(m, 'wiremesh_kvstoremesh_records_rejected_total', { remote: 'c2', type, reason }), `${type}/${reason}`).toBeGreaterThan(0);
    expect(metricValue(m, 'wiremesh_records_rejected_total', { origin: 'c2', type: 'node', reason: 'conflict' })).toBeGreaterThan(0);
    expect(deadProcesses()).toEqual([]);
  }, 120_000);
});
