/**
 * A Prometheus endpoint on a TCP address: GET (or HEAD) /metrics answers with `source`'s exposition, another path
 * 404, another method 405. Its clients are untrusted (anyone who reaches the address): connections, the time to
 * send a request and idle keep-alives are bounded (METRICS_LIMITS, docs/security.md).
 */
import { createServer, type Server } from 'node:http';
import { listen } from './listen.js';

/** What a scrape reads: the exposition text (one scrape, one call) and its content type (prom-client's registry). */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

/**
 * maxConnections: open connections at once (more are closed on accept; Prometheus needs one per scraper);
 * headersTimeoutMs / requestTimeoutMs: the time a client has to send a request's headers / all of it (checked
 * every checkMs); a connection idle (nothing sent either way) for requestTimeoutMs is closed too (one that never
 * sends a byte); keepAliveMs: how long an idle kept-alive connection stays after a response.
 */
export interface MetricsLimits {
  maxConnections: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveMs: number;
  checkMs: number;
}

export const METRICS_LIMITS: MetricsLimits = { maxConnections: 64, headersTimeoutMs: 10_000, requestTimeoutMs: 10_000, keepAliveMs: 5000, checkMs: 1000 };

/** Listens on address:port; rejects on the listen error (EADDRINUSE...). A failed scrape answers 500 with its message. */
export async function serveMetrics(source: MetricsSource, address: string, port: number, limits: MetricsLimits = METRICS_LIMITS): Promise<Server> {
  const server = createServer({ headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: limits.checkMs }, (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', connection: 'close' }).end();
      return;
    }
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    source.text().then(
      (t) => res.writeHead(200, { 'content-type': source.contentType }).end(t),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  });
  server.maxConnections = limits.maxConnections;
  server.keepAliveTimeout = limits.keepAliveMs;
  // a connection that never sends a byte has no request for the timeouts above to time: closed once idle as long
  server.timeout = limits.requestTimeoutMs;
  await listen(server, port, address);
  return server;
}
