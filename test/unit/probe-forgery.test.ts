// A peer cannot make itself look nearer than it is: the native device (the
// real one, over loopback) probes a tagged mesh peer played here by the test
// with the Noise code of src/wireguard, which answers as a compromised node
// would: with the probe's timestamp moved forward (a shorter RTT than the
// path's). Before the probes carried a tag (device_mesh.cc probe_tag), the
// device took such an answer, and the windowed minimum of the RTT kept it for
// 10 s: "nearest" would have sent every client's new flows to that cluster.
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePrefix } from '../../src/net/ip.js';
import { CookieGenerator } from '../../src/wireguard/cookie.js';
import { aeadOpen, aeadSeal, generatePrivateKey } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { consumeInitiation, createResponse, deriveSession, Handshake, MSG_TRANSPORT, StaticIdentity, type SessionKeys } from '../../src/wireguard/noise.js';

const PROBE_REQUEST = 0x20;
const PROBE_REPLY = 0x21;

const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** The hostile peer's side of one session: the next transport message's plaintext, and sealing its own. */
function transport(sock: Socket, keys: SessionKeys, port: number) {
  let sendCounter = 0n;
  return {
    async next(): Promise<Buffer> {
      for (;;) {
        const [msg] = (await once(sock, 'message')) as [Buffer];
        if (msg.readUInt32LE(0) !== MSG_TRANSPORT) continue;
        const plain = aeadOpen(keys.recv, msg.readBigUInt64LE(8), msg.subarray(16), Buffer.alloc(0));
        if (plain && plain.length > 0) return plain; // keepalives are empty
      }
    },
    send(plain: Buffer): void {
      const head = Buffer.alloc(16);
      head.writeUInt32LE(MSG_TRANSPORT, 0);
      head.writeUInt32LE(keys.remoteIndex, 4);
      head.writeBigUInt64LE(sendCounter, 8);
      sock.send(Buffer.concat([head, aeadSeal(keys.send, sendCounter++, plain, Buffer.alloc(0))]), port, '127.0.0.1');
    },
  };
}

describe('liveness probes: a peer echoes, it cannot make up an answer', () => {
  it('an answer with a moved timestamp is dropped and counted; the real one is measured', async () => {
    const dev = new WireGuardDevice({ createTun: false, tickMs: 50 });
    closers.push(() => dev.close());
    dev.native.enablePolicy();
    dev.setPrivateKey(generatePrivateKey());
    const hostile = new StaticIdentity(generatePrivateKey());
    const sock = createSocket('udp4');
    closers.push(() => sock.close());
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    const peer = dev.addPeer(hostile.publicKey);
    dev.setPeerEndpoint(peer, { host: '127.0.0.1', port: sock.address().port });
    dev.setPeerAllowedIPs(peer, [parsePrefix('100.64.2.0/24')]);
    dev.native.setPeerIdentity(peer.id, true, 2, [1]);

    // the handshake, the device initiating
    const seesDevice = new Handshake(hostile, dev.identity!.publicKey, Buffer.alloc(32));
    const initiation = once(sock, 'message');
    dev.initiate(peer);
    const [init] = (await initiation) as [Buffer];
    consumeInitiation(hostile, init, (k) => (k.equals(dev.identity!.publicKey) ? seesDevice : undefined), Date.now());
    sock.send(createResponse(seesDevice, 0x2222, new CookieGenerator(dev.identity!.publicKey, Date.now)), dev.listenPort, '127.0.0.1');
    const t = transport(sock, deriveSession(seesDevice), dev.listenPort);

    const stats = () => dev.peerStats().get(peer.id)!;
    const forged = () => dev.native.counters().drop_probe_forged ?? 0;
    const until = async (cond: () => boolean) => {
      for (const end = Date.now() + 5000; !cond(); await new Promise((r) => setTimeout(r, 10))) if (Date.now() > end) throw new Error('timed out');
    };

    // 1. the forgery: the probe answered 50 ms later as if it had been sent 1 µs ago (the device's clock is
    //    CLOCK_MONOTONIC, as process.hrtime's: a compromised node estimates it from the probes it receives)
    dev.native.probe([peer.id]);
    const request = await t.next();
    expect(request[0]).toBe(PROBE_REQUEST);
    await new Promise((r) => setTimeout(r, 50));
    const moved = Buffer.from(request.subarray(0, 16));
    moved[0] = PROBE_REPLY;
    moved.writeBigUInt64BE(process.hrtime.bigint() - 1000n, 8);
    t.send(moved);
    await until(() => forged() === 1);
    expect(stats().probeReplies).toBe(0);
    expect(stats().probeRttUs).toBe(0);

    // 2. a tag made up for the moved time fails the same way (the key never left the device)
    moved[4] ^= 1;
    t.send(moved);
    await until(() => forged() === 2);
    expect(stats().probeReplies).toBe(0);

    // 3. the probe echoed as it came, 50 ms later: taken, and its RTT is what the path took
    const echoed = Buffer.from(request.subarray(0, 16));
    echoed[0] = PROBE_REPLY;
    t.send(echoed);
    await until(() => stats().probeReplies === 1);
    expect(stats().probeRttUs).toBeGreaterThanOrEqual(50_000);
    expect(forged()).toBe(2);
  });
});
