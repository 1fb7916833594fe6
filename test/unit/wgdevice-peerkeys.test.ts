// The device's peers by public key (src/wireguard/device.ts, peersbyhex.ts): since s21peer a peer keeps its key as
// base64 (a node record's own string when the reconciler adds it) and `dev.peers` is a view with the former hex
// keys. On seeded random sequences of adds (with the key's text canonical, spelt otherwise, or not given), removals
// and lookups, against a plain Map by hex kept in the test (the former representation): the view's size, keys,
// values and entries in insertion order, get/has for every key of the pool and for strings that are not exactly
// 64 lowercase hex digits, and each peer's key in every form. Also: the endpoint, kept as two fields, reads back as set.
import { describe, expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { prng } from '../helpers/prng.js';

/** Another spelling of a 32-byte key's base64: the last digit's two padding bits set (Buffer decodes it the same). */
function otherSpelling(b64: string): string {
  const digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const last = digits.indexOf(b64[42]!);
  return b64.slice(0, 42) + digits[last | 3] + '=';
}

function run(seed: number, steps: number): void {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
  dev.setPrivateKey(generatePrivateKey());
  const keys = Array.from({ length: 8 }, () => generatePrivateKey());
  const model = new Map<string, number>(); // hex -> peer id, in insertion order (the former Map<hex, Peer>)
  for (let step = 0; step < steps; step++) {
    const ctx = `seed ${seed} step ${step}`;
    const key = pick(keys);
    const hex = key.toString('hex');
    const b64 = key.toString('base64');
    const x = rnd();
    if (x < 0.3) {
      dev.removePeer(key);
      model.delete(hex);
    } else {
      const text = x < 0.5 ? b64 : x < 0.7 ? otherSpelling(b64) : undefined;
      if (text !== undefined) expect(Buffer.from(text, 'base64').equals(key), ctx).toBe(true);
      const peer = dev.addPeer(key, text);
      if (!model.has(hex)) model.set(hex, peer.id);
      expect(peer.id, ctx).toBe(model.get(hex));
    }
    expect(dev.peers.size, ctx).toBe(model.size);
    expect([...dev.peers.keys()], ctx).toEqual([...model.keys()]);
    expect([...dev.peers.values()].map((p) => p.id), ctx).toEqual([...model.values()]);
    expect([...dev.peers].map(([k, p]) => [k, p.id]), ctx).toEqual([...model]);
    for (const k of keys) {
      const h = k.toString('hex');
      const peer = dev.peers.get(h);
      expect(peer?.id, ctx).toBe(model.get(h));
      expect(dev.peers.has(h), ctx).toBe(model.has(h));
      expect(dev.getPeer(k), ctx).toBe(peer);
      if (peer) {
        expect(peer.publicKeyB64, ctx).toBe(k.toString('base64')); // canonical, whatever spelling it was added with
        expect(peer.publicKeyHex, ctx).toBe(h);
        expect(peer.publicKey.equals(k), ctx).toBe(true);
      }
      // not exactly 64 lowercase hex digits: no peer (the former map's keys were Buffer.toString('hex'))
      for (const bad of [h.toUpperCase(), h.slice(1), `${h}0`, `${h.slice(0, 63)}g`, k.toString('base64'), ''])
        if (bad !== h) expect(dev.peers.get(bad), `${ctx} ${bad}`).toBeUndefined();
    }
  }
  dev.close();
}

describe('WireGuardDevice peers by key (base64 kept, hex view)', () => {
  for (let seed = 1; seed <= 6; seed++) it(`seed ${seed}`, () => run(seed, 200));

  it('a peer endpoint (two fields since s21peer) reads back as last set, against the objects set', () => {
    const rnd = prng(99);
    const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
    const peers = Array.from({ length: 4 }, () => dev.addPeer(generatePrivateKey()));
    const model = new Map<number, { host: string; port: number } | undefined>();
    const hosts = ['198.18.0.1', 'fd00::1', '', '0.0.0.0'];
    for (let step = 0; step < 200; step++) {
      const peer = peers[Math.floor(rnd() * peers.length)]!;
      const ep = rnd() < 0.2 ? undefined : { host: hosts[Math.floor(rnd() * hosts.length)]!, port: rnd() < 0.2 ? 0 : 1 + Math.floor(rnd() * 65535) };
      if (ep) dev.setPeerEndpoint(peer, ep);
      else peer.endpoint = undefined;
      model.set(peer.id, ep && { ...ep });
      for (const p of peers) expect(p.endpoint, `step ${step}`).toEqual(model.get(p.id));
    }
    dev.close();
  });

  it('a key spelt otherwise is kept in its canonical spelling, and names the same peer', () => {
    const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
    // a key whose canonical last digit has its padding bits clear ('A', 'Q', 'g' or 'w')
    const key = Buffer.alloc(32, 0x41);
    const b64 = key.toString('base64');
    const odd = otherSpelling(b64);
    expect(odd).not.toBe(b64);
    const peer = dev.addPeer(key, odd);
    expect(peer.publicKeyB64).toBe(b64);
    expect(dev.addPeer(key, b64)).toBe(peer);
    expect(dev.peers.size).toBe(1);
    dev.close();
  });
});
