// A peer's identity, clock and preshared key in one object shared by a device's peers (src/wireguard/keying.ts), and
// its last-handshake and initiating times in its PeerActivity (s23node): seeded operation sequences against a model of
// the fields as the peer held them before (each its own field), the handshake built from what the model says, plus
// the sharing itself (one object for a device's peers, their own for peers with a preshared key).
import { describe, expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { dh, generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { StaticIdentity } from '../../src/wireguard/noise.js';
import { Peer } from '../../src/wireguard/peer.js';
import { prng } from '../helpers/prng.js';

const keying = (p: Peer): unknown => (p as unknown as { keying: unknown }).keying;
const activity = (p: Peer): unknown => (p as unknown as { act?: unknown }).act;
const ZERO = Buffer.alloc(32);

describe('Peer keying and activity times', () => {
  it("a device's peers share one keying; a preshared key or a new private key gives the right ones", () => {
    const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
    dev.setPrivateKey(generatePrivateKey());
    const peers = Array.from({ length: 5 }, () => dev.addPeer(publicFromPrivate(generatePrivateKey())));
    expect(new Set(peers.map(keying)).size).toBe(1);
    peers[1]!.setPresharedKey(Buffer.alloc(32, 9));
    expect(keying(peers[1]!)).not.toBe(keying(peers[0]!));
    const second = generatePrivateKey();
    dev.setPrivateKey(second);
    const after = peers.filter((_, i) => i !== 1).map(keying);
    expect(new Set(after).size).toBe(1);
    expect(after[0]).not.toBe(keying(peers[1]!));
    for (const p of peers) expect(p.handshake.precomputedStaticStatic).toEqual(dh(second, p.publicKey));
    expect([peers[1]!.presharedKey, peers[0]!.presharedKey, peers[1]!.handshake.presharedKey]).toEqual([Buffer.alloc(32, 9), ZERO, Buffer.alloc(32, 9)]);
    expect(keying(dev.addPeer(publicFromPrivate(generatePrivateKey())))).toBe(after[0]);
    dev.close();
  });

  it('an idle peer reads 0 for both times and setting 0 makes nothing', () => {
    const p = new Peer(1, publicFromPrivate(generatePrivateKey()).toString('base64'), null, () => 5);
    p.lastHandshakeEpochMs = 0;
    p.initiatingSinceMs = 0;
    expect([p.lastHandshakeEpochMs, p.initiatingSinceMs, activity(p)]).toEqual([0, 0, undefined]);
    p.initiatingSinceMs = 7;
    expect([p.lastHandshakeEpochMs, p.initiatingSinceMs]).toEqual([0, 7]);
  });

  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: random operations on peers sharing a clock read as the per-field model`, () => {
      const rnd = prng(seed);
      const now = () => 1000;
      const ids = [null, ...Array.from({ length: 3 }, () => new StaticIdentity(generatePrivateKey()))];
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const models = Array.from({ length: 4 }, (_, i) => {
        const identity = pick(ids);
        const peer = new Peer(i, publicFromPrivate(generatePrivateKey()).toString('base64'), identity, now);
        return { peer, identity, psk: ZERO, hsFrom: undefined as StaticIdentity | null | undefined, hsPsk: ZERO, last: 0, since: 0 };
      });
      // a handshake is built from the identity and preshared key of then; without an identity it is a placeholder
      // holding a zero key (no handshake can run)
      const build = (m: (typeof models)[number]) => ((m.hsFrom = m.identity), (m.hsPsk = m.identity ? m.psk : ZERO));
      for (let step = 0; step < 400; step++) {
        const m = pick(models);
        const p = m.peer;
        const x = rnd();
        if (x < 0.2) {
          m.psk = rnd() < 0.3 ? Buffer.alloc(32) : Buffer.alloc(32, Math.floor(rnd() * 255) + 1);
          p.setPresharedKey(m.psk);
          m.hsPsk = m.psk; // (a built handshake takes it too)
        } else if (x < 0.4) {
          m.identity = pick(ids);
          p.rekeyIdentity(m.identity);
          if (m.hsFrom !== undefined) build(m); // a built handshake is rebuilt at once
        } else if (x < 0.55) {
          void p.handshake;
          if (m.hsFrom === undefined) build(m);
        } else if (x < 0.7) {
          m.last = rnd() < 0.3 ? 0 : Math.floor(rnd() * 2 ** 41);
          p.lastHandshakeEpochMs = m.last;
        } else if (x < 0.85) {
          m.since = rnd() < 0.3 ? 0 : Math.floor(rnd() * 2 ** 30);
          p.initiatingSinceMs = m.since;
        } else {
          expect(p.timers.persistentKeepaliveS).toBe(0);
        }
        for (const o of models) {
          const q = o.peer;
          expect([q.presharedKey, q.lastHandshakeEpochMs, q.initiatingSinceMs], `step ${step}`).toEqual([o.psk, o.last, o.since]);
          if (o.hsFrom === undefined) continue;
          expect(q.handshake.presharedKey, `step ${step} hs psk`).toEqual(o.hsPsk);
          expect(q.handshake.precomputedStaticStatic, `step ${step} hs identity`).toEqual(o.hsFrom ? dh(o.hsFrom.privateKey, q.publicKey) : null);
        }
      }
    });
  }
});
