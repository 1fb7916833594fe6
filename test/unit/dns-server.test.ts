// The DNS server on real loopback sockets (src/services/dns.ts, dnssize.ts): answer size without and
// with EDNS (RFC 1035 §4.2.1, RFC 6891), and random bytes never crash it. The answers are read from
// their raw header (TC bit, counts) as well as through dns-packet.
import { afterEach, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import * as packet from 'dns-packet';
import { answer, DnsServer, type ServiceDirectory } from '../../src/services/dns.js';
import type { ClusterService } from '../../src/services/service.js';
import { prng } from '../helpers/prng.js';

const quiet = { warn() {}, info() {}, error() {}, debug() {} } as never;
const ports = Array.from({ length: 12 }, (_, i) => ({ name: `p${i}`, port: 8000 + i, protocol: 'TCP' }));
const svc = { name: 'api', namespace: 'shop', vip: '100.64.9.9', global: true, ports } as unknown as ClusterService;
const dir: ServiceDirectory = { lookup: (ns, n) => (ns === 'shop' && n === 'api' ? svc : undefined) };
const SRV = 'api.shop.svc.cluster.local';

let server: DnsServer | undefined;
let client: Socket | undefined;
afterEach(() => {
  server?.close();
  client?.close();
  server = client = undefined;
});

async function start(): Promise<number> {
  server = new DnsServer((q) => answer(dir, q), quiet);
  for (let port = 25353; ; port++) {
    try {
      await server.listen('127.0.0.1', port);
      return port;
    } catch {
      if (port > 25400) throw new Error('no free port');
    }
  }
}

/**
 * Sends a query's bytes; resolves with the first answer with its id, or null after 5 s (no test waits for a missing
 * answer: a deadline only; 1 s ran out on a loaded host behind the random-input test's 300 datagrams).
 */
function ask(port: number, bytes: Buffer): Promise<Buffer | null> {
  client ??= createSocket('udp4');
  const c = client;
  return new Promise((resolve) => {
    const t = setTimeout(() => (c.off('message', on), resolve(null)), 5000);
    const on = (m: Buffer) => {
      if (m.length < 2 || m.readUInt16BE(0) !== bytes.readUInt16BE(0)) return;
      clearTimeout(t);
      c.off('message', on);
      resolve(m);
    };
    c.on('message', on);
    c.send(bytes, port, '127.0.0.1');
  });
}

const query = (extra: Partial<packet.Packet> = {}) => packet.encode({ type: 'query', id: 9, flags: packet.RECURSION_DESIRED, questions: [{ type: 'SRV', name: SRV }], ...extra });
const opt = (size: number, version = 0) => ({ type: 'OPT', name: '.', udpPayloadSize: size, ednsVersion: version }) as packet.Answer;
const tc = (m: Buffer) => (m[2]! & 0x02) !== 0;
const ancount = (m: Buffer) => m.readUInt16BE(6);

describe('DNS answer size', () => {
  it('without EDNS: at most 512 bytes, TC=1 and only whole answer records when the answer does not fit', async () => {
    const port = await start();
    const m = (await ask(port, query()))!;
    expect(m.length).toBeLessThanOrEqual(512); // main: 950 bytes, TC=0, 12 SRV + 1 A
    expect(tc(m)).toBe(true);
    const d = packet.decode(m);
    expect(d.answers!.length).toBe(ancount(m));
    expect(ancount(m)).toBeGreaterThan(0);
    expect(ancount(m)).toBeLessThan(12);
    expect(d.answers!.map((a) => (a as packet.SrvAnswer).data.port)).toEqual(ports.slice(0, ancount(m)).map((p) => p.port)); // the first ones, in order
    expect(d.additionals).toEqual([]);
    expect(server!.counters.truncated).toBe(1);
  });

  it('with EDNS: the advertised size (at least 512, at most 1232), an OPT record back', async () => {
    const port = await start();
    const big = (await ask(port, query({ additionals: [opt(4096)] })))!;
    expect(tc(big)).toBe(false);
    expect(big.length).toBeLessThanOrEqual(1232);
    const d = packet.decode(big);
    expect(d.answers!.length).toBe(12);
    expect(d.additionals!.map((a) => a.type).sort()).toEqual(['A', 'OPT']);
    expect((d.additionals!.find((a) => a.type === 'OPT') as packet.OptAnswer).udpPayloadSize).toBe(1232);
    const tiny = (await ask(port, query({ additionals: [opt(100)] })))!; // below 512 counts as 512
    expect(tiny.length).toBeLessThanOrEqual(512);
    expect(tiny.length).toBeGreaterThan(400);
    expect(tc(tiny)).toBe(true);
    expect(packet.decode(tiny).additionals!.map((a) => a.type)).toEqual(['OPT']);
  });

  it('answers that fit are unchanged; an unknown EDNS version gets BADVERS, two OPT records FORMERR', async () => {
    const port = await start();
    const a = packet.decode((await ask(port, query({ questions: [{ type: 'A', name: SRV }] })))!);
    expect(a.flags! & 0x020f).toBe(0);
    expect(a.answers).toEqual([expect.objectContaining({ type: 'A', data: '100.64.9.9' })]);
    const bad = packet.decode((await ask(port, query({ additionals: [opt(1232, 1)] })))!);
    expect(bad.flags! & 0xf).toBe(0); // BADVERS = 16: 0 in the header's 4 bits ...
    expect((bad.additionals![0] as packet.OptAnswer).extendedRcode).toBe(1); // ... 1 in OPT's upper 8
    expect(bad.answers).toEqual([]);
    const two = packet.decode((await ask(port, query({ additionals: [opt(1232), opt(1232)] })))!);
    expect(two.flags! & 0xf).toBe(1); // FORMERR
    expect(two.questions).toEqual([]);
  });

  it('copies the query DO bit into the answer OPT record (RFC 3225 §3), also on BADVERS', async () => {
    const port = await start();
    const flagsOf = (m: Buffer) => (packet.decode(m).additionals!.find((a) => a.type === 'OPT') as packet.OptAnswer).flags ?? 0;
    const withDo = { ...opt(1232), flags: packet.DNSSEC_OK } as packet.Answer;
    expect(flagsOf((await ask(port, query({ additionals: [withDo] })))!) & packet.DNSSEC_OK).toBe(packet.DNSSEC_OK); // main: 0
    expect(flagsOf((await ask(port, query({ additionals: [opt(1232)] })))!) & packet.DNSSEC_OK).toBe(0);
    const badvers = { ...opt(1232, 1), flags: packet.DNSSEC_OK } as packet.Answer;
    expect(flagsOf((await ask(port, query({ additionals: [badvers] })))!) & packet.DNSSEC_OK).toBe(packet.DNSSEC_OK);
  });
});

describe('DNS server under random input', () => {
  it('never throws, counts what it drops, and still answers afterwards (seeded)', async () => {
    const port = await start();
    const rnd = prng(0x5eed);
    const valid = query();
    for (let i = 0; i < 300; i++) {
      // half: a valid query with bytes flipped or cut; half: random bytes (compression loops, huge counts)
      const b = i % 2 === 0 ? Buffer.from(valid) : Buffer.alloc(1 + Math.floor(rnd() * 200));
      if (i % 2 === 1) for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      else for (let k = 0; k < 4; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      client ??= createSocket('udp4');
      client.send(i % 7 === 0 ? b.subarray(0, Math.floor(rnd() * b.length)) : b, port, '127.0.0.1');
    }
    const again = packet.decode((await ask(port, query({ id: 0xbeef, questions: [{ type: 'A', name: SRV }] })))!);
    expect([again.id, (again.answers![0] as packet.StringAnswer | undefined)?.data]).toEqual([0xbeef, '100.64.9.9']);
    expect(server!.counters.queries).toBeGreaterThanOrEqual(301);
    expect(server!.counters.malformed).toBeGreaterThan(0);
  });
});
