/**
 * A Prometheus endpoint on a TCP address: GET (or HEAD) /metrics answers with `source`'s exposition, another path
 * 404, another method 405. Its clients are untrusted (anyone who reaches the address: pods through the `host`
 * identity, the underlay): connections in all and per client, the time to send a request, idle connections,
 * requests per connection (one) and renders (one per renderIntervalMs, shared) are bounded (METRICS_LIMITS,
 * docs/security.md), so that no client can keep the process's JavaScript thread busy or lock scrapers out.
 */
import { createServer, type Server } from 'node:http';
import { Counter, type Registry } from 'prom-client';
import { gatewayClientOf } from '../gateway/gateway.js';
import { ClientBounds } from './clientbounds.js';
import { ExpositionCache, RENDER_INTERVAL_MS, type MetricsSource } from './expositioncache.js';
import { listen } from './listen.js';

export type { MetricsSource } from './expositioncache.js';

/**
 * maxConnections: open connections at once (more are closed on accept; Prometheus needs one per scraper);
 * maxPerClient: of which from one client (an IPv4 address, an IPv6 /64: gatewayClientOf), so that one client
 * reconnecting in a loop cannot hold them all; headersTimeoutMs / requestTimeoutMs: the time a client has to send
 * a request's headers / all of it (checked every checkMs); a connection idle (nothing sent either way) for
 * requestTimeoutMs is closed too (one that never sends a byte); keepAliveMs: how long an idle connection stays
 * after its response before it is closed; renderIntervalMs: the exposition is rendered at most once per this
 * many ms, concurrent requests sharing the render (ExpositionCache). A connection past maxPerClient is reset.
 * One request per connection: the response says `Connection: close`, and a client that pipelines a second
 * request on it is closed at once (Node parses it, answers nothing: without this bound one connection could
 * queue any number of scrapes).
 */
export interface MetricsLimits {
  maxConnections: number;
  maxPerClient: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveMs: number;
  checkMs: number;
  renderIntervalMs: number;
}

export const METRICS_LIMITS: MetricsLimits = { maxConnections: 64, maxPerClient: 4, headersTimeoutMs: 10_000, requestTimeoutMs: 10_000, keepAliveMs: 5000, checkMs: 1000, renderIntervalMs: RENDER_INTERVAL_MS };

/**
 * What the listener refused since it started: connections closed or reset at accept (past maxConnections, past
 * maxPerClient), connections closed for a pipelined second request.
 */
export interface MetricsListenerStats {
  refused: { 'connection-bound': number; 'per-client-bound': number; pipelined: number };
  /** Renders of the exposition (at most one per renderIntervalMs). */
  renders: number;
}

export interface MetricsServer extends Server {
  readonly listenerStats: MetricsListenerStats;
}

/** `wiremesh_metrics_listener_refused_total{reason}` in the served registry (docs/metrics.md). */
function refusalCounter(registry: Registry, limits: MetricsLimits, stats: () => MetricsListenerStats): void {
  const name = 'wiremesh_metrics_listener_refused_total';
  registry.removeSingleMetric(name); // a listener started again reports its own
  new Counter({
    name,
    help: `Connections this metrics listener refused, by reason: connection-bound (${limits.maxConnections} open), per-client-bound (${limits.maxPerClient} from one address or IPv6 /64), pipelined (a second request on a connection: closed).`,
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(stats().refused)) this.inc({ reason }, n);
    },
  });
}

/**
 * Listens on address:port; rejects on the listen error (EADDRINUSE...). A failed scrape answers 500 with its
 * message. With the source's registry, the listener's refusals are exported in it (refusalCounter).
 */
export async function serveMetrics(source: MetricsSource & { registry?: Registry }, address: string, port: number, limits: MetricsLimits = METRICS_LIMITS): Promise<MetricsServer> {
  const exposition = new ExpositionCache(source, limits.renderIntervalMs);
  const bounds = new ClientBounds(limits);
  const refused = { 'connection-bound': 0, 'per-client-bound': 0, pipelined: 0 };
  const server = createServer({ headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: limits.checkMs }, (req, res) => {
    res.setHeader('connection', 'close');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    exposition.text().then(
      (t) => res.writeHead(200, { 'content-type': exposition.contentType }).end(t),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  }) as MetricsServer;
  // past maxConnections Node closes the connection before it is a socket ('drop'); the per-client bound is ours
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => refused['connection-bound']++);
  server.on('connection', (socket) => {
    const reason = bounds.admit(socket, gatewayClientOf(socket.remoteAddress ?? ''));
    if (reason) refused[reason === 'connection bound' ? 'connection-bound' : 'per-client-bound']++;
  });
  server.maxRequestsPerSocket = 1;
  // a second request on a connection (pipelined): Node would answer it 503 and parse on; the connection goes
  server.on('dropRequest', (_req, socket) => {
    refused.pipelined++;
    socket.destroy();
  });
  server.keepAliveTimeout = limits.keepAliveMs;
  // a connection that never sends a byte has no request for the timeouts above to time: closed once idle as long
  server.timeout = limits.requestTimeoutMs;
  const stats = (): MetricsListenerStats => ({ refused: { ...refused }, renders: exposition.renders });
  Object.defineProperty(server, 'listenerStats', { get: stats });
  if (source.registry) refusalCounter(source.registry, limits, stats);
  await listen(server, port, address);
  return server;
}
