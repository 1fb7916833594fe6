// Slow clients cannot tie up the L7 proxy: 2,000 connections from one pod to a
// port with HTTP rules, each sending its request head one byte every 5 s, are
// answered 408 and closed by the proxy once their head is not whole 10 s after
// its first byte (the head-completion timeout, native/src/proxy/proxy.cc).
// 2,000 is below the proxy's per-identity cap (4,096 connections), so the cap
// refuses none of them here (limited stays put; the cap has its own unit-level
// check). Meanwhile another pod's ordinary requests keep being answered: their
// p50/p99 latency before and during the load is printed, not asserted.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callAgent } from '../../src/agent/client.js';
import type { NativeL7ProxyStats } from '../../src/native/binding.js';
import { canRunNetns, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { startPodServers } from '../../src/testbed/pod.js';
import { testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';

const enabled = canRunNetns() && hasCommand('etcd');
const HTTP = join(ROOT, 'test', 'helpers', 'httpprobe.mjs');
const SLOW = join(ROOT, 'test', 'helpers', 'slowclients.mjs');
const CONNECTIONS = 2000;
const PER_IDENTITY_CAP = 4096; // kMaxPerIdentity in proxy.cc

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: api-l7, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: api } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: frontend } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: "/public/.*" }] }
`;

describe.skipIf(!enabled)('slow clients against the L7 proxy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmslow-'));
  const file = join(dir, 'topo.yaml');
  const name = `s${process.pid % 100000}`;
  let st: TestbedState;
  const procs: ChildProcess[] = [];
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;
  const api = () => st.clusters[0]!.nodes.find((x) => x.name === 'n2')!;

  /** Runs a helper in a pod and parses its one JSON line. */
  function run<T>(from: string, script: string, args: string[]): Promise<T> {
    return new Promise((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', pod(from).netns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      procs.push(p);
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      p.once('exit', () => (out.trim() ? resolve(JSON.parse(out) as T) : reject(new Error(`${script} ${args[0]}: no output`))));
    });
  }
  const proxyStats = async () => ((await callAgent(api().socket, 'GET', '/v1/status')).body as { proxy: NativeL7ProxyStats }).proxy;
  type Latency = { n: number; ok: number; failed: number; p50: number | null; p99: number | null };
  type Slow = { opened: number; connectErrors: number; closedByServer: number; answered408: number; reset: number; stillOpen: number; closeAfterMs: { min: number; max: number } };

  beforeAll(async () => {
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    writeFileSync(
      file,
      `name: ${name}
clusters:
  - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1, n2] }
pods:
  - { name: api, cluster: c1, node: n2, namespace: shop, labels: { app: api } }
  - { name: slow, cluster: c1, node: n1, namespace: shop, labels: { app: frontend } }
  - { name: fe, cluster: c1, node: n1, namespace: shop, labels: { app: frontend } }
manifests: { c1: [${join(dir, 'policy.yaml')}] }
`,
    );
    st = await testbedUp(file);
    procs.push(...(await startPodServers([pod('api')], (p) => [HTTP, 'server', p.name, '8080'])));
    await waitFor(async () => (await run<Latency>('fe', SLOW, ['latency', pod('api').ip, '8080', '/public/warm', '1'])).ok > 0, 30_000);
  }, 180_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it(`${CONNECTIONS} connections sending a head byte every 5 s are closed by the head timeout; other requests are served`, async () => {
    const baseline = await run<Latency>('fe', SLOW, ['latency', pod('api').ip, '8080', '/public/normal', '8']);
    const before = await proxyStats();
    // 25 s: every connection is open after ~1 s, its deadline is 10 s after its first byte
    const slow = run<Slow>('slow', SLOW, ['slow', pod('api').ip, '8080', String(CONNECTIONS), '5000', '25']);
    await new Promise((r) => setTimeout(r, 2000));
    const during = await run<Latency>('fe', SLOW, ['latency', pod('api').ip, '8080', '/public/normal', '12']);
    const s = await slow;
    const after = await proxyStats();
    process.stdout.write(
      `[slowclient] ${CONNECTIONS} slow connections: opened ${s.opened}, closed by the proxy ${s.closedByServer} (408 seen ${s.answered408}, reset ${s.reset}) ` +
        `${(s.closeAfterMs.min / 1000).toFixed(1)}-${(s.closeAfterMs.max / 1000).toFixed(1)} s after connecting, still open ${s.stillOpen}; ` +
        `proxy headTimeouts +${after.headTimeouts - before.headTimeouts}, limited +${after.limited - before.limited} (per-identity cap ${PER_IDENTITY_CAP}); ` +
        `normal GETs p50/p99 ${baseline.p50}/${baseline.p99} ms before (${baseline.ok} requests), ${during.p50}/${during.p99} ms during (${during.ok} requests, ${during.failed} failed)\n`,
    );
    expect(s.opened).toBe(CONNECTIONS);
    expect(s.closedByServer).toBe(CONNECTIONS); // the server side ended every one, none outlived the run
    expect(s.stillOpen).toBe(0);
    expect(s.closeAfterMs.min).toBeGreaterThan(8_000); // not before the 10 s deadline (to the second)
    expect(after.headTimeouts - before.headTimeouts).toBeGreaterThanOrEqual(CONNECTIONS);
    expect(after.limited - before.limited).toBe(0); // below the per-identity cap: nothing refused at accept
    expect(during.ok).toBeGreaterThan(0);
    expect(during.failed).toBe(0);
    expect(baseline.failed).toBe(0);
  }, 120_000);
});
