/**
 * Red team s15, the dashboard (`wiremesh ui`, 127.0.0.1:8300). Principal: any local process, or a web page the
 * operator visits: `fetch('http://127.0.0.1:8300/api/mesh', {mode: 'no-cors'})` sends `Host: 127.0.0.1:8300`,
 * which the DNS-rebinding check rightly passes; the page cannot read the answer and needs none. Before s15 each
 * /api/mesh read every agent anew (/v1/status, /v1/services, /v1/flows: three requests to each agent's API, on
 * the agent's event loop), so 100 requests at once were 300 requests to every agent. Oracle: the security
 * stance's per-source bounds — what the agents answer must not scale with what an unauthenticated client sends.
 * The agents here are HTTP servers on UNIX sockets answering the agent API's shapes (fakes of our own interface).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../../src/agent/status.js';
import { MeshDashboard, SNAPSHOT_REUSE_MS } from '../../src/ui/server.js';

const dir = mkdtempSync(join(tmpdir(), 'wm-s15-ui-'));
const servers: Server[] = [];
const asked = new Map<string, number>();
// The agents hold their answers until the test opens the gate, so "while it is read" does not depend on how fast
// the requests arrive; the dashboard's clock is the test's, so "for SNAPSHOT_REUSE_MS after" does not either.
let gate: Promise<void> = Promise.resolve();
let openGate = () => {};
let now = 1_000_000;

function status(node: string): AgentStatus {
  return {
    cluster: 'c1',
    clusterId: 1,
    node,
    listenPort: 51820,
    etcdConnected: true,
    syncedClusters: [],
    handshakes: { initiated: 0, completed: 0, rejected: 0, crossed: 0 },
    endpoints: 0,
    localEndpoints: 0,
    registration: { state: 'registered', pendingEndpoints: 0, failures: 0 },
    peers: [],
    counters: { rx_packets: 1 },
    rejections: { total: 0, recent: [] },
    pinnedClusters: [],
  };
}

async function fakeAgent(node: string): Promise<string> {
  const path = join(dir, `${node}.sock`);
  const server = createServer(async (req, res) => {
    asked.set(node, (asked.get(node) ?? 0) + 1);
    await gate;
    const url = new URL(req.url ?? '/', 'http://agent');
    const body = url.pathname === '/v1/status' ? JSON.stringify(status(node)) : url.pathname === '/v1/services' ? JSON.stringify({ cluster: 'c1', node, services: [] }) : '';
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  servers.push(server);
  return path;
}

function getMesh(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/api/mesh', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

let port = 0;
let arrived = 0;
let dash: MeshDashboard;
beforeAll(async () => {
  dash = new MeshDashboard([await fakeAgent('n1'), await fakeAgent('n2')], 30, () => now);
  const server = await dash.listen(0, '127.0.0.1');
  server.on('request', () => arrived++);
  servers.push(server);
  port = (server.address() as AddressInfo).port;
});
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('red team s15: a flood of /api/mesh requests', () => {
  it('costs each agent one snapshot (three requests), not three per request; every request is answered with it', async () => {
    gate = new Promise((r) => (openGate = r));
    const pending = Array.from({ length: 100 }, () => getMesh(port));
    // Every request is at the dashboard before any agent answers, and the clock runs far past the reuse time
    // meanwhile: a snapshot being read is shared however long it takes.
    while (arrived < 100) await new Promise((r) => setImmediate(r));
    now += 100 * SNAPSHOT_REUSE_MS;
    openGate();
    const answers = await Promise.all(pending);
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const nodes = answers.map((a) => (JSON.parse(a.body) as { nodes: Array<{ node: string; up: boolean }> }).nodes.map((n) => `${n.node}:${n.up}`).join());
    expect(new Set(nodes)).toEqual(new Set(['n1:true,n2:true']));
    expect(Object.fromEntries(asked)).toEqual({ n1: 3, n2: 3 });
    expect(dash.snapshotsRead).toBe(1);
  });

  it('reuses the snapshot for SNAPSHOT_REUSE_MS after it was read, then reads the agents again (the page stays live)', async () => {
    const before = dash.snapshotsRead;
    now += SNAPSHOT_REUSE_MS - 1;
    expect((await getMesh(port)).status).toBe(200);
    expect(dash.snapshotsRead).toBe(before);
    now += 1;
    expect((await getMesh(port)).status).toBe(200);
    expect(dash.snapshotsRead).toBe(before + 1);
    expect(asked.get('n1')).toBe(6);
  });
});
