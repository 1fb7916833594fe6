/**
 * Client side of the agent's local API (api.ts serves it): one HTTP/1.1
 * request over the agent's UNIX socket. The CLI, the UI, the testbed, chaos
 * runs, benchmarks and tests speak to agents through these two calls.
 */
import { request } from 'node:http';

/**
 * One request to an agent's socket, the answer as text (metrics, NDJSON flows).
 * `body` is sent as JSON; `timeoutMs` (none by default) fails the request with
 * "<path>: timeout". Rejects on a socket error (no agent there: ENOENT, ECONNREFUSED).
 */
export function agentRequest(socket: string, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    // agent: false: no keep-alive pool; a pooled socket the agent already closed failed the next request with EPIPE
    const req = request({ socketPath: socket, agent: false, method, path, headers: { 'content-type': 'application/json' }, ...(timeoutMs ? { timeout: timeoutMs } : {}) }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: data }));
    });
    req.on('timeout', () => req.destroy(new Error(`${path}: timeout`)));
    req.on('error', reject);
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}

/** One request to an agent's socket, the answer parsed as JSON (null for an empty answer); throws on invalid JSON. */
export async function callAgent(socket: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const r = await agentRequest(socket, method, path, body);
  return { status: r.status, body: r.text ? JSON.parse(r.text) : null };
}
