// A peer's staged packets (native/src/wireguard/device.cc stage, device_tx.cc's flush): what goes out to a peer
// without a session waits, at most kStagedMax = 128 per peer with the oldest dropped first (drop_stage_overflow),
// and leaves, all of them, once a keypair is installed and the data path is told to flush. Oracle: a bounded
// queue of 128 per peer (wireguard-go's and the kernel's staged queue, MAX_STAGED_PACKETS = 128), checked on
// seeded random rounds of staging and flushing, including a peer staged again after a flush and after its
// keypairs were cleared (the container is swapped out and released there). The real native device, two of them
// over loopback, no TUN: a keepalive with no keypair is staged as a packet is. Counts only (dropped, sent): the
// keepalives are all alike, so which are dropped (oldest first) and the flush's order (FIFO) are not checked
// here; that needs distinguishable staged payloads (a test hook).
import { describe, expect, it } from 'vitest';
import { loopbackDevices, txSentinel, until } from '../helpers/native-loopback.js';
import { prng } from '../helpers/prng.js';

const open = loopbackDevices();

const STAGED_MAX = 128;

describe('staged packets per peer', () => {
  it.each([1, 2, 3])('keep the newest 128 and all leave on a flush with a keypair (seed %i)', async (seed) => {
    const rnd = prng(seed);
    const d = open();
    const e = open();
    const P = 7;
    for (const [x, y] of [[d, e], [e, d]] as const) {
      x.upsertPeer(P);
      x.setEndpoint(P, '127.0.0.1', y.port);
    }
    const taken = txSentinel(d, e, 1000);
    let index = 10;
    let queued = 0; // the oracle: what P holds now
    let dropped = 0;
    for (let round = 0; round < 6; round++) {
      const n = Math.floor(rnd() * 3 * STAGED_MAX);
      for (let i = 0; i < n; i++) d.sendKeepalive(P);
      await taken();
      dropped += Math.max(0, queued + n - STAGED_MAX);
      queued = Math.min(STAGED_MAX, queued + n);
      expect({ round, overflow: d.counters().drop_stage_overflow }).toEqual({ round, overflow: dropped });
      if (rnd() < 0.3) {
        // the timers' expiry: keypairs and staged packets go
        d.clearKeypairs(P);
        queued = 0;
        continue;
      }
      const [a, b] = [Buffer.alloc(32, round + 1), Buffer.alloc(32, round + 101)];
      const [mine, theirs] = [++index, ++index];
      d.installKeypair(P, mine, theirs, a, b, true);
      e.installKeypair(P, theirs, mine, b, a, true);
      const sent = d.peerStats().find((s) => s.id === P)!.txPackets;
      d.flushStaged(P, false);
      await taken();
      await until(() => d.peerStats().find((s) => s.id === P)!.txPackets === sent + queued);
      expect({ round, sent: d.peerStats().find((s) => s.id === P)!.txPackets - sent }).toEqual({ round, sent: queued });
      queued = 0;
      d.clearKeypairs(P); // the next round stages again
    }
  });
});
