// A fault in the L7 proxy does not take the tunnel with it: the proxy runs in
// its own process (src/proxy/worker.ts). On a node with an L7 rule and L4
// traffic between other pods across the same tunnel, the proxy process is
// killed with SIGSEGV: the L4 stream keeps its connection and every echo,
// pings all come back, requests to the L7 port during the outage are refused
// (never forwarded unchecked: the pod's server answers 200 to anything, so a
// 200 for a denied path would be the proof), the agent counts the restart and
// the new process serves the rule again (allowed 200, denied 403). When the
// agent dies, its proxy process dies with it.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentRequest, callAgent } from '../../src/agent/client.js';
import { canRunNetns, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { startEchoServers } from '../helpers/echo.js';
import { apiL7Policy, HTTP, L7Testbed, runInNetns } from '../helpers/l7bed.js';
import { shopPod } from '../helpers/topology.js';
import { stopRole } from '../../src/testbed/testbed.js';

const enabled = canRunNetns() && hasCommand('etcd');
const LOOP = join(ROOT, 'test', 'helpers', 'l7loop.mjs');
const STREAM = join(ROOT, 'test', 'helpers', 'tcpstream.mjs');

interface ProxyStatus {
  pid: number | null;
  up: boolean;
  restarts: number;
  lastExit?: { signal: string | null };
  requests: number;
}

describe.skipIf(!enabled)('L7 proxy isolation: a proxy crash leaves the tunnel up', () => {
  const bed = new L7Testbed(
    'wmpi-',
    {
      name: `pi${process.pid % 10000}`,
      clusters: [2],
      pods: [shopPod('api', 'c1/n2', 'api'), shopPod('fe', 'c1/n1', 'frontend'), shopPod('a', 'c1/n1', 'l4'), shopPod('b', 'c1/n2', 'l4')],
    },
    apiL7Policy(),
  );
  const pod = (n: string) => bed.pod(n);
  const n2 = () => bed.node('c1', 'n2');
  const proxyStatus = () => bed.proxyStatus<ProxyStatus>();
  const inPod = runInNetns;
  const get = async (path: string) => JSON.parse((await inPod(pod('fe').netns, HTTP, ['req', pod('api').ip, '8080', 'GET', path])) || '{}') as { status?: number; error?: string };

  beforeAll(async () => {
    await bed.up();
    bed.procs.push(...(await startEchoServers([pod('b')])));
    await waitFor(async () => (await get('/public/ready')).status === 200, 30_000, 'L7 rule served');
  }, 180_000);

  afterAll(() => bed.down(), 60_000);

  it('runs the proxy in a process of its own, outside the agent', async () => {
    const s = await proxyStatus();
    expect(s.up).toBe(true);
    expect(s.pid).toBeGreaterThan(0);
    const agentPid = bed.st.processes.find((p) => p.role === 'c1-n2-agent')!.pid;
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
      p.once('close', () => resolve(out));
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
    expect(await stopRole(bed.st, 'c1-n2-agent', 'SIGKILL')).toBe(true);
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
