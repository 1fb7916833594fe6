// The metrics listener (agent `metrics:`, `kvstoremesh --metrics`) under a hostile client on real loopback sockets
// (red-team review): pipelined scrapes used to render once each on the agent's one JavaScript thread (a 10 ms
// timer fired 48 times in 5 s instead of ~480), and one client holding the 64 connections locked every scraper out.
// The attacker connects from 127.0.0.2, the honest scraper from 127.0.0.1 (Linux routes 127/8 to lo). No timing
// threshold: the counts checked are those the limits guarantee (renders per interval, answers per connection).
import { connect, type AddressInfo, type Socket } from 'node:net';
import { request } from 'node:http';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { METRICS_LIMITS, metricsClientOf, serveMetrics, type MetricsServer } from '../../src/net/metricsserver.js';

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

/** An exposition larger than what loopback's socket buffers take: an answer a client does not read stays unflushed. */
const bigSource = () => {
  const big = 'x'.repeat(32 << 20);
  return { contentType: 'text/plain', text: async () => big };
};

/**
 * A slow reader from `from`: sends GET /metrics, takes the first chunk of the answer and reads no more (paused);
 * resolves once that chunk came. A paused socket does not see the listener's reset: finish() reads on and tells.
 */
function slowReader(port: number, from: string) {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from });
  open.push(socket);
  let bytes = 0;
  let error: string | undefined;
  socket.on('connect', () => socket.write(GET));
  socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  /**
   * Reads the rest: 'whole' (the whole answer, then closed), or 'cut' (closed before its end: reset by the
   * listener; what the kernel had received is read first, then an ECONNRESET or, as Linux reports it once the
   * queued bytes were read, an end), or the error of a whole answer.
   */
  const finish = () =>
    new Promise<string>((resolve) => {
      const outcome = () => resolve(bytes < BIG_ANSWER ? 'cut' : (error ?? 'whole'));
      if (socket.closed) return outcome();
      socket.on('close', outcome);
      socket.on('data', (d: Buffer) => (bytes += d.length)).resume();
    });
  /** Reads up to `n` more bytes of what the kernel has received (a trickle). */
  const take = (n: number) => (bytes += socket.read(n)?.length ?? 0);
  return new Promise<{ finish: typeof finish; take: typeof take }>((resolve) =>
    socket.once('data', (d: Buffer) => {
      bytes += d.length;
      socket.pause();
      resolve({ finish, take });
    }),
  );
}

/** The bytes of bigSource's whole answer, head included (its body and head are what finish() counts). */
const BIG_ANSWER = (32 << 20) + 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 33554432\r\nconnection: close\r\n\r\n'.length;

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

  // red team s13 (finding 3): answer() waits for the flush, so a client that sends its head and then does not read
  // an exposition larger than the socket buffers held a live slot that room() (which evicted only silent
  // connections) never freed: 16 addresses x 4 such readers reset every scraper ('connection-bound').
  it('regression: 4 slow readers from each of 16 addresses fill the listener: scrapes from others all answered (a reader evicted each time)', async () => {
    const server = await serveMetrics(bigSource(), '127.0.0.1', 0, { ...METRICS_LIMITS, requestTimeoutMs: 600_000 });
    open.push(server);
    const port = portOf(server);
    await Promise.all(Array.from({ length: 64 }, (_, i) => slowReader(port, `127.0.0.${2 + (i % 16)}`)));
    expect(server.listenerStats.refused).toMatchObject({ 'connection-bound': 0, evicted: 0 });
    const honest: Array<number | string> = [];
    for (let i = 0; i < 3; i++) {
      honest.push(await scrape(port, '127.0.0.100'));
      await slowReader(port, `127.0.0.${18 + i}`); // the listener full again
    }
    // before: ['ECONNRESET', ...] (refused: connection-bound)
    expect(honest).toEqual(Array(3).fill(200));
    expect(server.listenerStats.refused).toMatchObject({ 'connection-bound': 0, 'per-client-bound': 0 });
    expect(server.listenerStats.refused.evicted).toBeGreaterThanOrEqual(3);
  });

  it('the listener full: the oldest connection of the client holding the most is evicted, not a one-connection client', async () => {
    const server = await serveMetrics(bigSource(), '127.0.0.1', 0, { ...METRICS_LIMITS, maxConnections: 5, requestTimeoutMs: 600_000 });
    open.push(server);
    const port = portOf(server);
    const attacker = [];
    for (let i = 0; i < 4; i++) attacker.push(await slowReader(port, '127.0.0.2'));
    // a scraper part-way through reading its answer holds one connection
    const honest = await slowReader(port, '127.0.0.3');
    await slowReader(port, '127.0.0.4');
    expect(server.listenerStats.refused).toMatchObject({ 'connection-bound': 0, evicted: 1 });
    expect(await honest.finish()).toBe('whole');
    expect(await attacker[0]!.finish()).toBe('cut');
    expect(await attacker[1]!.finish()).toBe('whole');
  });

  it('the listener full and every client holding one: the oldest is evicted', async () => {
    const server = await serveMetrics(bigSource(), '127.0.0.1', 0, { ...METRICS_LIMITS, maxConnections: 3, requestTimeoutMs: 600_000 });
    open.push(server);
    const port = portOf(server);
    const readers = [];
    for (let i = 2; i <= 5; i++) readers.push(await slowReader(port, `127.0.0.${i}`));
    expect(server.listenerStats.refused).toMatchObject({ 'connection-bound': 0, evicted: 1 });
    expect(await Promise.all(readers.map((r) => r.finish()))).toEqual(['cut', 'whole', 'whole', 'whole']);
  });

  it('regression: a client reading a little now and then is reset at requestTimeoutMs from accept (an absolute deadline, not an idle one)', async () => {
    const server = await serveMetrics(bigSource(), '127.0.0.1', 0, { ...METRICS_LIMITS, headersTimeoutMs: 600_000, requestTimeoutMs: 500 });
    open.push(server);
    const r = await slowReader(portOf(server), '127.0.0.2');
    // one chunk every 20 ms: the answer progresses, so an idle timeout (main's socket.setTimeout) never fired
    const trickle = setInterval(() => r.take(64 << 10), 20);
    await vi.waitFor(() => expect(server.listenerStats.refused.deadline).toBe(1), { timeout: 30_000 });
    clearInterval(trickle);
    expect(await r.finish()).toBe('cut');
    expect(await scrape(portOf(server))).toBe(200); // the honest case: a scrape that reads is answered in full
    expect(server.listenerStats.refused.deadline).toBe(1);
  });

  // red team s13 (finding 4): per IPv6 /64 one pod reconnecting its 4 connections reset every scraper of its /64
  // (a node's pods, with Cilium's default pool a whole cluster's); test/netns/redteam-s13-metrics64.test.ts runs it
  it('a client is its address: IPv6 per /128 (not /64), IPv4-mapped as its IPv4, spellings of one address as one', () => {
    expect(metricsClientOf('2001:db8::1')).not.toBe(metricsClientOf('2001:db8::2'));
    expect(metricsClientOf('2001:DB8:0:0:0:0:0:1')).toBe(metricsClientOf('2001:db8::1'));
    expect(metricsClientOf('::ffff:198.18.0.9')).toBe('198.18.0.9');
    expect(metricsClientOf('198.18.0.9')).not.toBe(metricsClientOf('198.18.0.10'));
    expect(metricsClientOf('not an address')).toBe('not an address');
  });
});
