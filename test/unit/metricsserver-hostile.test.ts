// The metrics listener (agent `metrics:`, `kvstoremesh --metrics`) under a hostile client on real loopback sockets
// (red-team review): pipelined scrapes used to render once each on the agent's one JavaScript thread (a 10 ms
// timer fired 48 times in 5 s instead of ~480), and one client holding the 64 connections locked every scraper out.
// The attacker connects from 127.0.0.2, the honest scraper from 127.0.0.1 (Linux routes 127/8 to lo). No timing
// threshold: the counts checked are those the limits guarantee (renders per interval, answers per connection).
import { connect, type AddressInfo, type Socket } from 'node:net';
import { request } from 'node:http';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { METRICS_LIMITS, serveMetrics, type MetricsServer } from '../../src/net/metricsserver.js';

const open: Array<MetricsServer | Socket> = [];
afterEach(() => {
  for (const o of open.splice(0)) (o as Socket).destroy?.() ?? (o as MetricsServer).close();
});

/** A source whose render costs `burnMs` of the thread (prom-client's costs 4-16 ms) and counts its renders. */
function costlySource(burnMs: number) {
  const s = {
    renders: 0,
    contentType: 'text/plain',
    text: async () => {
      s.renders++;
      const end = performance.now() + burnMs;
      while (performance.now() < end);
      return `up 1\nrenders ${s.renders}\n`;
    },
  };
  return s;
}

const portOf = (s: MetricsServer) => (s.address() as AddressInfo).port;

/** One GET /metrics from 127.0.0.1 on a new connection: its status, or the error's code (refused, reset). */
function scrape(port: number, from = '127.0.0.1'): Promise<number | string> {
  return new Promise((resolve) =>
    request({ host: '127.0.0.1', port, path: '/metrics', agent: false, localAddress: from }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    })
      .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
      .end(),
  );
}

const GET = 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n';

describe('metrics listener under a hostile client', () => {
  it('regression: pipelined GET /metrics: one answer per connection, renders at most one per interval, honest scrapes all answered', async () => {
    const source = costlySource(5);
    const server = await serveMetrics(source, '127.0.0.1', 0, { ...METRICS_LIMITS, renderIntervalMs: 1000 });
    open.push(server);
    const started = performance.now();
    // 8 connections, each sending 200 pipelined scrapes in one write, again on a new connection when closed
    let answers = 0;
    let connections = 0;
    let stop = false;
    const flood = () => {
      if (stop) return;
      connections++;
      const s = connect({ port: portOf(server), host: '127.0.0.1', localAddress: '127.0.0.2' }, () => s.write(GET.repeat(200)));
      open.push(s);
      let text = '';
      s.on('data', (d) => (text += d.toString('latin1')));
      s.on('error', () => undefined);
      s.on('close', () => {
        answers += text.split('HTTP/1.1 200').length - 1;
        setImmediate(flood);
      });
    };
    for (let i = 0; i < 8; i++) flood();
    const honest: Array<number | string> = [];
    for (let i = 0; i < 10; i++) honest.push(await scrape(portOf(server)));
    stop = true;
    const elapsedMs = performance.now() - started;
    // before: every pipelined request rendered (thousands of renders, 200 answers per connection)
    expect(honest).toEqual(Array(10).fill(200));
    expect(answers).toBeLessThanOrEqual(connections);
    expect(source.renders).toBeLessThanOrEqual(Math.floor(elapsedMs / 1000) + 1);
    expect(server.listenerStats.refused.pipelined).toBeGreaterThan(0);
    expect(server.listenerStats.renders).toBe(source.renders);
  });

  it('regression: concurrent scrapes share one render', async () => {
    const source = costlySource(1);
    const server = await serveMetrics(source, '127.0.0.1', 0);
    open.push(server);
    const codes = await Promise.all(Array.from({ length: 3 }, () => scrape(portOf(server))));
    expect(codes).toEqual([200, 200, 200]);
    // before: 3 renders
    expect(source.renders).toBe(1);
  });

  it('regression: one client holding every connection and reconnecting: scrapes from another address all answered', async () => {
    // timeouts far past the test's: what the attacker holds, it holds until the test ends
    const server = await serveMetrics(costlySource(0), '127.0.0.1', 0, { ...METRICS_LIMITS, headersTimeoutMs: 600_000, requestTimeoutMs: 600_000 });
    open.push(server);
    let stop = false;
    let held = 0;
    const hold = () => {
      if (stop) return;
      const s = connect({ port: portOf(server), host: '127.0.0.1', localAddress: '127.0.0.2' }, () => held++);
      open.push(s);
      s.on('error', () => undefined);
      s.on('close', () => setImmediate(hold));
    };
    for (let i = 0; i < 200; i++) hold();
    while (held < 200) await new Promise((r) => setTimeout(r, 10));
    const honest: Array<number | string> = [];
    for (let i = 0; i < 10; i++) honest.push(await scrape(portOf(server)));
    stop = true;
    // before: the 64 connections held by 127.0.0.2, every honest scrape reset ({"scrapesOk":0,"scrapesFailed":70})
    expect(honest).toEqual(Array(10).fill(200));
    expect(server.listenerStats.refused['per-client-bound']).toBeGreaterThan(0);
  });

  it('regression: 4 silent connections from each of 16 addresses, reconnecting: scrapes from a 17th all answered (the oldest silent one evicted)', async () => {
    // timeouts far past the test's: only eviction frees a silent connection's slot
    const server = await serveMetrics(costlySource(0), '127.0.0.1', 0, { ...METRICS_LIMITS, headersTimeoutMs: 600_000, requestTimeoutMs: 600_000 });
    open.push(server);
    let stop = false;
    let held = 0;
    const hold = (from: string) => {
      if (stop) return;
      const s = connect({ port: portOf(server), host: '127.0.0.1', localAddress: from }, () => held++);
      open.push(s);
      s.on('error', () => undefined);
      s.on('close', () => setImmediate(hold, from));
    };
    for (let a = 2; a <= 17; a++) for (let i = 0; i < 4; i++) hold(`127.0.0.${a}`);
    while (held < 64) await new Promise((r) => setTimeout(r, 10));
    const honest: Array<number | string> = [];
    for (let i = 0; i < 5; i++) honest.push(await scrape(portOf(server), '127.0.0.100'));
    stop = true;
    // before: every honest scrape closed unanswered ({"connection-bound":9,"renders":0} over 9 s)
    expect(honest).toEqual(Array(5).fill(200));
    expect(server.listenerStats.refused.evicted).toBeGreaterThanOrEqual(5);
  });

  it('refusals are exported in the served registry: wiremesh_metrics_listener_refused_total{reason}', async () => {
    const registry = new Registry();
    const server = await serveMetrics({ registry, text: () => registry.metrics(), contentType: registry.contentType }, '127.0.0.1', 0, { ...METRICS_LIMITS, renderIntervalMs: 0 });
    open.push(server);
    const s = connect({ port: portOf(server), host: '127.0.0.1', localAddress: '127.0.0.2' }, () => s.write(GET.repeat(3)));
    s.resume().on('error', () => undefined);
    await new Promise((r) => s.once('close', r));
    const text = await new Promise<string>((resolve, reject) =>
      request({ host: '127.0.0.1', port: portOf(server), path: '/metrics', agent: false }, (res) => {
        let t = '';
        res.on('data', (d) => (t += d));
        res.on('end', () => resolve(t));
      })
        .on('error', reject)
        .end(),
    );
    expect(text).toContain('wiremesh_metrics_listener_refused_total{reason="pipelined"} 1\n');
    expect(text).toContain('wiremesh_metrics_listener_refused_total{reason="per-client-bound"} 0\n');
  });

  it('a request head past 8 KiB answers 431, a request line that is not HTTP/1.x 400, bare LF line ends accepted; the connection is closed', async () => {
    const server = await serveMetrics(costlySource(0), '127.0.0.1', 0);
    open.push(server);
    const raw = (data: string) =>
      new Promise<string>((resolve) => {
        const s = connect(portOf(server), '127.0.0.1', () => s.write(data));
        let text = '';
        s.on('data', (d) => (text += d.toString('latin1'))).on('error', () => undefined);
        s.on('close', () => resolve(text.split('\r\n')[0]!));
      });
    expect(await raw(`GET /metrics HTTP/1.1\r\nX: ${'a'.repeat(9000)}\r\n\r\n`)).toBe('HTTP/1.1 431 Request Header Fields Too Large');
    expect(await raw('hello\r\n\r\n')).toBe('HTTP/1.1 400 Bad Request');
    expect(await raw('GET /metrics HTTP/1.0\r\n\r\n')).toBe('HTTP/1.1 200 OK');
    // regression: a head with bare LF line ends waited for the 408 (main's HTTP server answered it)
    expect(await raw('GET /metrics HTTP/1.1\nHost: x\n\n')).toBe('HTTP/1.1 200 OK');
    expect(await raw('GET /metrics HTTP/1.1\r\nHost: x\n\n')).toBe('HTTP/1.1 200 OK');
  });
});
