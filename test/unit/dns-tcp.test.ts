// DNS over TCP (src/services/dnstcp.ts through DnsServer) on real loopback sockets, as a hostile pod or
// internet client would try it: a TC=1 answer over UDP then the whole answer over TCP, pipelining, a client
// that never reads, slowloris, a connection flood from one source, bad length prefixes, and one rate limiter
// for both transports. Answers are decoded with dns-packet (the oracle) from frames cut by their length prefix.
// On main (no TCP side) every test here fails: the TCP connect is refused.
import { afterEach, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import net from 'node:net';
import * as packet from 'dns-packet';
import { answer, DnsServer, type ServiceDirectory } from '../../src/services/dns.js';
import { DNS_TCP_LIMITS, type DnsTcpLimits } from '../../src/services/dnstcp.js';
import type { SourceLimits } from '../../src/services/dnslimit.js';
import type { ClusterService } from '../../src/services/service.js';
import { silentLogger } from '../../src/log.js';

const svcOf = (name: string, n: number) => ({ name, namespace: 'shop', vip: '100.64.9.9', global: true, ports: Array.from({ length: n }, (_, i) => ({ name: `p${i}`, port: 1000 + i, protocol: 'TCP' })) }) as unknown as ClusterService;
// 12 ports: over 512 bytes; 600: ~52 KB (fits a TCP answer); 1500: over 65 535 bytes
const services = new Map([['api', svcOf('api', 12)], ['big', svcOf('big', 600)], ['huge', svcOf('huge', 1500)]]);
const dir: ServiceDirectory = { lookup: (ns, n) => (ns === 'shop' ? services.get(n) : undefined) };
const name = (svc: string) => `${svc}.shop.svc.cluster.local`;
const query = (id: number, svc = 'api', type: packet.RecordType = 'SRV') => packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type, name: name(svc) }] });
const frame = (m: Buffer) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]);
const tc = (m: Buffer) => (m[2]! & 0x02) !== 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let server: DnsServer | undefined;
const sockets: net.Socket[] = [];
afterEach(() => {
  server?.close();
  server = undefined;
  for (const s of sockets.splice(0)) s.destroy();
});

async function start(tcpLimits: Partial<DnsTcpLimits> = {}, limits?: SourceLimits): Promise<number> {
  server = new DnsServer((q) => answer(dir, q), silentLogger, { tcpLimits: { ...DNS_TCP_LIMITS, ...tcpLimits }, ...(limits ? { limits } : {}) });
  await server.listen('127.0.0.1', 0);
  return server.port!;
}

/** A TCP client: its answers as they arrive, cut at their length prefix; `closed` resolves on close. */
function connect(port: number, localAddress = '127.0.0.1') {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress });
  sockets.push(sock);
  sock.on('error', () => undefined);
  const answers: Buffer[] = [];
  let buf = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      answers.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
  });
  const connected = new Promise<void>((r) => sock.once('connect', () => r()));
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  return { sock, answers, connected, closed };
}

/** Resolves once `cond()` holds; rejects after `ms` (a bound on the wait, not a timing assertion). */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(10)) if (Date.now() > end) throw new Error('condition not reached');
}

function udpAsk(port: number, bytes: Buffer): Promise<Buffer> {
  const c = createSocket('udp4');
  return new Promise((resolve) => {
    c.once('message', (m) => (c.close(), resolve(m)));
    c.send(bytes, port, '127.0.0.1');
  });
}

describe('DNS over TCP', () => {
  it('regression: an answer truncated over UDP (TC=1) comes whole over TCP on the same port', async () => {
    const port = await start();
    const udp = await udpAsk(port, query(7));
    expect(tc(udp)).toBe(true);
    const c = connect(port);
    c.sock.write(frame(query(7)));
    await until(() => c.answers.length === 1);
    const m = c.answers[0]!;
    expect(tc(m)).toBe(false);
    const d = packet.decode(m);
    expect(d.id).toBe(7);
    expect(d.answers!.map((a) => (a as packet.SrvAnswer).data.port)).toEqual(services.get('api')!.ports.map((p) => p.port));
    expect(d.additionals!.map((a) => a.type)).toEqual(['A']);
    // ~52 KB: whole (no 1232-byte EDNS bound over TCP); over 65 535: TC=1 with the records that fit
    c.sock.write(frame(query(8, 'big')));
    c.sock.write(frame(query(9, 'huge')));
    await until(() => c.answers.length === 3);
    const [big, huge] = [c.answers[1]!, c.answers[2]!];
    expect([big.length > 40_000, tc(big), packet.decode(big).answers!.length]).toEqual([true, false, 600]);
    expect(tc(huge)).toBe(true);
    expect(huge.length).toBeLessThanOrEqual(65_535);
    expect(packet.decode(huge).answers!.length).toBeGreaterThan(600);
    expect(server!.counters.tcp).toMatchObject({ queries: 3, accepted: 1, open: 1 });
    expect(server!.counters.truncated).toBe(2); // the UDP answer and the one over 65 535
  });

  it('answers pipelined queries, each with its id, written in one segment or split anywhere', async () => {
    const port = await start();
    const c = connect(port);
    const all = Buffer.concat(Array.from({ length: 50 }, (_, i) => frame(query(100 + i, i % 2 ? 'api' : 'big', i % 3 ? 'SRV' : 'A'))));
    c.sock.write(all.subarray(0, 1)); // a length prefix cut in two
    await sleep(20);
    c.sock.write(all.subarray(1, 777));
    await sleep(20);
    c.sock.write(all.subarray(777));
    await until(() => c.answers.length === 50);
    expect(c.answers.map((m) => packet.decode(m).id!).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => 100 + i));
    // a FIN after the last query: every answer is still sent, then the server closes
    const d = connect(port);
    d.sock.end(Buffer.concat([frame(query(1)), frame(query(2))]));
    await d.closed;
    expect(d.answers.map((m) => packet.decode(m).id)).toEqual([1, 2]);
  });

  it('a client that never reads holds at most maxPending answers, is not read meanwhile, and is closed when idle', async () => {
    const port = await start({ maxPending: 4, idleMs: 400 }, { ratePerS: 1e6, burst: 1e6, maxSources: 16 });
    const c = connect(port);
    await c.connected;
    c.sock.pause(); // never reads: the kernel's buffers fill, then ours must not
    const many = Buffer.concat(Array.from({ length: 2000 }, (_, i) => frame(query(i, 'big')))); // 2000 x 52 KB asked for
    c.sock.write(many);
    const conns = () => [...(server as unknown as { tcp: { conns: Set<{ pending: number; buf: Buffer; sock: net.Socket }> } }).tcp.conns];
    let maxPending = 0;
    let maxQueued = 0;
    let maxUnread = 0; // input read (or in the socket's buffer) and not taken as queries
    let atBound = 0;
    let atBoundReading = 0;
    await until(() => {
      for (const k of conns()) {
        maxPending = Math.max(maxPending, k.pending);
        maxQueued = Math.max(maxQueued, k.sock.writableLength);
        maxUnread = Math.max(maxUnread, k.buf.length + k.sock.readableLength);
        if (k.pending < 4) continue;
        atBound++;
        if (!k.sock.isPaused()) atBoundReading++;
      }
      return server!.counters.tcp.idle === 1;
    });
    expect(maxPending).toBeGreaterThan(0);
    expect(maxPending).toBeLessThanOrEqual(4);
    expect(maxQueued).toBeLessThanOrEqual(4 * 65_537);
    // not read while at the bound: with the pause removed, unread input grows to megabytes
    expect(atBound).toBeGreaterThan(0);
    expect(atBoundReading).toBe(0);
    expect(maxUnread).toBeLessThanOrEqual(128 * 1024);
    expect(server!.counters.tcp.queries).toBeLessThan(2000); // the rest were never read
    await until(() => server!.counters.tcp.open === 0); // its slot is given back on 'close', just after
  });

  it('slowloris: a client sending one byte at a time, never completing a query, is closed after idleMs', async () => {
    const port = await start({ idleMs: 1000 });
    const c = connect(port);
    const q = frame(query(5));
    let sent = 0;
    let open = true;
    void c.closed.then(() => (open = false));
    // one byte every 50 ms: a query takes ~2.4 s, past the 1 s idle bound; bytes alone do not count
    while (open && sent < q.length) {
      c.sock.write(q.subarray(sent, ++sent));
      await sleep(50);
    }
    expect(open).toBe(false);
    expect(sent).toBeLessThan(q.length);
    expect(c.answers).toEqual([]);
    expect(server!.counters.tcp.idle).toBe(1);
    // a client that completes queries (however slowly) is kept past idleMs: idle counts from its last query. Six,
    // 300 ms apart (1.8 s in all: a server counting from the accept closes ~800 ms before the check), leave 700 ms
    // of margin each: with 150 ms against 300 ms, a loaded host's stall of 150 ms let the server's idle timer and
    // our next write fall due in one turn, the close first
    const d = connect(port);
    for (let i = 0; i < 6; i++) {
      d.sock.write(frame(query(i)));
      await sleep(300);
    }
    await until(() => d.answers.length === 6);
    expect(d.sock.destroyed).toBe(false);
  });

  it('a connection flood from one source is bounded per source and does not keep another source out', async () => {
    const port = await start({ maxPerSource: 4, maxConnections: 8 });
    const flood = Array.from({ length: 40 }, () => connect(port, '127.0.0.1'));
    await until(() => server!.counters.tcp.accepted + server!.counters.tcp.refused === 40);
    expect(server!.counters.tcp).toMatchObject({ accepted: 4, refused: 36, open: 4 });
    // other sources fill the rest; the next one evicts the idlest connection instead of being refused
    const others = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'].map((a) => connect(port, a));
    await until(() => server!.counters.tcp.accepted === 8);
    for (const o of others) o.sock.write(frame(query(1))); // active: not the idlest
    await until(() => others.every((o) => o.answers.length === 1));
    const late = connect(port, '127.0.0.6');
    late.sock.write(frame(query(42, 'api', 'A')));
    await until(() => late.answers.length === 1);
    expect(packet.decode(late.answers[0]!).answers![0]).toMatchObject({ type: 'A', data: '100.64.9.9' });
    expect(server!.counters.tcp.evicted).toBe(1);
    expect(server!.counters.tcp.open).toBe(8);
    // the one evicted was the idlest: a flood connection (accepted first, never asked anything)
    await until(() => flood.filter((f) => f.sock.destroyed).length === 37);
    expect(others.every((o) => !o.sock.destroyed)).toBe(true);
    // the flood's closed connections gave their slots back: the 4 others and the late one remain
    for (const f of flood) f.sock.destroy();
    await until(() => server!.counters.tcp.open === 5);
  });

  it('bad length prefixes: 0 or over maxQueryBytes close the connection; a short garbage message is only malformed', async () => {
    const port = await start({ maxQueryBytes: 512 });
    for (const bad of [Buffer.from([0, 0]), Buffer.from([0xff, 0xff, 1, 2, 3]), Buffer.from([0x02, 0x01])]) {
      const c = connect(port);
      c.sock.write(bad);
      await c.closed;
      expect(c.answers).toEqual([]);
    }
    expect(server!.counters.tcp.badLength).toBe(3);
    const c = connect(port);
    c.sock.write(Buffer.concat([frame(Buffer.from([1, 2, 3, 4, 5])), frame(Buffer.alloc(40, 0xff)), frame(query(77, 'api', 'A'))]));
    await until(() => c.answers.length === 1);
    expect(packet.decode(c.answers[0]!).id).toBe(77);
    expect(server!.counters.malformed).toBe(2);
    expect(c.sock.destroyed).toBe(false);
  });

  it('one rate limiter for both transports: a source that spent its bucket over UDP is limited over TCP', async () => {
    const port = await start({}, { ratePerS: 0.001, burst: 5, maxSources: 16 });
    for (let i = 0; i < 5; i++) await udpAsk(port, query(i, 'api', 'A'));
    const c = connect(port);
    c.sock.write(Buffer.concat([frame(query(50, 'api', 'A')), frame(query(51, 'api', 'A'))]));
    await until(() => server!.counters.tcp.queries === 2);
    await sleep(50);
    expect(c.answers).toEqual([]);
    expect(server!.counters.limited).toBe(2);
  });

  it('regression: a TCP port in use (dnsmasq on the wildcard) leaves UDP answering, and says so', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const taken = (blocker.address() as net.AddressInfo).port;
    server = new DnsServer((q) => answer(dir, q), silentLogger);
    await server.listen('127.0.0.1', taken);
    blocker.close();
    expect(server.port).toBe(taken);
    expect(server.counters.listening).toMatchObject({ udp: true, tcp: false, tcpError: expect.stringMatching(/EADDRINUSE/) });
    expect(packet.decode(await udpAsk(taken, query(3, 'api', 'A'))).answers![0]).toMatchObject({ type: 'A', data: '100.64.9.9' });
    server.close();
    expect(server.counters.listening).toEqual({ udp: false, tcp: false });
  });

  it('port 0: TCP finding the port the kernel gave UDP taken rebinds both on another port, not TCP off', async () => {
    server = new DnsServer((q) => answer(dir, q), silentLogger);
    const tcp = (server as unknown as { tcp: { listen(a: string, p: number): Promise<void> } }).tcp;
    const real = tcp.listen.bind(tcp);
    const tried: number[] = [];
    tcp.listen = (a, p) => (tried.push(p), tried.length === 1 ? Promise.reject(Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' })) : real(a, p));
    await server.listen('127.0.0.1', 0);
    expect(tried.length).toBe(2);
    expect(server.port).toBe(tried[1]);
    expect(server.counters.listening).toEqual({ udp: true, tcp: true });
  });

  // the reviewer's scenario, scaled down: sources holding every slot keep querying (over quota, or answered) and
  // reconnect when evicted; an honest source connected meanwhile keeps its slot and gets its answer
  it.each([
    ['over quota (dropped queries are no activity)', { ratePerS: 0.001, burst: 1, maxSources: 64 }],
    ['answered (the source holding the most loses one)', { ratePerS: 1e6, burst: 1e6, maxSources: 64 }],
  ])('regression: eviction under churn spares a one-connection source: attackers %s', async (_, limits) => {
    const port = await start({ maxConnections: 8, maxPerSource: 2 }, limits);
    const addrs = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
    const attackers = addrs.flatMap((a) => [connect(port, a), connect(port, a)]);
    await until(() => server!.counters.tcp.accepted === 8);
    for (const a of attackers) a.sock.write(frame(query(1, 'api', 'A')));
    await until(() => server!.counters.tcp.queries === 8);
    const honest = connect(port, '127.0.0.6');
    await until(() => server!.counters.tcp.evicted === 1);
    await until(() => attackers.some((a) => a.sock.destroyed));
    const evicted = attackers.findIndex((a) => a.sock.destroyed);
    for (const a of attackers) if (!a.sock.destroyed) a.sock.write(Buffer.concat([1, 2, 3].map((i) => frame(query(i, 'api', 'A')))));
    await until(() => server!.counters.tcp.queries === 8 + 7 * 3);
    connect(port, addrs[Math.floor(evicted / 2)]); // the evicted one reconnects
    await until(() => server!.counters.tcp.evicted === 2);
    honest.sock.write(frame(query(99, 'api', 'A')));
    await until(() => honest.answers.length === 1 || honest.sock.destroyed);
    expect(honest.answers.map((m) => packet.decode(m).id)).toEqual([99]);
    expect(server!.counters.tcp.open).toBe(8);
  });
});
