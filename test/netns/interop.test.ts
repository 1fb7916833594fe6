// wiremesh-wg against the real wireguard-go, each in its own network namespace,
// configured with the stock wg(8) tool over UAPI, as the kernel's netns.sh does.
import { createSocket } from 'node:dgram';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canRunNetns,
  cleanup,
  hasCommand,
  link,
  Netns,
  startWireGuard,
  stats,
  uniqueName,
  waitFor,
  wgConfigure,
  wgKeypair,
  ROOT,
} from '../helpers/netns.js';
import { readPcapUdpPayloads } from '../helpers/pcap.js';

const TCPBLAST = join(ROOT, 'test', 'helpers', 'tcpblast.mjs');
const enabled = canRunNetns() && hasCommand('wireguard-go') && hasCommand('wg');

interface Side {
  ns: Netns;
  ifname: string;
  key: string;
  pub: string;
  port: number;
  underlay4: string;
  underlay6: string;
  inner4: string;
  inner6: string;
}

function configure(self: Side, peer: Side, endpointFamily: 4 | 6): void {
  wgConfigure(self.ns, self.ifname, {
    privateKey: self.key,
    port: self.port,
    peer: peer.pub,
    endpoint: endpointFamily === 4 ? `${peer.underlay4}:${peer.port}` : `[${peer.underlay6}]:${peer.port}`,
    allowedIPs: [`${peer.inner4}/32`, `${peer.inner6}/128`],
    addresses: [`${self.inner4}/24`, `${self.inner6}/64`],
  });
}

function ping(ns: Netns, addr: string, count = 3): boolean {
  return ns.try('ping', '-c', String(count), '-i', '0.2', '-W', '2', addr).ok;
}

/** Sends `bytes` from src to dst over TCP and checks both ends saw the same data. */
async function tcpBlast(src: Netns, dst: Netns, addr: string, bytes: number): Promise<boolean> {
  const server = dst.spawn(process.execPath, [TCPBLAST, 'server', addr, '5300']);
  let out = '';
  server.stdout!.on('data', (d) => (out += d));
  await new Promise<void>((resolve) => server.stderr!.once('data', () => resolve()));
  const sent = src.run(process.execPath, TCPBLAST, 'client', addr, '5300', String(bytes)).trim();
  await new Promise((r) => server.once('exit', r));
  return sent === out.trim() && sent.endsWith(` ${bytes}`);
}

function wgShow(ns: Netns, ifname: string, what: string): string {
  return ns.run('wg', 'show', ifname, what);
}

function makeTopology(initiator: 'wiremesh' | 'wireguard-go', endpointFamily: 4 | 6) {
  const nsA = new Netns('wmA');
  const nsB = new Netns('wmB');
  const vA = uniqueName('va');
  const vB = uniqueName('vb');
  link(nsA, vA, ['198.18.1.1/24', 'fdaa:18::1/64'], nsB, vB, ['198.18.1.2/24', 'fdaa:18::2/64']);
  const ka = wgKeypair(nsA);
  const kb = wgKeypair(nsB);
  const a: Side = { ns: nsA, ifname: uniqueName('wm'), key: ka.privateKey, pub: ka.publicKey, port: 51820, underlay4: '198.18.1.1', underlay6: 'fdaa:18::1', inner4: '100.64.9.1', inner6: 'fd64::1' };
  const b: Side = { ns: nsB, ifname: uniqueName('wg'), key: kb.privateKey, pub: kb.publicKey, port: 51821, underlay4: '198.18.1.2', underlay6: 'fdaa:18::2', inner4: '100.64.9.2', inner6: 'fd64::2' };
  startWireGuard(nsA, 'wiremesh', a.ifname);
  startWireGuard(nsB, 'wireguard-go', b.ifname);
  configure(a, b, endpointFamily);
  configure(b, a, endpointFamily);
  const [from, to] = initiator === 'wiremesh' ? [a, b] : [b, a];
  return { a, b, from, to, vA, vB };
}

describe.skipIf(!enabled)('wiremesh-wg ↔ wireguard-go in network namespaces', () => {
  afterAll(cleanup);

  for (const initiator of ['wiremesh', 'wireguard-go'] as const) {
    for (const family of [4, 6] as const) {
      describe(`${initiator} initiates, IPv${family} underlay`, () => {
        let t: ReturnType<typeof makeTopology>;
        beforeAll(() => {
          t = makeTopology(initiator, family);
        });
        afterAll(cleanup);

        it('pings over IPv4 and IPv6 inside the tunnel', () => {
          expect(ping(t.from.ns, t.to.inner4)).toBe(true);
          expect(ping(t.to.ns, t.from.inner4)).toBe(true);
          expect(ping(t.from.ns, t.to.inner6)).toBe(true);
        });

        it('wg show reports the handshake, endpoint and transfer counters on our side', () => {
          const hs = Number(wgShow(t.a.ns, t.a.ifname, 'latest-handshakes').trim().split(/\s+/)[1]);
          expect(Math.abs(Date.now() / 1000 - hs)).toBeLessThan(30);
          const [, rx, tx] = wgShow(t.a.ns, t.a.ifname, 'transfer').trim().split(/\s+/).map(Number);
          expect(rx).toBeGreaterThan(0);
          expect(tx).toBeGreaterThan(0);
          const ep = wgShow(t.a.ns, t.a.ifname, 'endpoints').trim().split(/\s+/)[1];
          expect(ep).toBe(family === 4 ? `${t.b.underlay4}:${t.b.port}` : `[${t.b.underlay6}]:${t.b.port}`);
        });

        it('carries 32 MB TCP transfers both ways intact, over IPv4 and IPv6 inside the tunnel', async () => {
          for (const [src, dst] of [[t.from, t.to], [t.to, t.from]] as const) {
            expect(await tcpBlast(src.ns, dst.ns, dst.inner4, 32 << 20)).toBe(true);
            expect(await tcpBlast(src.ns, dst.ns, dst.inner6, 32 << 20)).toBe(true);
          }
        });
      });
    }
  }

  describe('robustness (wiremesh side under attack)', () => {
    let t: ReturnType<typeof makeTopology>;
    beforeAll(() => {
      t = makeTopology('wiremesh', 4);
      expect(ping(t.a.ns, t.b.inner4)).toBe(true);
    });
    afterAll(cleanup);

    it('drops and counts malformed, truncated, oversized and replayed packets, and keeps serving', async () => {
      // capture real transport messages B sends to A, to replay them later
      const pcap = join(tmpdir(), `${t.a.ifname}.pcap`);
      const dump = t.a.ns.spawn('tcpdump', ['-i', t.vA, '-c', '2', '-U', '-w', pcap, 'udp', 'dst', 'port', String(t.a.port), 'and', 'greater', '100']);
      await new Promise<void>((resolve) => dump.stderr!.on('data', (d) => String(d).includes('listening') && resolve()));
      expect(ping(t.b.ns, t.a.inner4, 3)).toBe(true);
      await new Promise((r) => dump.once('exit', r));
      const captured = readPcapUdpPayloads(readFileSync(pcap)).filter((p) => p[0] === 4 && p.length > 32);
      expect(captured.length, `udp payloads captured: ${readPcapUdpPayloads(readFileSync(pcap)).length}, pcap bytes ${readFileSync(pcap).length}, ifname ${t.vA}`).toBeGreaterThan(0);

      rmSync(pcap, { force: true });
      const before = await stats(t.a.ifname);
      const script = `
        const d = require('dgram').createSocket('udp4');
        const msgs = JSON.parse(process.argv[1]).map((h) => Buffer.from(h, 'hex'));
        let i = 0;
        const next = () => i < msgs.length ? d.send(msgs[i++], ${t.a.port}, '${t.a.underlay4}', next) : d.close();
        next();`;
      const junk = [
        Buffer.from('hello, not wireguard'), // not WireGuard
        Buffer.from([4, 0, 0]), // truncated
        Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(60000, 0xee)]), // oversized transport, bad index
        Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(144, 1)]), // initiation with a bad mac1
        Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(150, 1)]), // wrong size for its type
        Buffer.from([9, 0, 0, 0, 1, 2, 3, 4]), // unknown type
        (() => { const c = Buffer.from(captured[0]!); c[40]! ^= 1; return c; })(), // tampered ciphertext
        captured[0]!, // replayed
      ];
      t.b.ns.run(process.execPath, '-e', script, JSON.stringify(junk.map((b) => b.toString('hex'))));
      await waitFor(async () => {
        const s = await stats(t.a.ifname);
        return s.drop_replayed! > before.drop_replayed! && s.drop_decrypt_failed! > before.drop_decrypt_failed!;
      }, 5000, 'replay and decrypt drops');
      const after = await stats(t.a.ifname);
      expect(after.drop_not_wireguard! - before.drop_not_wireguard!).toBe(4);
      expect(after.drop_bad_mac1! - before.drop_bad_mac1!).toBe(1);
      expect(after.drop_unknown_receiver! - before.drop_unknown_receiver!).toBe(1);
      expect(after.drop_replayed! - before.drop_replayed!).toBe(1);
      expect(after.drop_decrypt_failed! - before.drop_decrypt_failed!).toBe(1);
      // still serving
      expect(ping(t.a.ns, t.b.inner4)).toBe(true);
    });

    it('follows a roaming peer to its new port', () => {
      t.b.ns.run('wg', 'set', t.b.ifname, 'listen-port', '51999');
      expect(ping(t.b.ns, t.a.inner4)).toBe(true);
      expect(wgShow(t.a.ns, t.a.ifname, 'endpoints').trim().split(/\s+/)[1]).toBe(`${t.b.underlay4}:51999`);
      expect(ping(t.a.ns, t.b.inner4)).toBe(true);
    });

    it('roams itself: wireguard-go follows our new address', () => {
      // (wireguard-go 0.0.20220316 pins its own source address, so we are the side that moves;
      // deleting a primary address also deletes its secondaries: delete first)
      t.a.ns.ip('addr', 'del', '198.18.1.1/24', 'dev', t.vA);
      t.a.ns.ip('addr', 'add', '198.18.1.4/24', 'dev', t.vA);
      expect(ping(t.a.ns, t.b.inner4)).toBe(true);
      expect(wgShow(t.b.ns, t.b.ifname, 'endpoints').trim().split(/\s+/)[1]).toBe(`198.18.1.4:${t.a.port}`);
    });

    it('exits when its interface is deleted, removing its UAPI socket', async () => {
      t.a.ns.ip('link', 'del', t.a.ifname);
      await waitFor(() => !t.a.ns.try('ls', `/var/run/wireguard/${t.a.ifname}.sock`).ok, 5000, 'socket removal');
      expect(t.a.ns.try('pgrep', '-f', `wiremesh-wg.js ${t.a.ifname}`).ok).toBe(false);
    });
  });
});
