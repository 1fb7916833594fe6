// The ingress gateway and its health-aware DNS entry point on a 3-cluster
// testbed: external clients on the underlay reach a global service through a
// gateway node, connections spread over every cluster's backends (Maglev via
// the service path), PROXY v2 names the client to backends that want it, the
// entry point answers with healthy gateways in the client's region first, and
// drops a dead cluster's gateway within its TTL.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callAgent } from '../../src/agent/client.js';
import type { ServiceStatus } from '../../src/services/datapath.js';
import { canRunNetns, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { startPodServers } from '../helpers/echo.js';
import { addUnderlayHost, spawnIn, startAgent, stopRole, testbedClusterAccess, testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { shopPod, writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');
const PROBE = join(ROOT, 'test', 'helpers', 'svcprobe.mjs');
const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');
const DNS_ADDR = '198.18.0.53';
const TTL = 3;

const service = (name: string, app: string) => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: shop, annotations: { service.cilium.io/global: "true" } }
spec:
  selector: { app: ${app} }
  ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }]
`;

describe.skipIf(!enabled)('ingress gateway and gateway DNS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmgw-'));
  const file = join(dir, 'topo.yaml');
  const name = `g${process.pid % 100000}`;
  let st: TestbedState;
  const procs: ChildProcess[] = [];
  const hosts = new Map<string, string>(); // external host -> netns
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;
  const node = (c: string) => st.clusters.find((x) => x.name === c)!.nodes[0]!;

  function run(netns: string, args: string[]): Promise<string> {
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', netns, process.execPath, PROBE, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      p.once('close', () => resolve(out));
    });
  }
  const dnsq = async (host: string) => JSON.parse(await run(hosts.get(host)!, ['dnsq', DNS_ADDR, 'web.example.com'])) as string[] | { error: string };
  const spread = async (host: string, gw: string, port: number, n: number) =>
    JSON.parse(await run(hosts.get(host)!, ['spread', gw, String(port), String(n)])) as { counts: Record<string, number>; fail: number };

  beforeAll(async () => {
    writeFileSync(join(dir, 'svc.yaml'), [service('web', 'web'), service('web-pp', 'pp')].join('---\n'));
    writeTopology(file, {
      name,
      clusters: [2, 1, 1],
      pods: [shopPod('w1', 'c1/n2', 'web'), shopPod('w1g', 'c1/n1', 'web'), shopPod('w2', 'c2/n1', 'web'), shopPod('w3', 'c3/n1', 'web'), shopPod('pp2', 'c2/n1', 'pp')],
      manifests: { c1: [join(dir, 'svc.yaml')], c2: [join(dir, 'svc.yaml')], c3: [join(dir, 'svc.yaml')] },
    });
    st = await testbedUp(file);
    procs.push(...(await startPodServers(['w1', 'w1g', 'w2', 'w3'].map(pod), (p) => [PROBE, 'server', p.name, '8080'])));
    procs.push(...(await startPodServers([pod('pp2')], (p) => [PROBE, 'ppserver', p.name, '8080'])));
    // one gateway node per cluster: c1 in eu, c2 and c3 in us
    for (const [c, region] of [['c1', 'eu'], ['c2', 'us'], ['c3', 'us']] as const) {
      appendFileSync(join(st.dir, `${c}-n1.yaml`), `gateway:\n  region: ${region}\n  listeners:\n    - { service: shop/web, port: 80, listenPort: 8080 }\n    - { service: shop/web-pp, port: 80, listenPort: 8081, proxyProtocol: true }\n`);
      await stopRole(st, `${c}-n1-agent`, 'SIGTERM');
      await startAgent(st, c, 'n1');
    }
    hosts.set('eu', addUnderlayHost(st, 'eu', '198.18.200.10'));
    hosts.set('us', addUnderlayHost(st, 'us', '198.18.201.10'));
    const dnsNs = addUnderlayHost(st, 'gdns', DNS_ADDR);
    const { flags } = testbedClusterAccess('c1', name, 'observer'); // gateway-dns only reads: the observer certificate
    const flag = (f: string) => flags[flags.indexOf(f) + 1]!;
    const cfg = join(st.dir, 'gateway-dns.yaml');
    writeFileSync(cfg, `etcd: { endpoints: [${flag('--etcd')}], caFile: ${flag('--etcd-ca')}, certFile: ${flag('--etcd-cert')}, keyFile: ${flag('--etcd-key')} }
listen: { address: ${DNS_ADDR}, port: 53 }
ttl: ${TTL}
names: { web.example.com: shop/web }
regions: { eu: [198.18.200.0/24], us: [198.18.201.0/24] }
`);
    spawnIn(st, dnsNs, 'gateway-dns', [process.execPath, WIREMESH, 'gateway-dns', '--config', cfg]);
    for (const c of ['c1', 'c2', 'c3'])
      await waitFor(async () => {
        const s = ((await callAgent(node(c).socket, 'GET', '/v1/services')).body as { services: ServiceStatus[] }).services.find((x) => x.name === 'web');
        return (s?.ports[0]?.backends.filter((b) => b.state === 'selected').length ?? 0) === 4;
      }, 30_000);
    await waitFor(async () => {
      const r = await dnsq('eu');
      return Array.isArray(r) && r.length === 3;
    }, 30_000);
  }, 240_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('spreads external connections through one gateway over every cluster\'s backends, its own node\'s included', async () => {
    const r = await spread('eu', node('c1').address, 8080, 200);
    expect(r.fail).toBe(0);
    expect(Object.keys(r.counts).sort()).toEqual(['w1', 'w1g', 'w2', 'w3']);
    for (const n of ['w1', 'w1g', 'w2', 'w3']) expect(r.counts[n]!).toBeGreaterThan(20);
    const s = (await callAgent(node('c1').socket, 'GET', '/v1/status')).body as { gateway: { listeners: Array<{ accepted: number; failed: number }> } };
    expect(s.gateway.listeners[0]!.accepted).toBeGreaterThanOrEqual(200);
  });

  it('sends a PROXY v2 header naming the external client to backends that want it', async () => {
    const out = JSON.parse(await run(hosts.get('us')!, ['hold', node('c3').address, '8081', '600'])) as { names: string[]; error: string | null };
    expect(out.error).toBeNull();
    expect(out.names).toHaveLength(1);
    expect(out.names[0]).toMatch(/^pp2 198\.18\.201\.10:\d+$/);
  });

  it('the DNS entry point answers with healthy gateways, the client\'s region first', async () => {
    const eu = (await dnsq('eu')) as string[];
    expect(eu[0]).toBe(node('c1').address);
    expect([...eu].sort()).toEqual([node('c1').address, node('c2').address, node('c3').address].sort());
    const us = (await dnsq('us')) as string[];
    expect(us.slice(0, 2).sort()).toEqual([node('c2').address, node('c3').address].sort());
    expect(us[2]).toBe(node('c1').address);
    expect(await run(hosts.get('eu')!, ['dnsq', DNS_ADDR, 'other.example.com'])).toContain('REFUSED');
  });

  it('a dead cluster leaves the DNS answers within the TTL, the gateways route around it and reset its connections', async () => {
    // connections held through c3's gateway, some on c2's backend
    const holds: Promise<string>[] = [];
    const connected: Promise<void>[] = [];
    for (let i = 0; i < 24; i++) {
      const p = spawn('ip', ['netns', 'exec', hosts.get('us')!, process.execPath, PROBE, 'hold', node('c3').address, '8080', '7000'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      // 'close', not 'exit': 'exit' may come before the child's last stdout is read (CI on e230555: one hold
      // read as '' under load; every probe here and in the other netns tests now waits for 'close')
      holds.push(new Promise((resolve) => p.once('close', () => resolve(out))));
      connected.push(new Promise((resolve) => p.stderr!.once('data', () => resolve())));
    }
    await Promise.all(connected);
    const killedAt = Date.now();
    await stopRole(st, 'c2-n1-agent');
    let goneAfterMs = -1;
    await waitFor(async () => {
      const r = await dnsq('us');
      if (Array.isArray(r) && !r.includes(node('c2').address)) {
        goneAfterMs = Date.now() - killedAt;
        return true;
      }
      return false;
    }, 20_000);
    console.log(`c2's gateway left the DNS answers ${goneAfterMs} ms after its node died (TTL ${TTL} s)`);
    expect(goneAfterMs).toBeLessThan(TTL * 1000);
    const us = (await dnsq('us')) as string[];
    expect(us[0]).toBe(node('c3').address); // the region's remaining gateway first
    // through a surviving gateway, new connections reach only the surviving clusters
    await waitFor(async () => {
      const s = ((await callAgent(node('c3').socket, 'GET', '/v1/services')).body as { services: ServiceStatus[] }).services.find((x) => x.name === 'web');
      return s?.ports[0]?.backends.find((b) => b.cluster === 'c2')?.state === 'dead';
    }, 10_000);
    const r = await spread('us', node('c3').address, 8080, 60);
    expect(r.fail).toBe(0);
    expect(Object.keys(r.counts).sort()).toEqual(['w1', 'w1g', 'w3']);
    const held = (await Promise.all(holds)).map((o) => JSON.parse(o) as { names: string[]; error: string | null });
    const onC2 = held.filter((h) => h.names[0] === 'w2');
    expect(onC2.length).toBeGreaterThan(0);
    for (const h of onC2) expect(h.error).toBe('ECONNRESET'); // reset by the gateway, not left hanging
    for (const h of held.filter((x) => x.names[0] !== 'w2')) expect(h.error).toBeNull();
  });
});
