/**
 * `npm run demo`: a short tour of the whole mission on one machine (root).
 * A 3-cluster mesh in network namespaces (examples/demo/mesh.yaml: real etcd
 * per cluster, kvstoremesh, an agent per node, WireGuard between all nodes),
 * a global service with backends in every cluster and an identity policy,
 * then: cross-cluster ping; the underlay carries only WireGuard; requests to
 * the service spread over the clusters; a pod no policy names is dropped, and
 * its flow record says why; `clustermesh status`; the dashboard (a screenshot
 * when Chromium is installed). Tears everything down, also on failure or
 * Ctrl-C. Prints how long it took.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { z } from 'zod';
import { decodeAnswer } from '../agent/wire.js';
import { startPodServers } from '../testbed/pod.js';
import { join } from 'node:path';
import { execIn, ROOT } from '../testbed/netns.js';
import { cliIn, etcdFlags, testbedUp, type TestbedState } from '../testbed/testbed.js';
import { ownTestbed } from '../testbed/owned.js';
import { hasChromium, screenshot } from '../ui/chromium.js';
import { MeshDashboard } from '../ui/server.js';
import { TestbedError } from '../errors.js';

const TOPOLOGY = join(ROOT, 'examples', 'demo', 'mesh.yaml');
const HTTP = join(ROOT, 'test', 'helpers', 'httpprobe.mjs');
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s`;
const say = (msg: string) => console.log(`\n[${elapsed()}] ── ${msg}`);
const show = (text: string) => console.log(text.trimEnd().replace(/^/gm, '    '));

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('npm run demo needs root (network namespaces, TUN devices).');
    return 1;
  }
  const { servers, teardown } = ownTestbed(TOPOLOGY, { before: () => say('tearing the mesh down') });
  try {
    say('building 3 clusters x 2 nodes: etcd + kvstoremesh per cluster, an agent per node, WireGuard between all nodes');
    const st = await testbedUp(TOPOLOGY, (m) => console.log(`[${elapsed()}]    ${m}`));
    await tour(st, servers);
    await teardown();
    say(`done in ${elapsed().trim()}`);
    return 0;
  } catch (err) {
    console.error(`\ndemo failed: ${(err as Error).message}`);
    await teardown();
    return 1;
  }
}

async function tour(st: TestbedState, servers: ChildProcess[]): Promise<void> {
  const pod = (name: string) => st.pods.find((p) => p.name === name)!;
  const cluster = (name: string) => st.clusters.find((c) => c.name === name)!;

  say('1. pods in different clusters reach each other directly: web1 (c1) pings web2 (c2)');
  const ping = execIn(pod('web1').netns, 'ping', '-c', '3', '-i', '0.3', '-W', '2', pod('web2').ip);
  show(ping.out.split('\n').filter((l) => /bytes from|packet loss/.test(l)).join('\n'));
  if (!/ 0% packet loss|[1-9] received/.test(ping.out)) throw new TestbedError('WM_DEMO_FAILED', 'cross-cluster ping failed');

  say("2. encrypted end to end: what c1/n1's underlay carries while web1 pings web2");
  const node = cluster('c1').nodes.find((n) => n.name === 'n1')!;
  const cap = spawn('ip', ['netns', 'exec', node.netns, 'tcpdump', '-l', '-n', '-c', '4', '-i', 'any', 'udp', 'and', 'not', 'port', '2379'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let dump = '';
  cap.stdout.on('data', (d: Buffer) => (dump += String(d)));
  await new Promise((r) => setTimeout(r, 500));
  execIn(pod('web1').netns, 'ping', '-c', '2', '-i', '0.2', pod('web2').ip);
  await new Promise<void>((r) => {
    const t = setTimeout(() => (cap.kill(), r()), 3000);
    cap.once('exit', () => (clearTimeout(t), r()));
  });
  show(dump || '(tcpdump saw nothing)');
  console.log('    only UDP to port 51820 (WireGuard); the pods\' ICMP is inside');

  say('3. a global service: shop/api has a backend in every cluster; web1 asks it 30 times by name');
  servers.push(...(await startPodServers(['api1', 'api2', 'api3'].map(pod), (p) => [HTTP, 'server', p.name, '8080'])));
  const counts = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const r = execIn(pod('web1').netns, process.execPath, HTTP, 'req', 'api.shop.svc.clusterset.local', '80', 'GET', '/');
    let who = 'error';
    try {
      const { body } = decodeAnswer(z.object({ body: z.string().optional() }), r.out.trim() || '{}', 'request');
      if (body) who = decodeAnswer(z.object({ pod: z.string() }), body, 'answer').pod;
    } catch {
      // counted as 'error'
    }
    counts.set(who, (counts.get(who) ?? 0) + 1);
  }
  show([...counts.entries()].sort().map(([p, n]) => `${p} (${st.pods.find((x) => x.name === p)?.cluster ?? '?'}): ${'#'.repeat(n)} ${n}`).join('\n'));
  show(cliIn(cluster('c1').cpNetns, ['service', 'list', '--node', 'c1/n1', '--testbed', st.name]));

  say('4. identity policy: only web pods may call api:8080; intruder (c3) tries api1 and is dropped');
  const denied = execIn(pod('intruder').netns, process.execPath, HTTP, 'req', pod('api1').ip, '8080', 'GET', '/');
  show(`intruder -> api1:8080: ${denied.out.trim()}`);
  await new Promise((r) => setTimeout(r, 300)); // flow records are drained every 100 ms
  show(cliIn(cluster('c1').cpNetns, ['observe', '--testbed', st.name, '--verdict', 'DROPPED', '--pod', 'shop/intruder', '--last', '5']));

  say("5. clustermesh status of c1: remotes, sync, nodes connected to all clusters, tunnels, global services");
  const c1 = cluster('c1');
  show(cliIn(c1.cpNetns, ['clustermesh', 'status', ...etcdFlags('', c1.etcd, join(st.dir, 'pki', 'c1'))]));

  say('6. the dashboard (wiremesh ui): clusters, nodes, tunnels, services, live verdicts');
  const dash = new MeshDashboard(st.clusters.flatMap((c) => c.nodes.map((n) => n.socket)));
  const server = await dash.listen(0);
  const port = (server.address() as { port: number }).port;
  const m = await dash.snapshot();
  show(`${m.nodes.filter((n) => n.up).length} nodes up, ${m.tunnels.filter((t) => t.handshakeAgeS !== null).length}/${m.tunnels.length} tunnels with a handshake, ${m.services.length} service(s), ${m.flows.length} recent flows`);
  const shot = join(ROOT, 'docs', 'dashboard.png');
  if (hasChromium()) {
    await new Promise((r) => setTimeout(r, 2500)); // two polls, so throughput has a rate
    await screenshot(`http://127.0.0.1:${port}/`, shot);
    show(`screenshot: ${shot}`);
  } else show('(install chromium-headless-shell for a screenshot; run `wiremesh ui` while a testbed is up to browse it)');
  server.close();
}

if (import.meta.url === `file://${process.argv[1]}`) void main().then((code) => process.exit(code));
