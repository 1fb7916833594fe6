/**
 * A Prometheus endpoint on a TCP address: GET (or HEAD) /metrics answers with `source`'s exposition, another path
 * 404, another method 405. Its clients are untrusted (anyone who reaches the address: pods through the `host`
 * identity, the underlay): connections in all and per client, the time to send a request, the bytes read of a
 * connection (one request head, ≤ 8 KiB) and renders (one per renderIntervalMs, shared) are bounded
 * (METRICS_LIMITS, docs/security.md), so that no client can keep the process's JavaScript thread busy or lock
 * scrapers out.
 *
 * One request per connection, answered with `Connection: close`: a scraper needs no more (Prometheus reconnects
 * every scrape interval), and what a client sends after its first request head (pipelined requests, a body) is
 * never read. Node's HTTP server parses every request of a chunk it reads, so one connection pipelining 64 KiB
 * of GETs cost ~1 800 request objects even when only the first is answered (a 10 ms timer fired 65 times in 5 s
 * instead of ~480); the request line is all this listener needs (no header changes its answer).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import { unmappedIPv4 } from '../gateway/proxyproto.js';
import { ClientBounds } from './clientbounds.js';
import { ExpositionCache, RENDER_INTERVAL_MS, type MetricsSource } from './expositioncache.js';
import { formatIP, parseIP } from './ip.js';
import { listen } from './listen.js';

export type { MetricsSource } from './expositioncache.js';

/**
 * maxConnections: open connections at once (Prometheus needs one per scraper); when full, a new connection evicts
 * (resets) the oldest open connection of the client holding the most, whether it has sent its request head or
 * not: a client that sends its head and then does not read an exposition larger than the socket buffers keeps its
 * answer unflushed, so a listener that evicted only silent ones could be filled by such readers. A scraper holds
 * one connection, so it is evicted only when no client holds more, and then only once it is the oldest;
 * maxPerClient: of which from one client (metricsClientOf: one address; more are reset on accept), so that one
 * client reconnecting in a loop cannot hold them all; headersTimeoutMs: the time from accept to a complete
 * request head (else 408 and closed; one that never sends a byte included; Prometheus sends it at once);
 * requestTimeoutMs: the time from accept to the answer's last byte handed to the kernel, whatever the client
 * reads meanwhile: past it the connection is reset (`deadline`), so a client reading one segment now and then
 * holds a slot and its answer that long only (Prometheus's default scrape timeout is 10 s as well);
 * renderIntervalMs: the exposition is rendered at most once per this many ms, concurrent requests sharing the
 * render and its bytes (ExpositionCache): at most requestTimeoutMs / renderIntervalMs + 1 renders' bytes are
 * held by answers being sent, whatever the number of readers.
 */
export interface MetricsLimits {
  maxConnections: number;
  maxPerClient: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  renderIntervalMs: number;
}

export const METRICS_LIMITS: MetricsLimits = { maxConnections: 64, maxPerClient: 4, headersTimeoutMs: 2_000, requestTimeoutMs: 10_000, renderIntervalMs: RENDER_INTERVAL_MS };

/** The longest request head read (request line and headers, bytes): past it, 431 and closed. */
export const MAX_REQUEST_HEAD = 8192;

/**
 * The party a metrics client counts against (MetricsLimits.maxPerClient): its address (an IPv4-mapped one as its
 * IPv4 address; IPv6 canonical), not the gateway's /64. The listener's clients are pods (through the `host`
 * identity) and the underlay: a node's pods share a /64 (with Cilium's default IPv6 pool a whole cluster's do),
 * so per /64 one pod reconnecting its 4 connections locked Prometheus in another pod out; a pod cannot forge its
 * source address (the agent's pod guard). An unparsable address counts as itself.
 */
export function metricsClientOf(address: string): string {
  const a = parseIP(unmappedIPv4(address));
  return a ? formatIP(a) : address;
}

/**
 * What the listener refused since it started: connections reset at accept (past maxConnections with none to evict,
 * past maxPerClient), connections evicted (the listener full: `evicted`), connections reset at requestTimeoutMs
 * with their answer not yet flushed (`deadline`: a client not reading it), connections that sent more than one
 * request head (pipelined; a body counts too: never read).
 */
export interface MetricsListenerStats {
  refused: { 'connection-bound': number; 'per-client-bound': number; evicted: number; deadline: number; pipelined: number };
  /** Renders of the exposition (at most one per renderIntervalMs). */
  renders: number;
  /** Renders given up on after ExpositionCache's maxPendingMs without settling (a new one was started). */
  stalledRenders: number;
}

export interface MetricsServer extends Server {
  readonly listenerStats: MetricsListenerStats;
}

const REASONS: Record<number, string> = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error' };

/** Where a request head ends (after its blank line; CRLF or bare LF line ends, RFC 9112 2.2), or -1. */
function headEnd(got: Buffer): number {
  const crlf = got.indexOf('\n\r\n');
  const lf = got.indexOf('\n\n');
  if (crlf < 0) return lf < 0 ? -1 : lf + 2;
  return lf < 0 || crlf < lf ? crlf + 3 : lf + 2;
}

/**
 * Writes the one answer of the connection and closes it once flushed (what the client sent beyond is unread).
 * `body` is written as it is, never copied: the exposition's one Buffer per render is shared by every answer.
 */
function answer(socket: Socket, status: number, headers: Record<string, string>, body: string | Buffer, headOnly = false): void {
  if (socket.destroyed || !socket.writable) return;
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const head = Object.entries({ ...headers, 'content-length': String(b.length), connection: 'close' }).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.cork();
  socket.write(Buffer.from(`HTTP/1.1 ${status} ${REASONS[status]}\r\n${head.join('')}\r\n`, 'latin1'));
  if (!headOnly && b.length) socket.write(b);
  socket.end(() => socket.destroy());
  socket.uncork();
}

/** `wiremesh_metrics_listener_refused_total{reason}` in the served registry (docs/metrics.md). */
function refusalCounter(registry: Registry, limits: MetricsLimits, stats: () => MetricsListenerStats): void {
  const name = 'wiremesh_metrics_listener_refused_total';
  registry.removeSingleMetric(name); // a listener started again reports its own
  new Counter({
    name,
    help: `Connections this metrics listener refused, by reason: connection-bound (${limits.maxConnections} open, none to evict), evicted (the listener full: the oldest of the client holding the most), deadline (answer not flushed ${limits.requestTimeoutMs} ms after accept), per-client-bound (${limits.maxPerClient} from one address), pipelined (bytes after the first request head: never read).`,
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(stats().refused)) this.inc({ reason }, n);
    },
  });
}

/**
 * Listens on address:port; rejects on the listen error (EADDRINUSE...). A failed render answers 500 with its
 * message. With the source's registry, the listener's refusals are exported in it (refusalCounter).
 */
export async function serveMetrics(source: MetricsSource & { registry?: Registry }, address: string, port: number, limits: MetricsLimits = METRICS_LIMITS): Promise<MetricsServer> {
  const exposition = new ExpositionCache(source, limits.renderIntervalMs);
  // the total bound is ours (eviction below): ClientBounds keeps the per-client one
  const bounds = new ClientBounds({ maxConnections: Number.POSITIVE_INFINITY, maxPerClient: limits.maxPerClient });
  const refused = { 'connection-bound': 0, 'per-client-bound': 0, evicted: 0, deadline: 0, pipelined: 0 };
  // admitted connections and their client, in accept order (oldest first)
  const live = new Map<Socket, string>();
  /** Makes room for a new connection: evicts the oldest of the client holding the most; false when none is open. */
  const room = (): boolean => {
    if (live.size < limits.maxConnections) return true;
    let victim: Socket | undefined;
    let most = 0;
    for (const [socket, client] of live) {
      const n = bounds.of(client);
      if (n > most) [victim, most] = [socket, n];
    }
    if (!victim) return false;
    refused.evicted++;
    live.delete(victim);
    victim.resetAndDestroy();
    return true;
  };
  const serve = (socket: Socket, line: string) => {
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(line);
    if (!m) return answer(socket, 400, {}, '');
    if (m[1] !== 'GET' && m[1] !== 'HEAD') return answer(socket, 405, { allow: 'GET, HEAD' }, '');
    if (m[2] !== '/metrics') return answer(socket, 404, {}, 'see /metrics\n');
    exposition.body().then(
      (t) => answer(socket, 200, { 'content-type': exposition.contentType }, t, m[1] === 'HEAD'),
      (err: Error) => answer(socket, 500, {}, `${err.message}\n`),
    );
  };
  const server = createServer((socket) => {
    const client = metricsClientOf(socket.remoteAddress ?? '');
    if (bounds.admit(socket, client)) return void refused['per-client-bound']++;
    socket.on('error', () => undefined);
    if (!room()) {
      refused['connection-bound']++;
      return void socket.resetAndDestroy();
    }
    live.set(socket, client);
    // absolute, not idle: a client reading a segment now and then would reset an idle timeout for good
    const deadline = setTimeout(() => {
      refused.deadline++;
      socket.resetAndDestroy();
    }, limits.requestTimeoutMs);
    const headers = setTimeout(() => answer(socket, 408, {}, ''), limits.headersTimeoutMs);
    socket.once('close', () => {
      live.delete(socket);
      clearTimeout(deadline);
      clearTimeout(headers);
    });
    let got: Buffer = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      got = got.length ? Buffer.concat([got, d]) : d;
      const end = headEnd(got);
      if (end < 0 && got.length <= MAX_REQUEST_HEAD) return;
      // one request head, or too much without one: nothing more is read of this connection
      socket.off('data', onData);
      socket.pause();
      clearTimeout(headers);
      if (end < 0 || end > MAX_REQUEST_HEAD) return answer(socket, 431, {}, '');
      if (got.length > end) refused.pipelined++;
      serve(socket, got.subarray(0, got.indexOf('\n')).toString('latin1').replace(/\r$/, ''));
    };
    socket.on('data', onData);
  }) as MetricsServer;
  const stats = (): MetricsListenerStats => ({ refused: { ...refused }, renders: exposition.renders, stalledRenders: exposition.stalled });
  Object.defineProperty(server, 'listenerStats', { get: stats });
  if (source.registry) refusalCounter(source.registry, limits, stats);
  await listen(server, port, address);
  return server;
}
