// The metrics HTTP listener (agent and kvstoremesh): its clients are untrusted, so connections, slow requests and
// methods are bounded; and `kvstoremesh --metrics` on an address it cannot listen on starts nothing and fails.
import { createServer as createTcpServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { request } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KVStoreMesh } from '../../src/controlplane/kvstoremesh.js';
import { main } from '../../src/cli/wiremesh.js';
import { METRICS_LIMITS, serveMetrics } from '../../src/net/metricsserver.js';
import { soon } from './meshfakes.js';

// a generous deadline, not a threshold: on a loaded shared machine the 5 s of `soon` was once not enough
const eventually = { ...soon, timeout: 30_000 };

const source = { text: async () => 'up 1\n', contentType: 'text/plain' };
const open: Array<Server | Socket> = [];
afterEach(() => {
  for (const o of open.splice(0)) (o as Socket).destroy?.() ?? (o as Server).close();
});

const portOf = (s: Server) => (s.address() as AddressInfo).port;
const connections = (s: Server) => new Promise<number>((resolve, reject) => s.getConnections((err, n) => (err ? reject(err) : resolve(n))));

function call(port: number, method: string): Promise<number> {
  return new Promise((resolve, reject) => request({ host: '127.0.0.1', port, method, path: '/metrics' }, (res) => (res.resume(), resolve(res.statusCode!))).on('error', reject).end());
}

describe('metrics listener bounds', () => {
  // Two cases, so that no outcome depends on how fast the test runs: with 300 ms timeouts in one case, a loaded
  // machine (load 7-30) could take over 300 ms to open the 10 connections, the first ones were then closed by the
  // timeout before the last were accepted, and those got room (closed: [0, 5, 6, ...], or fewer than 6 refused).
  it('regression: connections past maxConnections are closed on accept; room again once one closed', async () => {
    // timeouts far past the test's own: the accepted ones stay open until this test closes them
    const server = await serveMetrics(source, '127.0.0.1', 0, { ...METRICS_LIMITS, maxConnections: 4, headersTimeoutMs: 600_000, requestTimeoutMs: 600_000 });
    open.push(server);
    const closed: number[] = [];
    const sockets: Socket[] = [];
    for (let i = 0; i < 10; i++) {
      const s = connect(portOf(server), '127.0.0.1');
      s.on('close', () => closed.push(i)).on('error', () => undefined);
      open.push(s);
      sockets.push(s);
      // a refused one is reset, which can reach the client before it saw its connect
      await new Promise((r) => s.once('connect', r).once('close', r));
    }
    // before: every one accepted and held (1,515 idle sockets in 1.5 s)
    await vi.waitFor(() => expect(closed.length).toBe(6), eventually);
    expect(closed.sort((a, b) => a - b)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(await connections(server)).toBe(4);
    sockets[0]!.destroy();
    await vi.waitFor(async () => expect(await connections(server)).toBe(3), eventually);
    expect(await call(portOf(server), 'GET')).toBe(200); // room again
  });

  it('regression: a client that says nothing is closed after the request timeout', async () => {
    const server = await serveMetrics(source, '127.0.0.1', 0, { ...METRICS_LIMITS, maxConnections: 4, headersTimeoutMs: 300, requestTimeoutMs: 300 });
    open.push(server);
    const closed: number[] = [];
    for (let i = 0; i < 4; i++) {
      // it reads (says nothing, but takes what it is sent): a silent connection is closed either by its idle
      // timeout (nothing sent) or, when the headers timeout comes first, with a 408
      // answer; a client that never reads keeps that answer unread and never sees the close ('end' waits for it)
      const s = connect(portOf(server), '127.0.0.1').resume();
      s.on('close', () => closed.push(i)).on('error', () => undefined);
      open.push(s);
      await new Promise((r) => s.once('connect', r));
    }
    // before: held for good (no timeout for a connection that never sends a byte)
    await vi.waitFor(() => expect(closed).toHaveLength(4), eventually);
    await vi.waitFor(async () => expect(await connections(server)).toBe(0), eventually);
    expect(await call(portOf(server), 'GET')).toBe(200); // room again
  });

  it('regression: only GET and HEAD: POST, PUT, DELETE answer 405', async () => {
    const server = await serveMetrics(source, '127.0.0.1', 0);
    open.push(server);
    for (const m of ['POST', 'PUT', 'DELETE']) expect(await call(portOf(server), m), m).toBe(405);
    expect(METRICS_LIMITS).toMatchObject({ maxConnections: 64, headersTimeoutMs: 2_000, requestTimeoutMs: 10_000 });
    expect(await call(portOf(server), 'GET')).toBe(200);
    expect(await call(portOf(server), 'HEAD')).toBe(200);
  });
});

describe('kvstoremesh --metrics', () => {
  it('regression: on an address in use, no mesh is left running: nothing started, a non-zero exit', async () => {
    const busy = createTcpServer();
    open.push(busy);
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const start = vi.spyOn(KVStoreMesh.prototype, 'start');
    const stop = vi.spyOn(KVStoreMesh.prototype, 'stop');
    const write = process.stderr.write.bind(process.stderr);
    let stderr = '';
    process.stderr.write = ((s: string) => ((stderr += s), true)) as typeof process.stderr.write;
    const before = process.exitCode;
    try {
      const status = await main(['kvstoremesh', '--cluster', 'c1', '--etcd', 'http://127.0.0.1:1', '--metrics', `127.0.0.1:${portOf(busy)}`]);
      // before: started, and left running when the listen failed (never stopped)
      expect(start.mock.calls.length - stop.mock.calls.length).toBe(0);
      expect(status).not.toBe(0);
      expect(stderr).toMatch(/--metrics: cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    } finally {
      process.stderr.write = write;
      process.exitCode = before;
      for (const m of start.mock.contexts) await (m as KVStoreMesh).stop();
      start.mockRestore();
      stop.mockRestore();
    }
  });
});
