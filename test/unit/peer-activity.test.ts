// A peer's active-only state in one lazily made object (src/wireguard/peer.ts PeerActivity, s22node): seeded random
// sequences of the operations that touch it, against a model of the fields as the peer held them before (five
// fields, each made on its own first use), plus what an idle peer must still read without making anything.
import { describe, expect, it } from 'vitest';
import { generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { StaticIdentity } from '../../src/wireguard/noise.js';
import { Peer } from '../../src/wireguard/peer.js';
import { prng } from '../helpers/prng.js';

const activity = (p: Peer): unknown => (p as unknown as { act?: unknown }).act;

describe('Peer activity state', () => {
  it('an idle peer reads every default and makes nothing', () => {
    const p = new Peer(1, publicFromPrivate(generatePrivateKey()).toString('base64'), new StaticIdentity(generatePrivateKey()), () => 5);
    expect([p.lastSentHandshakeMs, p.indices, p.hasHandshakeState, p.persistentKeepaliveS]).toEqual([-Infinity, [], false, 0]);
    p.stopTimers();
    p.clearHandshake();
    p.rekeyIdentity(null);
    p.setPresharedKey(Buffer.alloc(32, 7));
    expect(activity(p)).toBeUndefined();
    expect(p.hasHandshakeState).toBe(false);
  });

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: random operations read as the per-field model`, () => {
      const rnd = prng(seed);
      let now = 100;
      const id = new StaticIdentity(generatePrivateKey());
      const p = new Peer(9, publicFromPrivate(generatePrivateKey()).toString('base64'), id, () => now);
      const m = { sent: -Infinity, indices: [] as number[], hs: false, cookie: false, keepalive: 0 };
      for (let step = 0; step < 400; step++) {
        now += Math.floor(rnd() * 1000);
        const x = rnd();
        if (x < 0.2) {
          p.lastSentHandshakeMs = now;
          m.sent = now;
        } else if (x < 0.4) {
          const idx = Math.floor(rnd() * 2 ** 32);
          const dropped = p.rememberIndex(idx);
          m.indices.push(idx);
          const want = m.indices.length > 4 ? m.indices.splice(0, m.indices.length - 4) : [];
          expect(dropped).toEqual(want);
        } else if (x < 0.5) {
          expect(p.handshake.remoteStatic.equals(p.publicKey)).toBe(true);
          m.hs = true;
        } else if (x < 0.6) {
          void p.cookie;
          m.cookie = true;
        } else if (x < 0.7) {
          const s = Math.floor(rnd() * 3) * 25;
          p.timers.persistentKeepaliveSet(s, now);
          m.keepalive = s;
        } else if (x < 0.8) {
          const ts = p.hasHandshakeState && m.hs ? Buffer.from(p.handshake.lastTimestamp) : undefined;
          p.rekeyIdentity(id);
          if (ts) expect(p.handshake.lastTimestamp.equals(ts)).toBe(true);
        } else if (x < 0.9) {
          p.clearHandshake();
        } else {
          p.stopTimers();
        }
        expect([p.lastSentHandshakeMs, [...p.indices], p.hasHandshakeState, p.persistentKeepaliveS], `step ${step}`).toEqual([m.sent, m.indices, m.hs || m.cookie, m.keepalive]);
      }
    });
  }
});
