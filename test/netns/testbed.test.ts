// The multi-cluster testbed: 3 clusters x 2 nodes, a pod per node, full mesh,
// real etcd per cluster, kvstoremesh per cluster, an agent per node.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRequest, callAgent } from '../../src/agent/client.js';
import { canRunNetns, execIn, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { addPod, cliIn, etcdFlags, KVSTOREMESH_METRICS_PORT, removePod, testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { controlAddress } from '../../src/testbed/topology.js';
import { readPcapUdpPayloads } from '../helpers/pcap.js';
import { ECHO, startEchoServers } from '../helpers/echo.js';
import { writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');

const run = execIn;

const ping = (ns: string, ip: string) => run(ns, 'ping', '-c', '1', '-W', '2', ip).ok;

describe.skipIf(!enabled)('multi-cluster testbed (3 clusters x 2 nodes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmtb-'));
  const file = join(dir, 'topo.yaml');
  const name = `t${process.pid % 100000}`;
  let st: TestbedState;
  const servers: ChildProcess[] = [];

  beforeAll(async () => {
    writeTopology(file, {
      name,
      clusters: [1, 2, 3].map((i) => ({ nodes: 2, podCIDRv6: `fd65:${i}::/48` })),
      pods: [1, 2, 3].flatMap((c) => [1, 2].map((n) => ({ name: `p${c}${n}`, cluster: `c${c}`, node: `n${n}`, namespace: `ns${n}`, labels: { app: `a${n}` } }))),
      manifests: { c1: [join(ROOT, 'examples', 'manifests', 'shop.yaml')] },
    });
    st = await testbedUp(file);
  }, 120_000);

  afterAll(async () => {
    for (const s of servers) s.kill();
    await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('every pod reaches every other pod over ICMP (same node, same cluster, other clusters)', () => {
    const failures: string[] = [];
    for (const src of st.pods) for (const dst of st.pods) if (src !== dst && !ping(src.netns, dst.ip)) failures.push(`${src.cluster}/${src.name} -> ${dst.cluster}/${dst.name}`);
    expect(failures).toEqual([]);
  });

  it('dual stack: every pod reaches every other pod over IPv6 too', () => {
    const failures: string[] = [];
    for (const src of st.pods) for (const dst of st.pods) if (src !== dst && !run(src.netns, 'ping', '-6', '-c', '1', '-W', '2', dst.ip6!).ok) failures.push(`${src.name} -> ${dst.name} (${dst.ip6})`);
    expect(failures).toEqual([]);
  });

  it('path MTU discovery: an oversized DF packet gets "fragmentation needed" with the tunnel MTU', () => {
    const [a, b] = [st.pods.find((p) => p.cluster === 'c1')!, st.pods.find((p) => p.cluster === 'c2')!];
    const big = run(a.netns, 'ping', '-M', 'do', '-s', '1472', '-c', '1', '-W', '2', b.ip); // 1500-byte packet
    expect(big.ok).toBe(false);
    expect(big.out).toMatch(/mtu ?= ?1412/);
    expect(run(a.netns, 'ping', '-M', 'do', '-s', '1384', '-c', '1', '-W', '2', b.ip).ok).toBe(true); // exactly 1412 (1420 less the identity tag)
    const big6 = run(a.netns, 'ping', '-6', '-M', 'do', '-s', '1452', '-c', '1', '-W', '2', b.ip6!);
    expect(big6.ok).toBe(false);
    expect(big6.out).toMatch(/mtu ?= ?1412/);
  });

  it('every pod reaches every other pod over TCP', async () => {
    servers.push(...(await startEchoServers(st.pods)));
    const failures: string[] = [];
    for (const src of st.pods) {
      const targets = st.pods.filter((d) => d !== src).map((d) => d.ip);
      const out = run(src.netns, process.execPath, ECHO, 'client', '7000', ...targets).out;
      for (const line of out.trim().split('\n')) if (!line.endsWith(' ok')) failures.push(`${src.name}: ${line}`);
    }
    expect(failures).toEqual([]);
  });

  it('between nodes the underlay carries only WireGuard messages', async () => {
    const pcap = join(dir, 'ul.pcap');
    // everything on the bridge except etcd's own traffic and ARP
    const dump = spawn('ip', ['netns', 'exec', `wmtb-${name}-ul`, 'timeout', '-s', 'INT', '3', 'tcpdump', '-i', 'br0', '-U', '-w', pcap, 'not', 'port', '2379', 'and', 'not', 'arp', 'and', 'not', 'ip6'], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve) => dump.stderr!.on('data', (d) => String(d).includes('listening') && resolve()));
    const [a, b] = [st.pods.find((p) => p.cluster === 'c1')!, st.pods.find((p) => p.cluster === 'c3')!];
    expect(ping(a.netns, b.ip)).toBe(true);
    run(a.netns, process.execPath, ECHO, 'client', '7000', b.ip);
    await new Promise((r) => dump.once('exit', r)); // the capture window is 3 s
    const raw = readFileSync(pcap);
    const udp = readPcapUdpPayloads(raw);
    expect(udp.length).toBeGreaterThan(4);
    // every captured frame is UDP carrying a WireGuard message type
    expect(udp.every((p) => p.length >= 4 && p[0]! >= 1 && p[0]! <= 4 && p[1] === 0 && p[2] === 0 && p[3] === 0)).toBe(true);
    expect(countFrames(raw)).toBe(udp.length); // nothing that is not UDP
    // and no pod address appears in clear text
    expect(raw.includes(Buffer.from([100, 67, 2, 10]))).toBe(false);
  });

  it('clustermesh status reports synced remotes, nodes connected to all clusters, tunnels and global services', async () => {
    const c2 = st.clusters.find((c) => c.name === 'c2')!;
    const status = () => JSON.parse(cliIn(c2.cpNetns, ['clustermesh', 'status', '--json', ...etcdFlags('', c2.etcd, join(st.dir, 'pki', 'c2'))])) as {
      remotes: Array<{ name: string; status: { connected: boolean; synced: Record<string, boolean> } }>;
      connectivity: { configured: number; min: number; max: number };
      globalServices: number;
      health: Record<string, { peers: Array<{ handshakeAgeS: number | null }> }>;
    };
    // the ICMP matrix made every node talk to every other; health is published every 5 s
    await waitFor(() => status().connectivity.min === 2, 15_000, 'every c2 node connected to both remotes');
    const s = status();
    expect(s.remotes.map((r) => [r.name, r.status.connected, r.status.synced.nodes])).toEqual([['c1', true, true], ['c3', true, true]]);
    expect(s.globalServices).toBe(1); // c1's global service, replicated through kvstoremesh
    expect(Object.keys(s.health).sort()).toEqual(['n1', 'n2']);
    expect(s.health.n1!.peers.length).toBe(5);
    expect(s.health.n1!.peers.every((p) => p.handshakeAgeS !== null)).toBe(true);
  });

  it('every agent serves Prometheus metrics: tunnels per peer, handshakes, drops, verdicts, sync lag, kvstoremesh state', async () => {
    const c2n1 = st.clusters.find((c) => c.name === 'c2')!.nodes.find((n) => n.name === 'n1')!;
    const scrape = async () => (await agentRequest(c2n1.socket, 'GET', '/metrics')).text;
    const value = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l)).map((l) => Number(l.split(' ').pop()));
    // our kvstoremesh's status of each remote (written when it changes) carries the sync lag
    await waitFor(async () => value(await scrape(), /^wiremesh_controlplane_sync_lag_seconds\{remote="c[13]"/).length === 2, 15_000, 'sync lag of both remotes');
    const m = await scrape();
    const rx = value(m, /^wiremesh_peer_bytes_total\{.*direction="rx"/);
    expect(rx.length).toBe(5); // c2/n2 and both nodes of c1 and c3
    expect(rx.every((v) => v > 0)).toBe(true);
    expect(value(m, /^wiremesh_peer_packets_total\{peer="c1\/n1",peer_cluster="c1",direction="tx"/)[0]).toBeGreaterThan(0);
    expect(value(m, /^wiremesh_handshakes_total\{result="completed"/)[0]).toBeGreaterThanOrEqual(1);
    expect(m).toMatch(/^wiremesh_drops_total\{reason="decrypt-failed",cluster="c2",node="n1"\} \d+$/m);
    expect(m).toMatch(/^wiremesh_policy_verdicts_total\{verdict="forwarded",cluster="c2",node="n1"\} \d+$/m);
    expect(value(m, /^wiremesh_kvstoremesh_remote_connected\{remote="c[13]"/)).toEqual([1, 1]);
    expect(value(m, /^wiremesh_remote_cluster_synced\{remote="c[13]"/)).toEqual([1, 1]);
    // synced and connected: the copies are current, and each remote's kvstoremesh heartbeat (leased) is here
    expect(value(m, /^wiremesh_controlplane_sync_lag_seconds\{remote="c[13]"/)).toEqual([0, 0]);
    expect(value(m, /^wiremesh_controlplane_remote_kvstoremesh_up\{remote="c[13]"/)).toEqual([1, 1]);
    // (no heartbeat lag sample yet: the first copy of a heartbeat is none, the next comes after 5 min)
    for (const lag of value(m, /^wiremesh_controlplane_heartbeat_lag_seconds\{remote="c[13]"/)) expect(lag).toBeLessThan(30);
    expect(m).toMatch(/^wiremesh_service_selections_total\{result="no-backend",cluster="c2",node="n1"\} \d+$/m);
    expect(m).toMatch(/^wiremesh_agent_process_cpu_seconds_total/m);
    // the same text on the node's Prometheus address (node.yaml metrics), from inside its namespace
    const tcp = run(c2n1.netns, process.execPath, '-e', `fetch('http://${c2n1.address}:9962/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`);
    expect(tcp.ok).toBe(true);
    expect(tcp.out).toMatch(/^wiremesh_peer_bytes_total\{peer="c1\/n1"/m);
    // the cluster's kvstoremesh serves its own (failures, pending retries) on the control plane's address
    const c2 = st.clusters.find((c) => c.name === 'c2')!;
    const mesh = run(c2.cpNetns, process.execPath, '-e', `fetch('http://${controlAddress(1)}:${KVSTOREMESH_METRICS_PORT}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`);
    expect(mesh.ok).toBe(true);
    expect(mesh.out).toMatch(/^wiremesh_kvstoremesh_failures_total\{[^}]*what="status-put"[^}]*\} \d+$/m);
    expect(mesh.out).toMatch(/^wiremesh_kvstoremesh_pending_retries\{/m);
  });

  it('apply rejects an invalid manifest with its field and stores nothing', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'apiVersion: v1\nkind: Service\nmetadata: { name: ok, namespace: shop }\nspec: { ports: [{ port: 80 }] }\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: { name: x }\nspec: { endpointSelector: {}, ingress: [{ fromEntities: [moon] }] }\n');
    let err = '';
    try {
      execFileSync(process.execPath, [join(ROOT, 'bin', 'wiremesh.js'), 'apply', '-f', bad, '--cluster', 'c1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      err = String((e as { stderr?: string }).stderr);
    }
    expect(err).toMatch(/bad.yaml#2: spec.ingress\[0\].fromEntities\[0\]: unknown entity "moon"/);
    const c1 = st.clusters.find((c) => c.name === 'c1')!;
    const pki = join(st.dir, 'pki', 'c1');
    const keys = JSON.parse(run(c1.cpNetns, process.execPath, join(ROOT, 'test', 'helpers', 'etcdkeys.mjs'), c1.etcd, join(pki, 'ca.crt'), join(pki, 'root.crt'), join(pki, 'root.key'), 'wiremesh/state/services/').out) as string[];
    expect(keys).toEqual(['wiremesh/state/services/v1/c1/shop/backend']); // from the topology's manifests; "ok" was not stored
  });

  it("a remote cluster's credentials read only the state prefix of the cluster that issued them", () => {
    const c1 = st.clusters.find((c) => c.name === 'c1')!;
    const pki = join(st.dir, 'pki', 'c1');
    const out = run(c1.cpNetns, process.execPath, join(ROOT, 'test', 'helpers', 'etcdprobe.mjs'), c1.etcd, join(pki, 'ca.crt'), join(pki, 'root.crt'), join(pki, 'root.key'), 'c2').out;
    expect(JSON.parse(out)).toEqual({ readState: 'allowed', readMeshSecrets: 'denied', readClusterConfig: 'denied', writeState: 'denied' });
  });

  it('the agent API refuses addresses outside the node and addresses another endpoint holds; its socket is owner-only', async () => {
    // regression: a POST on n1 claiming n2's pod address used to take n2's endpoint record over with new labels
    const n1 = st.clusters.find((c) => c.name === 'c1')!.nodes[0]!;
    const other = st.pods.find((p) => p.cluster === 'c1' && p.node === 'n2')!;
    const mine = st.pods.find((p) => p.cluster === 'c1' && p.node === 'n1')!;
    const post = (body: unknown) => callAgent(n1.socket, 'POST', '/v1/endpoints', body);
    const outside = await post({ name: 'thief', namespace: other.namespace, labels: { app: 'x' }, ips: [other.ip] });
    expect(outside.status).toBe(400);
    expect((outside.body as { field: string }).field).toBe('ips[0]');
    const taken = await post({ name: 'thief', namespace: 'ns1', labels: { app: 'x' }, ips: [mine.ip] });
    expect(taken.status).toBe(409);
    expect((taken.body as { holders: Array<{ endpoint: string }> }).holders[0]!.endpoint).toBe(`${mine.namespace}/${mine.name}`);
    // nothing changed: the holder keeps its address and identity
    const eps = (await callAgent(n1.socket, 'GET', '/v1/endpoints')).body as Array<{ name: string; ips: string[] }>;
    expect(eps.find((e) => e.name === mine.name)!.ips).toContain(mine.ip);
    expect(eps.some((e) => e.name === 'thief')).toBe(false);
    // the API socket is the owner's alone, from the moment it exists
    expect(parseInt(execFileSync('stat', ['-c', '%a', n1.socket]).toString(), 8) & 0o077).toBe(0);
  });

  it('an endpoint added in one cluster becomes reachable from the others; removed, it is gone', async () => {
    const pod = await addPod(st, { name: 'late', cluster: 'c2', node: 'n1', namespace: 'ns1', labels: { app: 'late' } });
    const from = [st.pods.find((p) => p.cluster === 'c1')!, st.pods.find((p) => p.cluster === 'c3')!];
    for (const f of from) expect(ping(f.netns, pod.ip)).toBe(true);
    // its endpoint record reached the other clusters through kvstoremesh
    const c3n1 = st.clusters.find((c) => c.name === 'c3')!.nodes[0]!;
    const count = async () => ((await callAgent(c3n1.socket, 'GET', '/v1/status')).body as { endpoints: number }).endpoints;
    // dual stack: one record per address, two per pod
    await waitFor(async () => (await count()) === 14, 10_000, 'endpoint replicated to c3');
    await removePod(st, 'c2', 'late');
    await waitFor(async () => (await count()) === 12, 10_000, 'endpoint removal replicated to c3');
    for (const f of from) expect(ping(f.netns, pod.ip)).toBe(false);
  });
});

function countFrames(pcap: Buffer): number {
  let n = 0;
  for (let off = 24; off + 16 <= pcap.length; n++) off += 16 + pcap.readUInt32LE(off + 8);
  return n;
}
