// A fault in the L7 proxy does not take the tunnel with it: the proxy runs in
// its own process (src/proxy/worker.ts). On a node with an L7 rule and L4
// traffic between other pods across the same tunnel, the proxy process is
// killed with SIGSEGV: the L4 stream keeps its connection and every echo,
// pings all come back, requests to the L7 port during the outage are refused
// (never forwarded unchecked: the pod's server answers 200 to anything, so a
// 200 for a denied path would be the proof), the agent counts the restart and
// the new process serves the rule again (allowed 200, denied 403). When the
// agent dies, its proxy process dies with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRequest, callAgent } from '../../src/agent/client.js';
import { canRunNetns, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { startEchoServers, startPodServers } from '../helpers/echo.js';
import { stopRole, testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';

const enabled = canRunNetns() && hasCommand('etcd');
const HTTP = join(ROOT, 'test', 'helpers', 'httpprobe.mjs');
const LOOP = join(ROOT, 'test', 'helpers', 'l7loop.mjs');
const STREAM = join(ROOT, 'test', 'helpers', 'tcpstream.mjs');

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

interface ProxyStatus {
  pid: number | null;
  up: boolean;
  restarts: number;
  lastExit?: { signal: string | null };
  requests: number;
}

/** Runs `node script args` in a pod's namespace; resolves with its stdout. */
function inPod(netns: string, script: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', netns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.once('exit', () => resolve(out.trim()));
  });
}

describe.skipIf(!enabled)('L7 proxy isolation: a proxy crash leaves the tunnel up', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmpi-'));
  const file = join(dir, 'topo.yaml');
  const name = `pi${process.pid % 10000}`;
  let st: TestbedState;
  const procs: ChildProcess[] = [];
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;
  const n2 = () => st.clusters[0]!.nodes.find((x) => x.name === 'n2')!;
  const proxyStatus = async () => ((await callAgent(n2().socket, 'GET', '/v1/status')).body as { proxy: ProxyStatus }).proxy;
  const get = async (path: string) => JSON.parse((await inPod(pod('fe').netns, HTTP, ['req', pod('api').ip, '8080', 'GET', path])) || '{}') as { status?: number; error?: string };

  beforeAll(async () => {
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    writeFileSync(
      file,
      `name: ${name}
clusters:
  - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1, n2] }
pods:
  - { name: api, cluster: c1, node: n2, namespace: shop, labels: { app: api } }
  - { name: fe, cluster: c1, node: n1, namespace: shop, labels: { app: frontend } }
  - { name: a, cluster: c1, node: n1, namespace: shop, labels: { app: l4 } }
  - { name: b, cluster: c1, node: n2, namespace: shop, labels: { app: l4 } }
manifests: { c1: [${join(dir, 'policy.yaml')}] }
`,
    );
    st = await testbedUp(file);
    procs.push(...(await startPodServers([pod('api')], (p) => [HTTP, 'server', p.name, '8080'])));
    procs.push(...(await startEchoServers([pod('b')])));
    await waitFor(async () => (await get('/public/ready')).status === 200, 30_000, 'L7 rule served');
  }, 180_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('runs the proxy in a process of its own, outside the agent', async () => {
    const s = await proxyStatus();
    expect(s.up).toBe(true);
    expect(s.pid).toBeGreaterThan(0);
    const agentPid = st.processes.find((p) => p.role === 'c1-n2-agent')!.pid;
    expect(s.pid).not.toBe(agentPid);
    expect(process.kill(s.pid!, 0)).toBe(true);
  });

  it('SIGSEGV in the proxy: L4 stream and pings flow on, L7 fails closed, the proxy restarts and serves the rule again', async () => {
    const before = await proxyStatus();
    const stream = inPod(pod('a').netns, STREAM, [pod('b').ip, '7000', '8']);
    const ping = new Promise<string>((resolve) => {
      const p = spawn('ip', ['netns', 'exec', pod('a').netns, 'ping', '-n', '-i', '0.2', '-c', '40', '-W', '1', pod('b').ip], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      p.once('exit', () => resolve(out));
    });
    // a denied path, on a new connection every 20 ms: the pod answers 200 to anything, the proxy 403
    const loop = inPod(pod('fe').netns, LOOP, [pod('api').ip, '8080', '/private', '6', '20']);
    await new Promise((r) => setTimeout(r, 2000));
    process.kill(before.pid!, 'SIGSEGV');

    const [streamOut, pingOut, loopOut] = await Promise.all([stream, ping, loop]);
    // the L4 stream: one connection, every line echoed, in order
    const m = /sent (\d+) echoed (\d+) errors (\d+) maxgapms (\d+)/.exec(streamOut);
    expect(m, streamOut).not.toBeNull();
    const [sent, echoed, errors, maxGap] = m!.slice(1).map(Number) as [number, number, number, number];
    expect(sent).toBeGreaterThan(100);
    expect({ echoed, errors }).toEqual({ echoed: sent, errors: 0 });
    expect(maxGap).toBeLessThan(2000);
    // pings: all answered
    const pm = /(\d+) packets transmitted, (\d+) received/.exec(pingOut);
    expect(pm, pingOut).not.toBeNull();
    expect(Number(pm![2])).toBe(Number(pm![1]));
    // L7 during the outage: refused or reset, never a 200; 403 before and after
    const l = JSON.parse(loopOut) as { counts: Record<string, number>; changes: Array<[number, string]> };
    expect(l.counts['200']).toBeUndefined();
    expect(Object.keys(l.counts).every((k) => ['403', 'ECONNREFUSED', 'ECONNRESET'].includes(k)), loopOut).toBe(true);
    expect((l.counts.ECONNREFUSED ?? 0) + (l.counts.ECONNRESET ?? 0), loopOut).toBeGreaterThan(0);
    expect(l.changes[0]![1]).toBe('403');
    expect(l.changes.at(-1)![1]).toBe('403');
    const outage = l.changes.at(-1)![0] - l.changes[1]![0];
    console.log(`proxy outage after SIGSEGV: ~${outage} ms (${JSON.stringify(l.counts)}); L4 stream: ${sent} lines, max gap ${maxGap} ms; pings ${pm![2]}/${pm![1]}`);

    // the agent saw the crash, counted it and runs a new process
    const after = await proxyStatus();
    expect(after.restarts).toBe(before.restarts + 1);
    expect(after.lastExit?.signal).toBe('SIGSEGV');
    expect(after.up).toBe(true);
    expect(after.pid).not.toBe(before.pid);
    expect(after.requests).toBeGreaterThanOrEqual(before.requests); // counters carry over restarts
    const metrics = (await agentRequest(n2().socket, 'GET', '/metrics')).text;
    expect(metrics).toMatch(new RegExp(`^wiremesh_proxy_restarts_total\\{[^}]*\\} ${before.restarts + 1}$`, 'm'));
    expect(metrics).toMatch(/^wiremesh_proxy_up\{[^}]*\} 1$/m);
    expect(await get('/public/again')).toMatchObject({ status: 200 });
    expect(await get('/private')).toMatchObject({ status: 403 });
  }, 60_000);

  it('the proxy process dies with its agent', async () => {
    const { pid } = await proxyStatus();
    expect(await stopRole(st, 'c1-n2-agent', 'SIGKILL')).toBe(true);
    await waitFor(() => {
      try {
        process.kill(pid!, 0);
        return false;
      } catch {
        return true;
      }
    }, 5000, 'proxy process gone');
  }, 30_000);
});
