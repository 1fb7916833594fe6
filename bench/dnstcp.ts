/**
 * DNS server throughput, UDP and TCP (src/services/dns.ts, dnstcp.ts), against an anchor build's DnsServer in the
 * same run: `node dist/bench/dnstcp.js [--anchor /path/to/other/dist] [--rounds N] [--queries N]`.
 *
 * Each round, this build and the anchor (which goes first alternates): N A queries over UDP from one loopback client with 64 in
 * flight, then (this build only; the anchor may have no TCP side) the same N over one TCP connection, pipelined
 * 64 deep. Server and client share the process (the same for both builds, so the ratio holds). Prints the
 * median queries/s of each and the ratios; the per-source bucket is opened wide (a bench, not a flood).
 */
import { createSocket } from 'node:dgram';
import net from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as packet from 'dns-packet';
import * as ours from '../src/services/dns.js';

type DnsModule = typeof ours;
const { values } = parseArgs({ options: { anchor: { type: 'string' }, rounds: { type: 'string', default: '5' }, queries: { type: 'string', default: '20000' } } });
const rounds = Number(values.rounds);
const N = Number(values.queries);
const DEPTH = 64;
const quiet = { warn() {}, info() {}, error() {}, debug() {} } as never;
const svc = { name: 'api', namespace: 'shop', vip: '100.64.9.9', global: true, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] };
const dir = { lookup: (ns: string, n: string) => (ns === 'shop' && n === 'api' ? (svc as never) : undefined) };
const wide = { ratePerS: 1e9, burst: 1e9, maxSources: 1024 };
const q = (id: number) => packet.encode({ type: 'query', id, questions: [{ type: 'A', name: 'api.shop.svc.cluster.local' }] });

async function serve(mod: DnsModule): Promise<{ port: number; close(): void }> {
  const s = new mod.DnsServer((x) => mod.answer(dir, x), quiet, { limits: wide });
  for (let port = 35353; ; port++) {
    try {
      await s.listen('127.0.0.1', port);
      return { port, close: () => s.close() };
    } catch {
      if (port > 35500) throw new Error('no free port');
    }
  }
}

/** N queries over UDP, DEPTH in flight; queries/s. */
function udp(port: number): Promise<number> {
  const c = createSocket('udp4');
  let sent = 0;
  let got = 0;
  const t0 = performance.now();
  return new Promise((done) => {
    c.on('message', () => {
      if (++got === N) return void (c.close(), done(N / ((performance.now() - t0) / 1000)));
      if (sent < N) c.send(q(sent++ & 0xffff), port, '127.0.0.1');
    });
    while (sent < DEPTH) c.send(q(sent++ & 0xffff), port, '127.0.0.1');
  });
}

/** N queries over one TCP connection, DEPTH pipelined; queries/s. */
function tcp(port: number): Promise<number> {
  const s = net.connect(port, '127.0.0.1');
  const frame = (m: Buffer) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]);
  let sent = 0;
  let got = 0;
  let buf: Buffer = Buffer.alloc(0);
  const t0 = performance.now();
  return new Promise((done) => {
    s.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      let more = 0;
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        got++;
        more++;
      }
      if (got >= N) return void (s.destroy(), done(N / ((performance.now() - t0) / 1000)));
      const batch: Buffer[] = [];
      for (; more > 0 && sent < N; more--) batch.push(frame(q(sent++ & 0xffff)));
      if (batch.length) s.write(Buffer.concat(batch));
    });
    s.on('connect', () => {
      const first: Buffer[] = [];
      while (sent < DEPTH) first.push(frame(q(sent++ & 0xffff)));
      s.write(Buffer.concat(first));
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const anchor = values.anchor ? ((await import(resolve(values.anchor, 'src', 'services', 'dns.js'))) as DnsModule) : undefined;
const r = { udp: [] as number[], tcp: [] as number[], anchorUdp: [] as number[] };
for (let i = 0; i < rounds; i++) {
  const both = [[ours, 'udp'], ...(anchor ? [[anchor, 'anchorUdp']] : [])] as Array<[DnsModule, 'udp' | 'anchorUdp']>;
  // which goes first alternates: neither build always runs on a warmer (or more loaded) process
  for (const [mod, key] of i % 2 ? both.reverse() : both) {
    const s = await serve(mod);
    r[key].push(await udp(s.port));
    if (mod === ours) r.tcp.push(await tcp(s.port));
    s.close();
  }
}
const f = (x: number) => `${Math.round(x)} q/s`;
console.log(`per round: UDP ${r.udp.map(Math.round).join(' ')}; anchor UDP ${r.anchorUdp.map(Math.round).join(' ')}; TCP ${r.tcp.map(Math.round).join(' ')}`);
console.log(`queries ${N} x ${rounds} rounds, depth ${DEPTH}`);
console.log(`this build: UDP ${f(median(r.udp))}, TCP pipelined ${f(median(r.tcp))} (TCP/UDP x${(median(r.tcp) / median(r.udp)).toFixed(2)})`);
if (anchor) console.log(`anchor UDP ${f(median(r.anchorUdp))}; this build's UDP / anchor's x${(median(r.udp) / median(r.anchorUdp)).toFixed(2)}`);
