// gateway-dns's health probe (src/gateway/gslb.ts, tcpprobe.ts) against real
// ingress gateways on loopback: a gateway is healthy only when a connection
// to it survives, not when the kernel completes a handshake that the gateway
// then resets (its bound reached, no backend) or ends (its backend closes).
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY_LIMITS, IngressGateway } from '../../src/gateway/gateway.js';
import { GatewayDns, parseGatewayDnsConfig } from '../../src/gateway/gslb.js';
import { listenerHealth, probeTcp, SOFT_FAILS_TO_DROP, type ListenerHealth, type TcpProbeFailure } from '../../src/gateway/tcpprobe.js';
import type { GatewayRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';

const listen = async (server: net.Server, host = '127.0.0.1') => {
  await new Promise<void>((r) => server.listen(0, host, r));
  return (server.address() as net.AddressInfo).port;
};

describe('gateway-dns health (regression: a bare TCP connect counted as healthy)', () => {
  const servers: net.Server[] = [];
  const gateways: IngressGateway[] = [];
  const port = { echo: 0, closing: 0 };

  beforeAll(async () => {
    const echo = net.createServer((s) => {
      s.on('error', () => undefined);
      s.on('data', (d) => s.write(d));
    });
    const closing = net.createServer((s) => s.end()); // accepts and closes at once
    servers.push(echo, closing);
    port.echo = await listen(echo);
    port.closing = await listen(closing);
  });

  afterAll(() => {
    for (const g of gateways) g.stop();
    for (const s of servers) s.close();
  });

  /** A gateway on 127.0.0.1 for shop/web whose backend is backendPort (0: no backend); its listen port. */
  const gateway = async (backendPort: number, limits = GATEWAY_LIMITS) => {
    const dir = { pick: () => (backendPort ? { ip: '127.0.0.1', port: backendPort } : undefined), backendAlive: () => true };
    const gw = new IngressGateway('127.0.0.1', '127.0.0.1', [{ service: 'shop/web', port: 80, listenPort: 0, proxyProtocol: false }], dir, silentLogger, undefined, limits);
    await gw.start();
    gateways.push(gw);
    return (gw['servers'][0]!.address() as net.AddressInfo).port;
  };

  it('answers only with gateways whose connections survive: not one at its bound, without a backend, or whose backend closes', async () => {
    const listeners = {
      good: await gateway(port.echo),
      full: await gateway(port.echo, { ...GATEWAY_LIMITS, maxConnections: 0 }), // resets every connection at accept
      noBackend: await gateway(0),
      closingBackend: await gateway(port.closing),
    };
    const cfg = parseGatewayDnsConfig('etcd: { endpoints: ["http://198.18.1.2:2379"] }\nlisten: { address: 198.18.0.53 }\nnames: { web.example.com: shop/web }\n');
    const dns = new GatewayDns(cfg, silentLogger);
    // the records as the etcd watchers would admit them: one node per listener
    for (const [node, listenPort] of Object.entries(listeners)) {
      const rec: GatewayRecord = { cluster: 'c1', node: node.toLowerCase(), address: '127.0.0.1', listeners: [{ service: 'shop/web', port: 80, listenPort }] };
      dns['gateways'].set(`k/${node}`, { record: rec });
    }
    dns['probeAll']();
    const health = dns['health'] as Map<string, ListenerHealth>;
    for (let i = 0; i < 100 && health.size < 4; i++) await new Promise((r) => setTimeout(r, 50));
    expect(Object.fromEntries(Object.entries(listeners).map(([n, p]) => [n, health.get(`127.0.0.1:${p}`)?.healthy]))).toEqual({ good: true, full: false, noBackend: false, closingBackend: false });
    expect(dns.targets('shop/web').map((g) => g.node)).toEqual(['good']);
  });

  it('the probe: a peer that stays open passes, silent or not; refused, reset, or a banner then close fail', async () => {
    const times = { connectMs: 300, settleMs: 150 };
    const banner = net.createServer((s) => s.end('421 busy\r\n'));
    const silent = net.createServer((s) => s.on('error', () => undefined));
    const greets = net.createServer((s) => {
      s.on('error', () => undefined);
      s.write('220 ready\r\n');
    });
    servers.push(banner, silent, greets);
    const gone = net.createServer();
    const free = await listen(gone);
    await new Promise((r) => gone.close(r));
    expect(await probeTcp('127.0.0.1', await listen(silent), times)).toBeUndefined();
    expect(await probeTcp('127.0.0.1', await listen(greets), times)).toBeUndefined();
    expect(await probeTcp('127.0.0.1', await listen(banner), times)).toBe('closed');
    expect(await probeTcp('127.0.0.1', port.closing, times)).toBe('closed');
    expect(await probeTcp('127.0.0.1', await gateway(port.echo, { ...GATEWAY_LIMITS, maxConnections: 0 }), times)).toBe('reset');
    expect(await probeTcp('127.0.0.1', free, times)).toBe('refused');
  });

  it('a probe blocked behind a busy event loop reads what happened on the wire, not its own timer (review of s11gslb)', async () => {
    const silent = net.createServer((s) => s.on('error', () => undefined));
    servers.push(silent);
    const p = await listen(silent);
    const probe = probeTcp('127.0.0.1', p, { connectMs: 100, settleMs: 50 });
    const until = Date.now() + 400; // the loop blocked past the connect timeout: the connect is pending, not missing
    while (Date.now() < until);
    expect(await probe).toBeUndefined();
  });

  it("a removed listener's probe result is not recorded (review of s11gslb: it came back with the record)", async () => {
    const cfg = parseGatewayDnsConfig('etcd: { endpoints: ["http://198.18.1.2:2379"] }\nlisten: { address: 198.18.0.53 }\nnames: { web.example.com: shop/web }\n');
    const dns = new GatewayDns(cfg, silentLogger);
    const listenPort = await gateway(port.echo);
    const rec: GatewayRecord = { cluster: 'c1', node: 'n1', address: '127.0.0.1', listeners: [{ service: 'shop/web', port: 80, listenPort }] };
    dns['gateways'].set('k/n1', { record: rec });
    dns['probeAll'](); // the probe is under way...
    dns['gateways'].delete('k/n1');
    dns['probeAll'](); // ...when its listener is gone
    await new Promise((r) => setTimeout(r, 1200)); // past the probe's connect + settle (800 ms)
    expect((dns['health'] as Map<string, ListenerHealth>).size).toBe(0);
  });
});

describe('listener health from probe results (hysteresis: one of several backends failing does not flap the gateway)', () => {
  const run = (results: (TcpProbeFailure | undefined)[]) => {
    let h: ListenerHealth | undefined;
    return results.map((f) => (h = listenerHealth(h, f)).healthy);
  };
  it('a listener not yet seen healthy fails closed; a pass makes it healthy at once', () => {
    expect(run(['closed', 'reset', undefined])).toEqual([false, false, true]);
  });
  it(`a healthy listener is dropped at the ${SOFT_FAILS_TO_DROP}rd soft failure in a row, a pass between resets the count`, () => {
    expect(run([undefined, 'closed', 'reset', undefined, 'closed', 'error', 'closed', undefined])).toEqual([true, true, true, true, true, true, false, true]);
  });
  it('refused and connect timeout drop a healthy listener at once (nothing listens, or the node is gone)', () => {
    expect(run([undefined, 'refused'])).toEqual([true, false]);
    expect(run([undefined, 'connect timeout'])).toEqual([true, false]);
  });
});
