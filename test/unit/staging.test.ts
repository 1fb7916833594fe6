// A peer's staged packets (native/src/wireguard/device.cc stage, device_txctl.cc's flush): what goes out to a peer
// without a session waits, at most kStagedMax = 128 per peer with the oldest dropped first (drop_stage_overflow),
// and leaves, all of them and in the order they were staged, once a keypair is installed and the data path is told
// to flush. Oracle: a bounded FIFO queue of 128 per peer (wireguard-go's and the kernel's staged queue,
// MAX_STAGED_PACKETS = 128), checked on seeded random rounds of staging and flushing, including a peer staged again
// after a flush and after its keypairs were cleared (the container is swapped out and released there). The real
// native device over loopback, no TUN: a keepalive with no keypair is staged as a packet is, and so is a liveness
// probe, whose plaintext carries the time it was made: the staged queue is a random mix of the two, and the test
// reads what leaves at a UDP socket standing for the peer, opening each message with the peer's key (RFC 8439
// ChaCha20-Poly1305, the counter as nonce): the kinds in counter order must be the queue's newest 128 in order
// (a drop-newest or a reordered flush fails), the probes' times rising. Arena overflow (many peers' flushes in one
// round) is test/unit/tx-control.test.ts's.
import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { aeadOpen } from '../../src/wireguard/crypto.js';
import { loopbackDevices, txSentinel, until } from '../helpers/native-loopback.js';
import { prng } from '../helpers/prng.js';

const open = loopbackDevices();

const STAGED_MAX = 128;

/** The transport messages to receiver `index` (type 4), opened with key, in counter order: 'k' or the probe's time. */
function opened(msgs: Buffer[], index: number, key: Buffer): Array<'k' | bigint | null> {
  return msgs
    .filter((m) => m.length >= 32 && m[0] === 4 && m.readUInt32LE(4) === index)
    .map((m) => ({ counter: m.readBigUInt64LE(8), body: m.subarray(16) }))
    .sort((x, y) => (x.counter < y.counter ? -1 : 1))
    .map(({ counter, body }) => {
      const plain = aeadOpen(key, counter, body, Buffer.alloc(0));
      if (plain === null) return null;
      if (plain.length === 0) return 'k';
      return plain.length === 16 && plain[0] === 0x20 ? plain.readBigUInt64BE(8) : null;
    });
}

describe('staged packets per peer', () => {
  it.each([1, 2, 3])('keep the newest 128 and all leave in order on a flush with a keypair (seed %i)', async (seed) => {
    const rnd = prng(seed);
    const d = open();
    const e = open();
    const sink = createSocket('udp4');
    const msgs: Buffer[] = [];
    sink.on('message', (m) => msgs.push(m));
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', r));
    try {
      const P = 7;
      d.upsertPeer(P);
      d.setEndpoint(P, '127.0.0.1', sink.address().port);
      const taken = txSentinel(d, e, 1000);
      let index = 10;
      let queue: Array<'k' | 'p'> = []; // the oracle: what P holds now, oldest first
      let dropped = 0;
      for (let round = 0; round < 6; round++) {
        const n = Math.floor(rnd() * 3 * STAGED_MAX);
        for (let i = 0; i < n; i++) {
          const probe = rnd() < 0.3;
          if (probe) d.probe([P]);
          else d.sendKeepalive(P);
          queue.push(probe ? 'p' : 'k');
        }
        await taken();
        dropped += Math.max(0, queue.length - STAGED_MAX);
        queue = queue.slice(-STAGED_MAX);
        expect({ round, overflow: d.counters().drop_stage_overflow }).toEqual({ round, overflow: dropped });
        if (rnd() < 0.3) {
          // the timers' expiry: keypairs and staged packets go
          d.clearKeypairs(P);
          queue = [];
          continue;
        }
        const a = Buffer.alloc(32, round + 1);
        const [mine, theirs] = [++index, ++index];
        d.installKeypair(P, mine, theirs, a, Buffer.alloc(32, round + 101), true);
        const sent = d.peerStats().find((s) => s.id === P)!.txPackets;
        d.flushStaged(P, false);
        await taken();
        await until(() => opened(msgs, theirs, a).length === queue.length);
        expect({ round, sent: d.peerStats().find((s) => s.id === P)!.txPackets - sent }).toEqual({ round, sent: queue.length });
        const got = opened(msgs, theirs, a);
        expect({ round, kinds: got.map((x) => (x === 'k' ? 'k' : x === null ? 'unopened' : 'p')).join('') }).toEqual({ round, kinds: queue.join('') });
        const times = got.filter((x): x is bigint => typeof x === 'bigint');
        expect({ round, rising: times.every((t, i) => i === 0 || t > times[i - 1]!) }).toEqual({ round, rising: true });
        queue = [];
        d.clearKeypairs(P); // the next round stages again
      }
    } finally {
      sink.close();
    }
  });
});
