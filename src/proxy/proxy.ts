/**
 * The agent's L7 proxy (HTTP/1.1), for flows the native data path redirects
 * because an ingress rule with `toPorts[].rules.http` covers them.
 *
 *   RX/TX thread: new flow to a local pod, policy verdict "redirect" ──▶
 *     DNAT to <router address>:<proxy port>, remembering (original
 *     destination, source identity) per client address and port
 *   proxy: accept ──▶ proxyOriginal(client) ──▶ the endpoint's L7 rules for
 *     that identity and port ──▶ HTTP/1.1 server parsing (Node's llhttp:
 *     keep-alive, pipelining, chunked bodies) ──▶ per request: 403 "Access
 *     denied" or forward to the pod over a keep-alive pool ──▶ an L7 flow
 *     record (method, path, status, latency)
 *   the proxy's replies leave from its own address; the TX thread turns them
 *     back into the pod's before policy and the tunnel.
 *
 * The source identity stays the client's: it decides the rules and the flow
 * records; the pod sees the node as the TCP peer and the client in
 * X-Forwarded-For. HTTP/2 (the client preface) is passed through at L4: no
 * request is checked, as the docs say.
 */
import http from 'node:http';
import net from 'node:net';
import { Pool } from 'undici';
import type { Logger } from '../log.js';
import type { NativeDevice } from '../native/binding.js';
import { formatIP, parseIP } from '../net/ip.js';
import { decideRequest, type L7Rules } from '../policy/l7.js';
import type { Rule } from '../policy/rules.js';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n');
/** Hop-by-hop headers (RFC 9110 7.6.1): each side of the proxy has its own connection. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

/** What the proxy needs of the agent's policy state (PolicyDatapath). */
export interface L7Policy {
  l7For(dstIp: string, dstPort: number, identity: number): { endpoint: string; rules: L7Rules } | null;
  recordL7(
    src: { ip: string; port: number; identity: number },
    dst: { ip: string; port: number },
    verdict: 'FORWARDED' | 'DROPPED',
    l7: { type: 'http'; method: string; path: string; host?: string; status?: number; latencyMs?: number },
    rule?: Rule,
  ): void;
}

interface Conn {
  client: { ip: string; port: number; identity: number };
  dst: { ip: string; port: number };
  rules: L7Rules;
}

export interface ProxyStats {
  connections: number;
  requests: number;
  denied: number;
  upstreamErrors: number;
  passthrough: number;
}

export class L7Proxy {
  private server: net.Server | undefined;
  private readonly http = http.createServer({ keepAlive: true });
  private readonly conns = new WeakMap<net.Socket, Conn>();
  /** Keep-alive pools per pod:port (undici: ~1.9x the requests/s of http.request on this machine, docs/dependencies.md). */
  private readonly pools = new Map<string, Pool>();
  readonly stats: ProxyStats = { connections: 0, requests: 0, denied: 0, upstreamErrors: 0, passthrough: 0 };

  constructor(
    private readonly dev: Pick<NativeDevice, 'setProxy' | 'proxyOriginal'>,
    private readonly address: string,
    private readonly port: number,
    private readonly policy: L7Policy,
    private readonly log: Logger,
  ) {
    this.http.on('request', (req, res) => this.request(req, res));
    this.http.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  async start(): Promise<void> {
    const server = net.createServer((s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.warn({ err: err.message }, 'proxy listener error'));
    this.server = server;
    this.dev.setProxy(parseIP(this.address)!, this.port);
    this.log.info({ address: this.address, port: this.port }, 'L7 proxy listening');
  }

  stop(): void {
    this.server?.close();
    for (const p of this.pools.values()) void p.destroy();
    this.pools.clear();
  }

  private pool(ip: string, port: number): Pool {
    const origin = `http://${ip}:${port}`;
    let p = this.pools.get(origin);
    if (!p) this.pools.set(origin, (p = new Pool(origin, { connections: 128, pipelining: 1 })));
    return p;
  }

  private accept(s: net.Socket): void {
    this.stats.connections++;
    s.on('error', () => undefined);
    // Responses go out as head then body: Nagle would hold the body for the client's delayed ACK.
    s.setNoDelay(true);
    const ip = s.remoteAddress?.replace(/^::ffff:/, '');
    const addr = ip ? parseIP(ip) : null;
    const orig = addr && addr.length === 4 ? this.dev.proxyOriginal(addr, s.remotePort!) : null;
    const decided = orig ? this.policy.l7For(formatIP(orig.address), orig.port, orig.identity) : null;
    if (!orig || !decided) {
      s.destroy(); // not a redirected flow (or its endpoint is gone)
      return;
    }
    const conn: Conn = { client: { ip: ip!, port: s.remotePort!, identity: orig.identity }, dst: { ip: formatIP(orig.address), port: orig.port }, rules: decided.rules };
    s.once('data', (first: Buffer) => {
      if (first.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) return this.passthrough(s, first, conn);
      s.pause();
      s.unshift(first);
      this.conns.set(s, conn);
      this.http.emit('connection', s);
      s.resume();
    });
  }

  /** HTTP/2 and anything not HTTP/1: bytes both ways, unchecked. */
  private passthrough(s: net.Socket, first: Buffer, c: Conn): void {
    this.stats.passthrough++;
    const up = net.connect(c.dst.port, c.dst.ip, () => {
      up.write(first);
      s.pipe(up);
      up.pipe(s);
    });
    up.on('error', () => s.destroy());
    s.on('close', () => up.destroy());
  }

  private request(req: http.IncomingMessage, res: http.ServerResponse): void {
    const c = this.conns.get(req.socket);
    if (!c) {
      res.writeHead(500).end();
      return;
    }
    this.stats.requests++;
    const t0 = performance.now();
    const view = { method: req.method ?? 'GET', path: req.url ?? '/', host: req.headers.host ?? '', headers: req.headers };
    const verdict = decideRequest(c.rules, view);
    const l7 = { type: 'http' as const, method: view.method, path: view.path, ...(view.host ? { host: view.host } : {}) };
    if (!verdict.allowed) {
      this.stats.denied++;
      req.resume(); // drain the body so the connection stays usable
      res.writeHead(403, { 'content-type': 'text/plain', 'content-length': '14' });
      res.end('Access denied\n');
      this.policy.recordL7(c.client, c.dst, 'DROPPED', { ...l7, status: 403, latencyMs: performance.now() - t0 });
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
    const xff = headers['x-forwarded-for'];
    headers['x-forwarded-for'] = xff ? `${String(xff)}, ${c.client.ip}` : c.client.ip;
    const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
    let status = 0;
    this.pool(c.dst.ip, c.dst.port)
      .stream({ path: view.path, method: view.method as 'GET', headers, body: hasBody ? req : null }, ({ statusCode, headers: h }) => {
        status = statusCode;
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
        res.writeHead(statusCode, out);
        return res;
      })
      .then(() => this.policy.recordL7(c.client, c.dst, 'FORWARDED', { ...l7, status, latencyMs: performance.now() - t0 }, verdict.rule))
      .catch((err: Error) => {
        this.stats.upstreamErrors++;
        this.log.debug({ err: err.message, dst: c.dst }, 'proxy upstream error');
        if (!res.headersSent) res.writeHead(503, { 'content-type': 'text/plain' }).end('upstream unavailable\n');
        else res.destroy();
      });
  }
}
