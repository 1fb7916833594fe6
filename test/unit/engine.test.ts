// Two complete engines in one process, talking real UDP over loopback. No TUN:
// the test exercises handshakes, keypair installation, keepalives, timers and
// the native transport path end to end.
import { afterEach, describe, expect, it } from 'vitest';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { parsePrefix } from '../../src/net/ip.js';

const devices: WireGuardDevice[] = [];
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
});

function makePair(psk?: Buffer) {
  const a = new WireGuardDevice({ createTun: false, tickMs: 50 });
  const b = new WireGuardDevice({ createTun: false, tickMs: 50 });
  devices.push(a, b);
  a.setPrivateKey(generatePrivateKey());
  b.setPrivateKey(generatePrivateKey());
  const pb = a.addPeer(b.identity!.publicKey);
  const pa = b.addPeer(a.identity!.publicKey);
  if (psk) {
    pa.setPresharedKey(psk);
    pb.setPresharedKey(psk);
  }
  a.setPeerEndpoint(pb, { host: '127.0.0.1', port: b.listenPort });
  b.setPeerEndpoint(pa, { host: '127.0.0.1', port: a.listenPort });
  a.setPeerAllowedIPs(pb, [parsePrefix('100.64.2.0/24')]);
  b.setPeerAllowedIPs(pa, [parsePrefix('100.64.1.0/24')]);
  return { a, b, pa, pb };
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('two in-process engines over loopback', () => {
  it('complete a handshake in both roles and confirm it with a keepalive', async () => {
    const { a, b, pa, pb } = makePair(Buffer.alloc(32, 5));
    a.initiate(pb);
    await until(() => a.stats.handshakesCompleted === 1 && b.stats.handshakesCompleted === 1);
    expect(pb.lastHandshakeEpochMs).toBeGreaterThan(0);
    expect(pa.lastHandshakeEpochMs).toBeGreaterThan(0);
    const sa = a.peerStats().get(pb.id)!;
    const sb = b.peerStats().get(pa.id)!;
    expect(sa.hasCurrent && sa.currentInitiator).toBe(true);
    // the responder promoted its next keypair on the initiator's keepalive
    expect(sb.hasCurrent && !sb.hasNext).toBe(true);
    expect(b.native.counters().rx_keepalives).toBe(1);
    expect(sa.txBytes).toBe(32);
    expect(sb.rxBytes).toBe(32);
    // b answered less than RekeyTimeout ago: a new initiation is rate-limited
    b.initiate(pa);
    expect(b.stats.handshakesInitiated).toBe(0);
    // once that has passed, b initiates (the other role)
    pa.lastSentHandshakeMs = -Infinity;
    b.initiate(pa);
    await until(() => a.stats.handshakesCompleted === 2);
    expect(b.peerStats().get(pa.id)!.currentInitiator).toBe(true);
  });

  it('drops garbage, bad mac1 and unknown receivers, counting each', async () => {
    const { a, b, pb } = makePair();
    const { createSocket } = await import('node:dgram');
    const s = createSocket('udp4');
    const send = (buf: Buffer) => new Promise<void>((r) => s.send(buf, b.listenPort, '127.0.0.1', () => r()));
    await send(Buffer.from('not wireguard at all'));
    await send(Buffer.alloc(148, 0).fill(1, 0, 1)); // initiation with zero mac1
    const transport = Buffer.alloc(64);
    transport[0] = 4;
    await send(transport); // unknown receiver index
    await send(Buffer.alloc(3)); // truncated
    await until(() => {
      const c = b.native.counters();
      return c.drop_not_wireguard === 2 && c.drop_bad_mac1 === 1 && c.drop_unknown_receiver === 1;
    });
    s.close();
    // still serving
    a.initiate(pb);
    await until(() => a.stats.handshakesCompleted === 1);
  });

  it('mismatched preshared keys never complete', async () => {
    const { a, pb } = makePair();
    pb.setPresharedKey(Buffer.alloc(32, 1));
    a.initiate(pb);
    // waited for, not slept on: the round trip crosses two RX threads and two callbacks into JavaScript
    await until(() => a.stats.handshakesRejected === 1);
    expect(a.stats.handshakesCompleted).toBe(0);
    expect(a.stats.handshakesRejected).toBe(1);
  });
});
