/** A Prometheus endpoint on a TCP address: GET /metrics answers with `source`'s exposition, anything else 404. */
import { createServer, type Server } from 'node:http';
import { listen } from './listen.js';

/** What a scrape reads: the exposition text (one scrape, one call) and its content type (prom-client's registry). */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

/** Listens on address:port; rejects on the listen error (EADDRINUSE...). A failed scrape answers 500 with its message. */
export async function serveMetrics(source: MetricsSource, address: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    source.text().then(
      (t) => res.writeHead(200, { 'content-type': source.contentType }).end(t),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  });
  await listen(server, port, address);
  return server;
}
