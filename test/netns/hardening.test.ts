// Nothing a pod sends can break its node: a pod on another node cannot reach
// this node's own listeners through the tunnel (host firewall); a pod sending as its neighbour is
// dropped at its veth, counted (podguard.ts) and recorded as a DROPPED
// source-spoofed flow (spoofwatch.ts); an IPv6 SYN to a denied port is denied
// behind hop-by-hop, destination-options, routing and fragment headers like
// without them (raw frames, seen at the destination pod's interface); a pod flooding raw SYNs at a
// port policy denies and at a service VIP (allowed for it: it carries the
// client label, so its flows take entries) for FLOOD_SECONDS (default 60) neither
// stops another pod's established stream nor a new connection, and the
// agent's memory stays bounded (conntrack bounds, docs/architecture.md) and the
// flooder's service NAT entries stay within its quota (policy.conntrack.natPerEndpoint).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callAgent } from '../../src/agent/client.js';
import { flowSchema } from '../../src/agent/wire.js';
import type { Flow } from '../../src/policy/flows.js';
import type { ServiceStatus } from '../../src/services/datapath.js';
import { canRunNetns, execIn, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { podVeth } from '../../src/testbed/pod.js';
import { spoofedPackets } from '../../src/testbed/podguard.js';
import { testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { ECHO, startEchoServers, startPodServers } from '../helpers/echo.js';
import { shopPod, writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd') && hasCommand('nft');
const STREAM = join(ROOT, 'test', 'helpers', 'tcpstream.mjs');
const RAWSYN6 = join(ROOT, 'test', 'helpers', 'rawsyn6.py');
const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');
const NAT_QUOTA = 65_536; // policy.conntrack.natPerEndpoint default
const FLOOD_SECONDS = Number(process.env.FLOOD_SECONDS ?? 60);

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: backend, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: backend } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "7000", protocol: TCP }, { port: "9000", protocol: UDP }] }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  selector: { app: backend }
  ports: [{ name: echo, port: 80, targetPort: 7000, protocol: TCP }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: v6srv, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: v6srv } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
  ingressDeny:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "22", protocol: TCP }] }]
`;

// UDP: `recv IP PORT` prints "<source> <payload>" per datagram; `send SRC DST PORT N TAG` sends N datagrams from SRC.
const UDP = `const d = require('node:dgram'); const [m, a, b, c, n, tag] = process.argv.slice(1);
if (m === 'recv') { const s = d.createSocket('udp4'); s.on('message', (x, r) => process.stdout.write(r.address + ' ' + x + '\\n')); s.bind(Number(b), a, () => process.stderr.write('listening\\n')); }
else { const s = d.createSocket('udp4'); s.bind(0, a, async () => { for (let i = 0; i < Number(n); i++) await new Promise((r) => s.send(tag, Number(c), b, r)); s.close(); }); }`;

describe.skipIf(!enabled)('a hostile pod cannot break its node', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmhard-'));
  const file = join(dir, 'topo.yaml');
  const name = `h${process.pid % 100000}`;
  let st: TestbedState;
  const procs: ChildProcess[] = [];
  const udpSeen = new Map<string, string>(); // UDP receiver output per backend pod
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;
  const node = (n: string) => st.clusters[0]!.nodes.find((x) => x.name === n)!;
  /** A node's agent counters (GET /v1/status). */
  const countersOf = async (n: string) => ((await callAgent(node(n).socket, 'GET', '/v1/status')).body as { counters: Record<string, number> }).counters;

  beforeAll(async () => {
    writeFileSync(join(dir, 'c1.yaml'), POLICY);
    writeTopology(file, {
      name,
      clusters: [{ nodes: 2, podCIDRv6: 'fd65::/48' }],
      pods: [
        shopPod('evil', 'c1/n1', 'client'),
        shopPod('good', 'c1/n1', 'client'),
        shopPod('other', 'c1/n2', 'client'),
        shopPod('be1', 'c1/n2', 'backend'),
        shopPod('be2', 'c1/n1', 'backend'),
        shopPod('v6srv', 'c1/n2', 'v6srv'),
      ],
      manifests: { c1: [join(dir, 'c1.yaml')] },
    });
    st = await testbedUp(file);
    procs.push(...(await startEchoServers([pod('be1'), pod('be2')])));
    for (const b of ['be1', 'be2']) {
      const r = spawn('ip', ['netns', 'exec', pod(b).netns, process.execPath, '-e', UDP, 'recv', pod(b).ip, '9000'], { stdio: ['ignore', 'pipe', 'pipe'] });
      r.stdout!.setEncoding('utf8').on('data', (d: string) => udpSeen.set(b, (udpSeen.get(b) ?? '') + d));
      await new Promise((res) => r.stderr!.once('data', res));
      procs.push(r);
    }
  }, 180_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("a pod sending as its same-node neighbour: dropped at its veth and counted, the neighbour's own packets arrive", async () => {
    const be1 = () => udpSeen.get('be1') ?? '';
    const be2 = () => udpSeen.get('be2') ?? '';
    const before = spoofedPackets(podVeth('evil'), node('n1').netns);
    // the attacker takes the neighbour's address and sends UDP as it (policy would allow the neighbour)
    expect(execIn(pod('evil').netns, 'ip', 'addr', 'add', `${pod('good').ip}/32`, 'dev', 'eth0').ok).toBe(true);
    for (const dst of ['be1', 'be2']) execIn(pod('evil').netns, process.execPath, '-e', UDP, 'send', pod('good').ip, pod(dst).ip, '9000', '20', 'spoofed');
    // the neighbour's own datagrams, again each second until both backends saw one (UDP: one lost burst is not a failure)
    let sentAt = 0;
    const arrived = () => {
      if (be1().includes('genuine') && be2().includes('genuine')) return true;
      if (Date.now() - sentAt >= 1000) {
        sentAt = Date.now();
        for (const dst of ['be1', 'be2']) execIn(pod('good').netns, process.execPath, '-e', UDP, 'send', pod('good').ip, pod(dst).ip, '9000', '5', 'genuine');
      }
      return false;
    };
    await waitFor(arrived, 10_000).catch(async (e: unknown) => {
      const drops = async (n: string) => Object.entries(await countersOf(n)).filter(([k, v]) => k.startsWith('drop_') && v > 0);
      throw new Error(`genuine datagrams did not arrive (be1 saw ${JSON.stringify(be1())}, be2 ${JSON.stringify(be2())}; n1 drops ${JSON.stringify(await drops('n1'))}, n2 ${JSON.stringify(await drops('n2'))})`, { cause: e });
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(be1() + be2()).not.toContain('spoofed');
    expect(spoofedPackets(podVeth('evil'), node('n1').netns) - before).toBeGreaterThanOrEqual(40);
    expect(spoofedPackets(podVeth('good'), node('n1').netns)).toBe(0);
    execIn(pod('evil').netns, 'ip', 'addr', 'del', `${pod('good').ip}/32`, 'dev', 'eth0');
    // and observe shows it: one DROPPED source-spoofed record per (veth, claimed source, destination, protocol), not per packet
    let spoofed: Flow[] = [];
    await waitFor(() => {
      const out = execFileSync(process.execPath, [WIREMESH, 'observe', '--socket', node('n1').socket, '--verdict', 'DROPPED', '--pod', 'shop/evil', '--last', '1000', '-o', 'json'], { encoding: 'utf8' });
      spoofed = out.split('\n').filter(Boolean).map((l) => flowSchema.parse(JSON.parse(l))).filter((f) => f.dropReason === 'source-spoofed');
      return spoofed.length >= 2;
    }, 10_000);
    for (const dst of ['be1', 'be2'])
      expect(spoofed.filter((f) => f.destination.ip === pod(dst).ip)).toEqual([
        expect.objectContaining({ verdict: 'DROPPED', direction: 'egress', protocol: 'UDP', interface: podVeth('evil'), source: expect.objectContaining({ ip: pod('good').ip, pod: 'evil' }), destination: expect.objectContaining({ pod: dst }) }),
      ]);
    const counters = await countersOf('n1');
    expect(counters.source_spoofed_records).toBeGreaterThanOrEqual(2);
    expect(counters.source_spoofed_watch_errors).toBe(0);
  }, 60_000);

  it.skipIf(!hasCommand('python3'))('IPv6: a SYN to a denied port is denied behind extension headers like without; an allowed port passes with and without', async () => {
    // raw frames from good (n1) to v6srv (n2): allow all from client, deny TCP/22 (ingressDeny)
    const py = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
    const links = JSON.parse(execIn(node('n1').netns, 'ip', '-j', 'link', 'show', podVeth('good')).out) as Array<{ address: string }>;
    const gwMac = links[0]!.address;
    const src = pod('good').ip6!;
    const dst = pod('v6srv').ip6!;
    const listener = spawn('ip', ['netns', 'exec', pod('v6srv').netns, py, RAWSYN6, 'listen', 'eth0', src], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(listener);
    let seen = '';
    listener.stdout!.setEncoding('utf8').on('data', (d: string) => (seen += d));
    await new Promise((r) => listener.stderr!.once('data', r));
    const n2 = () => countersOf('n2');
    const deniedBefore = (await n2()).drop_policy_denied ?? 0;
    const chains = ['none', 'hbh', 'dst', 'rt', 'frag', 'hbh,dst,rt,frag'];
    const cases = chains.flatMap((chain, i) => [{ chain, dport: 22, sport: 41000 + i }, { chain, dport: 7000, sport: 42000 + i }]);
    for (const c of cases) expect(execIn(pod('good').netns, py, RAWSYN6, 'send', 'eth0', gwMac, src, dst, String(c.dport), String(c.sport), c.chain).ok).toBe(true);
    const line = (c: { chain: string; dport: number; sport: number }) => `${c.sport} ${c.dport} ${c.chain}`;
    await waitFor(() => cases.filter((c) => c.dport === 7000).every((c) => seen.includes(line(c))), 10_000);
    await new Promise((r) => setTimeout(r, 500));
    listener.kill('SIGKILL');
    for (const c of cases) expect({ ...c, delivered: seen.includes(line(c)) }).toEqual({ ...c, delivered: c.dport === 7000 });
    // each denied SYN (3 per case) counted where it was decided
    expect(((await n2()).drop_policy_denied ?? 0) - deniedBefore).toBeGreaterThanOrEqual(3 * chains.length);
  }, 60_000);

  it("host firewall: a pod on another node does not reach a listener on this node's router address; local pods do", async () => {
    const routerN1 = node('n1').podCIDR.replace(/0\/\d+$/, '1');
    procs.push(...(await startPodServers([{ netns: node('n1').netns }], () => [ECHO, 'server', routerN1, '15099'])));
    const counters = () => countersOf('n1');
    const before = (await counters()).drop_policy_default_deny ?? 0;
    expect(execIn(pod('other').netns, process.execPath, ECHO, 'client', '15099', routerN1).out).toContain(`${routerN1} fail`);
    expect((await counters()).drop_policy_default_deny ?? 0).toBeGreaterThan(before);
    expect(execIn(pod('good').netns, process.execPath, ECHO, 'client', '15099', routerN1).out).toContain(`${routerN1} ok`);
  }, 30_000);

  it.skipIf(!hasCommand('hping3'))(`a raw SYN flood (${FLOOD_SECONDS} s) at a denied port and a VIP: another pod's stream and new connections keep working`, async () => {
    const agentPid = st.processes.find((p) => p.role === 'c1-n1-agent')!.pid;
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agentPid}/status`, 'utf8'))![1]) / 1024;
    // of which the JavaScript heap (prom-client's default metrics): the rest is native tables, buffers, code
    const jsHeap = async () => {
      const text = await new Promise<string>((resolve, reject) => {
        get({ socketPath: node('n1').socket, path: '/metrics' }, (res) => {
          let b = '';
          res.setEncoding('utf8').on('data', (d: string) => (b += d)).on('end', () => resolve(b));
        }).on('error', reject);
      });
      return Number(/^wiremesh_agent_nodejs_heap_size_total_bytes\S* (\S+)$/m.exec(text)?.[1] ?? NaN) / 1048576;
    };
    const heapBefore = await jsHeap();
    const services = async () => ((await callAgent(node('n1').socket, 'GET', '/v1/services')).body as { services: ServiceStatus[] }).services;
    await waitFor(async () => (await services()).find((s) => s.name === 'web')?.ports[0]?.backends.filter((b) => b.state !== 'dead').length === 2, 30_000);
    const vip = (await services()).find((s) => s.name === 'web')!.vip!;
    const counters = () => countersOf('n1');
    // reference in the same run: the same stream for 5 s without the flood
    const baseline = execIn(pod('good').netns, process.execPath, STREAM, pod('be1').ip, '7000', '5').out.trim();
    // packets the kernel dropped queueing into the TUN (the TX thread not keeping up), before and after
    const tunDropsOf = (n: string) => (JSON.parse(execIn(node(n).netns, 'ip', '-s', '-j', 'link', 'show', 'wm0').out) as Array<{ stats64: { tx: { dropped: number } } }>)[0]!.stats64.tx.dropped;
    const tunDrops = () => tunDropsOf('n1');
    const tunDropsBefore = tunDrops();
    // the shared bounds no flood of one pod may reach (its own quotas are below them): conntrack's table,
    // inbound half and per-destination cap, the service NAT table; on both nodes, from before the flood
    const SHARED_BOUNDS = ['conntrack_table_full', 'conntrack_inbound_full', 'conntrack_destination_full', 'service_nat_full'];
    const sharedFull = async () => {
      const out: Record<string, number> = {};
      for (const n of ['n1', 'n2']) {
        const c = await countersOf(n);
        for (const k of SHARED_BOUNDS) out[`${n} ${k}`] = c[k] ?? 0;
      }
      return out;
    };
    const sharedFullBefore = await sharedFull();
    const rssBefore = rss();
    // the good pod's stream to be1 (other node) runs through the flood
    const stream = spawn('ip', ['netns', 'exec', pod('good').netns, process.execPath, STREAM, pod('be1').ip, '7000', String(FLOOD_SECONDS + 4)], { stdio: ['ignore', 'pipe', 'ignore'] });
    procs.push(stream);
    let streamOut = '';
    stream.stdout!.on('data', (d) => (streamOut += d));
    await new Promise((r) => setTimeout(r, 1000));
    // hping3 -S: SYNs with an incrementing source port, one every 100 µs per target (2 x 10k/s)
    const flood = (dst: string, port: string) => spawn('ip', ['netns', 'exec', pod('evil').netns, 'timeout', String(FLOOD_SECONDS), 'hping3', '-q', '-S', '-p', port, '-i', 'u100', dst], { stdio: 'ignore' });
    const floods = [flood(pod('be2').ip, '22'), flood(vip, '80')];
    const floodEnds = Date.now() + FLOOD_SECONDS * 1000;
    procs.push(...floods);
    // halfway: a new connection of another pod (other node) and of a same-node pod succeed
    await new Promise((r) => setTimeout(r, (FLOOD_SECONDS * 1000) / 2));
    const midRss = rss();
    // A connection attempt is a SYN and its retransmissions for 3 s (the client then gives up). Every
    // packet a pod sends, the flooder's and its neighbours' alike, waits in one kernel queue into its node's
    // TUN device until the TX thread reads it: on a host short of CPU that queue overflows for everyone
    // (docs/security.md, known gaps; a CI run had one attempt go unanswered). So an attempt that timed out
    // while either node's queue dropped packets is tried again (three attempts at most, only while the
    // flood lasts). A refusal or reset is never tried again, nor a timeout without such drops; and a
    // lock-out by the flooder's entries (the shared bounds above) is asserted apart, whatever the retries.
    const attempts: string[] = [];
    const flooding = () => Date.now() + 3500 < floodEnds; // another attempt (≤ 3 s) ends before the flood does
    const connect = (from: string, port: string, ...hosts: string[]): string => {
      const last = new Map<string, string>();
      let todo = hosts;
      for (let a = 1; a <= 3 && todo.length > 0 && (a === 1 || flooding()); a++) {
        const drops = tunDropsOf('n1') + tunDropsOf('n2');
        if (a > 1) attempts.push(`${from} to ${todo.join(',')}:${port} attempt ${a}`);
        for (const line of execIn(pod(from).netns, process.execPath, ECHO, 'client', port, ...todo).out.trim().split('\n')) last.set(line.split(' ')[0]!, line);
        const dropped = tunDropsOf('n1') + tunDropsOf('n2') > drops;
        todo = dropped ? todo.filter((h) => last.get(h) === `${h} fail timeout`) : [];
      }
      return hosts.map((h) => last.get(h) ?? `${h} fail no-answer`).join('\n');
    };
    const newConn = connect('other', '7000', pod('be2').ip, pod('be1').ip);
    const viaVip = connect('good', '80', vip);
    const viaVipOther = connect('other', '80', vip); // from the other node
    const midDrops = tunDrops() - tunDropsBefore;
    await Promise.all(floods.map((f) => new Promise((r) => f.once('exit', r))));
    await waitFor(() => streamOut.includes('sent'), 15_000);
    const c = await counters();
    const rssAfter = rss();
    const heapAfter = await jsHeap();
    process.stdout.write(
      `[hardening] flood ${FLOOD_SECONDS}s: agent RSS ${rssBefore.toFixed(1)} MB before, ${midRss.toFixed(1)} mid, ${rssAfter.toFixed(1)} after ` +
        `(JS heap ${heapBefore.toFixed(1)} -> ${heapAfter.toFixed(1)} MB); ` +
        `conntrack ${c.conntrack_entries}, service NAT ${c.service_nat_entries} (most by one pod ${c.service_nat_endpoint_peak_entries}, quota ${NAT_QUOTA}; quota-full ${c.service_nat_quota_full ?? 0}, sweeps ${c.service_nat_quota_sweeps ?? 0}), denied ${c.drop_policy_denied ?? 0} + default-deny ${c.drop_policy_default_deny ?? 0}, ` +
        `evicted ${c.conntrack_evicted ?? 0}, NAT evicted ${c.service_nat_evicted ?? 0}, TUN write errors ${c.tun_write_errors ?? 0}, send errors ${c.tx_send_errors ?? 0}, TUN queue drops ${midDrops} mid, ${tunDrops() - tunDropsBefore} after; connections tried again: ${attempts.join('; ') || 'none'}; stream: ${streamOut.trim()} (without flood: ${baseline})\n`,
    );
    const why = `TUN queue drops by mid-flood ${midDrops}; tried again: ${attempts.join('; ') || 'none'}`;
    // none of the shared bounds was reached (its own quotas hold the flooder below them)
    const sharedFullAfter = await sharedFull();
    expect(Object.fromEntries(Object.entries(sharedFullAfter).map(([k, v]) => [k, v - sharedFullBefore[k]!]))).toEqual(Object.fromEntries(Object.keys(sharedFullAfter).map((k) => [k, 0])));
    expect(newConn, why).toContain(`${pod('be2').ip} ok`);
    expect(newConn, why).toContain(`${pod('be1').ip} ok`);
    expect(viaVip, why).toContain(`${vip} ok`);
    expect(viaVipOther, why).toContain(`${vip} ok`);
    const m = /sent (\d+) echoed (\d+) errors (\d+)/.exec(streamOut)!;
    expect(Number(m[3])).toBe(0);
    expect(Number(m[2])).toBe(Number(m[1]));
    // SYNs denied here made no entries; the VIP's (allowed: the client label) are charged to the flooder (egress)
    // and, for the same-node backend, to be2 (ingress): within two endpoints' quotas (node.yaml default 65 536)
    expect(c.conntrack_entries).toBeLessThanOrEqual(2 * 65_536 + 100);
    // the flooder's NAT entries never went past its quota (the peak since start), nor did the table hold more than the quotas of its clients
    expect(c.service_nat_endpoint_peak_entries).toBeLessThanOrEqual(NAT_QUOTA);
    expect(c.service_nat_entries).toBeLessThanOrEqual(NAT_QUOTA + 1000);
    // memory within the configured bound: both tables full cost ≈ 63 MB (conntrack) + ≈ 84 MB (service NAT)
    // at node.yaml's defaults (docs/architecture.md, Bounds); 64 MB more for the JS heap, flow history and buffers
    expect(Math.max(midRss, rssAfter) - rssBefore).toBeLessThanOrEqual(63 + 84 + 64);
  }, (FLOOD_SECONDS + 120) * 1000);
});
