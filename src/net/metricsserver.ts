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
import { gatewayClientOf } from '../gateway/gateway.js';
import { ClientBounds } from './clientbounds.js';
import { ExpositionCache, RENDER_INTERVAL_MS, type MetricsSource } from './expositioncache.js';
import { listen } from './listen.js';

export type { MetricsSource } from './expositioncache.js';

/**
 * maxConnections: open connections at once (Prometheus needs one per scraper); when full, a new connection evicts
 * the oldest one that has not sent its request head yet (reset), else it is reset: a connection that sent its head
 * is answered from the cache and closed at once, so only silent ones can fill the listener, and those cannot keep
 * a scraper (which sends its head at once) out; maxPerClient: of which from one client (an IPv4 address, an IPv6
 * /64: gatewayClientOf; more are reset on accept), so that one client reconnecting in a loop cannot hold them all;
 * headersTimeoutMs: the time from accept to a complete request head (else 408 and closed; one that never sends a
 * byte included; Prometheus sends it at once); requestTimeoutMs: a
 * connection idle (nothing sent either way) that long is closed (an answer the client does not read);
 * renderIntervalMs: the exposition is rendered at most once per this many ms, concurrent requests sharing the
 * render (ExpositionCache).
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
 * What the listener refused since it started: connections reset at accept (past maxConnections with none to evict,
 * past maxPerClient), connections evicted before their request head (the listener full: `evicted`), connections
 * that sent more than one request head (pipelined; a body counts too: never read).
 */
export interface MetricsListenerStats {
  refused: { 'connection-bound': number; 'per-client-bound': number; evicted: number; pipelined: number };
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

/** Writes the one answer of the connection and closes it once flushed (what the client sent beyond is unread). */
function answer(socket: Socket, status: number, headers: Record<string, string>, body: string, headOnly = false): void {
  if (socket.destroyed || !socket.writable) return;
  const b = Buffer.from(body);
  const head = Object.entries({ ...headers, 'content-length': String(b.length), connection: 'close' }).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${status} ${REASONS[status]}\r\n${head.join('')}\r\n`, 'latin1'), headOnly ? Buffer.alloc(0) : b]), () => socket.destroy());
}

/** `wiremesh_metrics_listener_refused_total{reason}` in the served registry (docs/metrics.md). */
function refusalCounter(registry: Registry, limits: MetricsLimits, stats: () => MetricsListenerStats): void {
  const name = 'wiremesh_metrics_listener_refused_total';
  registry.removeSingleMetric(name); // a listener started again reports its own
  new Counter({
    name,
    help: `Connections this metrics listener refused, by reason: connection-bound (${limits.maxConnections} open, none to evict), evicted (before its request head, the listener full), per-client-bound (${limits.maxPerClient} from one address or IPv6 /64), pipelined (bytes after the first request head: never read).`,
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
  const refused = { 'connection-bound': 0, 'per-client-bound': 0, evicted: 0, pipelined: 0 };
  // admitted connections, and those of them without a request head yet, in accept order (oldest first)
  const live = new Set<Socket>();
  const silent = new Set<Socket>();
  /** Makes room for a new connection: false when every open one has sent its head (answered, closing). */
  const room = (): boolean => {
    if (live.size < limits.maxConnections) return true;
    const oldest = silent.values().next();
    if (oldest.done) return false;
    refused.evicted++;
    silent.delete(oldest.value);
    live.delete(oldest.value);
    oldest.value.resetAndDestroy();
    return true;
  };
  const serve = (socket: Socket, line: string) => {
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(line);
    if (!m) return answer(socket, 400, {}, '');
    if (m[1] !== 'GET' && m[1] !== 'HEAD') return answer(socket, 405, { allow: 'GET, HEAD' }, '');
    if (m[2] !== '/metrics') return answer(socket, 404, {}, 'see /metrics\n');
    exposition.text().then(
      (t) => answer(socket, 200, { 'content-type': exposition.contentType }, t, m[1] === 'HEAD'),
      (err: Error) => answer(socket, 500, {}, `${err.message}\n`),
    );
  };
  const server = createServer((socket) => {
    if (bounds.admit(socket, gatewayClientOf(socket.remoteAddress ?? ''))) return void refused['per-client-bound']++;
    socket.on('error', () => undefined);
    if (!room()) {
      refused['connection-bound']++;
      return void socket.resetAndDestroy();
    }
    live.add(socket);
    silent.add(socket);
    socket.once('close', () => {
      live.delete(socket);
      silent.delete(socket);
    });
    socket.setTimeout(limits.requestTimeoutMs, () => socket.destroy());
    const headers = setTimeout(() => answer(socket, 408, {}, ''), limits.headersTimeoutMs);
    socket.once('close', () => clearTimeout(headers));
    let got: Buffer = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      got = got.length ? Buffer.concat([got, d]) : d;
      const end = headEnd(got);
      if (end < 0 && got.length <= MAX_REQUEST_HEAD) return;
      // one request head, or too much without one: nothing more is read of this connection
      socket.off('data', onData);
      socket.pause();
      clearTimeout(headers);
      silent.delete(socket);
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
