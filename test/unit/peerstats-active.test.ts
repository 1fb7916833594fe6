// peerStats(true), the active peers the timers tick and the health read take 4 times a second, is read
// from the device's active list (native/src/wireguard/device.cc mark_active/unlist), not from a walk of
// every peer. On seeded random sequences of peers added and removed, keypairs installed and cleared
// (what the timers do at expiry), keepalives both ways and keepalives with no keypair (staged, a
// handshake requested), the active read equals the reference: the full read filtered by what makes a
// peer active (a keypair, anything authenticated sent or received, a packet staged or a handshake
// requested since the last keypair). The real native device (two of them over loopback, no TUN) and
// the fake one (src/native/fakedevice.ts), which the agent's unit tests use in its place.
import { describe, expect, it } from 'vitest';
import type { NativePeerStats } from '../../src/native/binding.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { loopbackDevices, txSentinel, until } from '../helpers/native-loopback.js';
import { prng } from '../helpers/prng.js';

const open = loopbackDevices();

/** What the test did to a peer of the device under test that the stats do not show. */
interface Model {
  keypair: boolean;
  /** A keepalive went out with no keypair since the last install: staged, a handshake requested. */
  requested: boolean;
}

const ids = (rows: NativePeerStats[]) => rows.map((s) => s.id).sort((a, b) => a - b);

describe('peerStats(true) on the native device', () => {
  it('equals the full read filtered by activity on random sequences (peers, keypairs, traffic both ways, expiry)', async () => {
    for (let seed = 1; seed <= 3; seed++) {
      const rnd = prng(seed);
      const d = open();
      const e = open(); // the other end: each of d's peers has its twin here, with the mirrored keypair
      const model = new Map<number, Model>();
      let index = seed * 100_000;
      // A sentinel peer with a keypair: once its keepalive is counted, the TX thread has taken every
      // earlier request (FIFO), so a keepalive sent before a keypair change met the keypairs the model says.
      const SENTINEL = 1000;
      const txTaken = txSentinel(d, e, SENTINEL);
      model.set(SENTINEL, { keypair: true, requested: false });
      const reference = () => {
        const full = d.peerStats();
        return ids(full.filter((s) => s.lastAuthSentMs > 0 || s.lastAuthRecvMs > 0 || model.get(s.id)!.keypair || model.get(s.id)!.requested));
      };
      for (let step = 0; step < 120; step++) {
        const id = 1 + Math.floor(rnd() * 12);
        const m = model.get(id);
        const x = rnd();
        if (!m || x < 0.1) {
          if (m) d.removePeer(id);
          d.upsertPeer(id);
          d.setEndpoint(id, '127.0.0.1', e.port);
          e.upsertPeer(id);
          e.setEndpoint(id, '127.0.0.1', d.port);
          model.set(id, { keypair: false, requested: false });
        } else if (x < 0.3) {
          const [a, b] = [Buffer.alloc(32, step + 1), Buffer.alloc(32, step + 101)];
          const [mine, theirs] = [++index, ++index];
          d.installKeypair(id, mine, theirs, a, b, true);
          e.installKeypair(id, theirs, mine, b, a, true);
          Object.assign(m, { keypair: true, requested: false });
        } else if (x < 0.45) {
          d.clearKeypairs(id); // as the timers do when a session expires
          m.keypair = false;
        } else if (x < 0.65) {
          d.sendKeepalive(id);
          if (!m.keypair) m.requested = true;
          await txTaken();
        } else if (x < 0.85) {
          e.sendKeepalive(id);
        } else if (x < 0.92) {
          d.removePeer(id);
          e.removePeer(id);
          model.delete(id);
        }
        if (step % 10 === 9 || step === 119) {
          await until(() => ids(d.peerStats(true)).join() === reference().join());
          expect({ seed, step, active: ids(d.peerStats(true)) }).toEqual({ seed, step, active: reference() });
          // the rows are the full read's rows (fields that move with the clock aside). A packet still in
          // flight can land between two reads: take the full read between two equal active reads (the
          // counters only grow, so the full read in between holds the same values)
          const rows = (r: ReturnType<typeof d.peerStats>) => JSON.stringify(r.map((s) => ({ ...s, currentAgeMs: 0 })));
          let active: ReturnType<typeof d.peerStats> = [];
          let full = new Map<number, (typeof active)[number]>();
          await until(() => {
            active = d.peerStats(true);
            full = new Map(d.peerStats().map((s) => [s.id, s]));
            return rows(d.peerStats(true)) === rows(active);
          });
          for (const s of active) expect({ ...s, currentAgeMs: 0 }).toEqual({ ...full.get(s.id)!, currentAgeMs: 0 });
        }
      }
      // a peer that only ever held a keypair leaves the list when it is cleared; one that spoke stays
      d.upsertPeer(99);
      d.installKeypair(99, ++index, ++index, Buffer.alloc(32, 1), Buffer.alloc(32, 2), true);
      expect(ids(d.peerStats(true))).toContain(99);
      d.clearKeypairs(99);
      expect(ids(d.peerStats(true))).not.toContain(99);
    }
  });
});

describe('peerStats(true) on the fake device', () => {
  it('equals the full read filtered by FakeDevice.active on random sequences', () => {
    const rnd = prng(11);
    const d = new FakeDevice();
    for (let step = 0; step < 2000; step++) {
      const id = 1 + Math.floor(rnd() * 30);
      const x = rnd();
      if (x < 0.2) d.upsertPeer(id);
      else if (x < 0.3) d.removePeer(id);
      else if (x < 0.5) d.installKeypair(id, step * 2, step * 2 + 1, Buffer.alloc(32, 1), Buffer.alloc(32, 2), rnd() < 0.5);
      else if (x < 0.6) d.clearKeypairs(id);
      else if (d.peers.has(id)) {
        const s = d.peer(id).stats;
        if (x < 0.75) s.txPackets++, (s.lastAuthSentMs = step);
        else if (x < 0.9) s.rxPackets++, (s.lastAuthRecvMs = step);
        else Object.assign(s, { txPackets: 0, rxPackets: 0, lastAuthSentMs: 0, lastAuthRecvMs: 0 });
      }
      expect(d.peerStats(true)).toEqual(d.peerStats().filter((s) => FakeDevice.active(d.peer(s.id))));
    }
  });
});
