// gateway-dns: its Prometheus metrics (src/gateway/gslbmetrics.ts), its DNS counters, UDP and TCP, scraped over
// HTTP from the endpoint its config's `metrics:` section turns on; and the agent's service DNS series.
// On main gateway-dns had no metrics (its DNS counters were only in a warning every 10 s).
// Its TCP side keys connections as its UDP bucket does: per IPv6 /64 and /48 (fake sockets: loopback has one ::1).
import { afterEach, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import * as packet from 'dns-packet';
import { GatewayDns, parseGatewayDnsConfig } from '../../src/gateway/gslb.js';
import { GatewayDnsMetrics } from '../../src/gateway/gslbmetrics.js';
import { serveMetrics, type MetricsServer } from '../../src/net/metricsserver.js';
import { AgentMetrics, type MetricsSnapshot } from '../../src/agent/metrics.js';
import { DnsServer } from '../../src/services/dns.js';
import { silentLogger } from '../../src/log.js';

const base = 'etcd: { endpoints: ["http://198.18.1.2:2379"] }\nlisten: { address: 127.0.0.1, port: 5353 }\nnames: { web.example.com: shop/web }\n';
const query = (id: number, name: string) => packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
const line = (text: string, prefix: string) => text.split('\n').find((l) => l.startsWith(prefix));

let dns: GatewayDns | undefined;
let http: MetricsServer | undefined;
afterEach(() => {
  dns?.server.close();
  http?.close();
  dns = http = undefined;
});

describe('gateway-dns metrics', () => {
  it('the config takes an optional metrics: { address, port } (port 9962 by default)', () => {
    expect(parseGatewayDnsConfig(base).metrics).toBeUndefined();
    expect(parseGatewayDnsConfig(`${base}metrics: { address: 198.18.0.53 }\n`).metrics).toEqual({ address: '198.18.0.53', port: 9962 });
    expect(() => parseGatewayDnsConfig(`${base}metrics: { port: 9 }\n`)).toThrow(/metrics\.address/);
    expect(() => parseGatewayDnsConfig(`${base}metrics: { address: 198.18.0.53, other: 1 }\n`)).toThrow(/metrics/);
  });

  it('exports the DNS counters of both transports, scraped from its endpoint', async () => {
    dns = new GatewayDns(parseGatewayDnsConfig(base), silentLogger);
    await dns.server.listen('127.0.0.1', 0);
    const port = dns.server.port!;
    // over UDP: a name not configured (REFUSED) and one with no healthy gateway (SERVFAIL)
    const udp = createSocket('udp4');
    for (const [id, n] of [[1, 'other.example.com'], [2, 'web.example.com']] as const)
      await new Promise<void>((r) => {
        udp.once('message', () => r());
        udp.send(query(id, n), port, '127.0.0.1');
      });
    udp.close();
    // over TCP: one query, answered
    const tcp = net.connect({ port, host: '127.0.0.1' });
    const q = query(3, 'web.example.com');
    tcp.write(Buffer.concat([Buffer.from([0, q.length]), q]));
    await new Promise((r) => tcp.once('data', r));
    tcp.destroy();
    http = await serveMetrics(new GatewayDnsMetrics(dns).source, '127.0.0.1', 0);
    const t = await (await fetch(`http://127.0.0.1:${(http.address() as net.AddressInfo).port}/metrics`)).text();
    expect(line(t, 'wiremesh_gateway_dns_queries_total{result="refused"}')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_gateway_dns_queries_total{result="servfail"}')).toMatch(/ 2$/);
    expect(line(t, 'wiremesh_gateway_dns_queries_total{result="limited"}')).toMatch(/ 0$/);
    expect(line(t, 'wiremesh_gateway_dns_tcp_queries_total')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_gateway_dns_tcp_connections_total{result="accepted"}')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_gateway_dns_sources')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_gateway_dns_listeners{state="healthy"}')).toMatch(/ 0$/);
    expect(line(t, 'wiremesh_gateway_dns_listening{proto="udp"}')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_gateway_dns_listening{proto="tcp"}')).toMatch(/ 1$/);
    expect(t).toMatch(/^# TYPE wiremesh_gateway_dns_queries_total counter$/m);
    expect(t).toMatch(/^wiremesh_gateway_dns_process_cpu_seconds_total/m);
  });

  it('regression: a DNS that cannot listen undoes start (the cli then closes /metrics and exits non-zero)', async () => {
    dns = new GatewayDns(parseGatewayDnsConfig(base.replace('127.0.0.1', '198.18.250.1')), silentLogger); // not this host's
    await expect(dns.start()).rejects.toThrow(/EADDRNOTAVAIL/);
    expect((dns as unknown as { stopped: boolean; watchers: unknown[] }).stopped).toBe(true);
    expect(dns.server.counters.listening).toEqual({ udp: false, tcp: false });
  });

  it("the agent's service DNS exports the same series, TCP ones included", async () => {
    const counters = new DnsServer(() => ({ rcode: 0, answers: [], additionals: [], authorities: [] }), silentLogger).counters;
    Object.assign(counters, { answered: 4, servfail: 0 });
    Object.assign(counters.tcp, { queries: 3, refused: 7, open: 2 });
    Object.assign(counters.listening, { udp: true, tcp: false, tcpError: 'listen EADDRINUSE' }); // TCP's port taken
    const m = new AgentMetrics({ cluster: 'c1', node: 'n1' }, () => ({ peers: [], counters: {}, handshakes: { initiated: 0, completed: 0, rejected: 0, crossed: 0 }, services: [], etcdConnected: true, syncedClusters: [], syncLag: new Map(), remotes: [], rejections: [], dns: counters }) as MetricsSnapshot);
    const t = await m.text();
    expect(line(t, 'wiremesh_dns_queries_total{result="answered"')).toMatch(/ 4$/);
    expect(line(t, 'wiremesh_dns_tcp_queries_total{')).toMatch(/ 3$/);
    expect(line(t, 'wiremesh_dns_tcp_connections_total{result="refused"')).toMatch(/ 7$/);
    expect(line(t, 'wiremesh_dns_tcp_connections{')).toMatch(/ 2$/);
    expect(line(t, 'wiremesh_dns_listening{proto="udp"')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_dns_listening{proto="tcp"')).toMatch(/ 0$/);
  });
});

describe('gateway-dns over TCP: connections per /64 and per /48', () => {
  /** A stand-in for an accepted socket from `address` (loopback has one IPv6 address, ::1). */
  class FakeSocket extends EventEmitter {
    reset = false;
    destroyed = false;
    remotePort = 5353;
    constructor(readonly remoteAddress: string) {
      super();
    }
    get remoteFamily() {
      return this.remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
    }
    setNoDelay() {}
    resetAndDestroy() {
      this.reset = true;
      this.destroy();
    }
    destroy() {
      if (this.destroyed) return;
      this.destroyed = true;
      this.emit('close');
    }
  }

  it('a /64 holds at most 8 connections whatever its addresses, a /48 at most 32 over its /64s; others apart', () => {
    dns = new GatewayDns(parseGatewayDnsConfig(base), silentLogger);
    const accept = (a: string) => {
      const s = new FakeSocket(a);
      (dns!.server as unknown as { tcp: { accept(s: unknown): void } }).tcp.accept(s);
      return s;
    };
    const one64 = Array.from({ length: 20 }, (_, i) => accept(`2001:db8:1:1::${(i + 1).toString(16)}`));
    expect(one64.filter((s) => !s.reset).length).toBe(8);
    const sameSite = Array.from({ length: 60 }, (_, i) => accept(`2001:db8:1:${(2 + i).toString(16)}::1`)); // 60 other /64s of the /48
    expect(sameSite.filter((s) => !s.reset).length).toBe(32 - 8);
    expect(accept('2001:db8:2:1::1').reset).toBe(false); // another /48
    expect(accept('198.18.7.7').reset).toBe(false);
    expect(dns.server.counters.tcp).toMatchObject({ accepted: 34, refused: 12 + 36, open: 34 });
    for (const s of one64) s.destroy(); // slots come back with 'close'
    expect(accept('2001:db8:1:1::99').reset).toBe(false);
  });
});
