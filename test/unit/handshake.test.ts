import { describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding.js';
import { testhooks } from '../../src/native/testhooks.js';
import { CookieGenerator } from '../../src/wireguard/cookie.js';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { tai64n } from '../../src/wireguard/tai64n.js';
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSession,
  Handshake,
  StaticIdentity,
} from '../../src/wireguard/noise.js';

function pair(psk = Buffer.alloc(32), pskB = psk) {
  const a = new StaticIdentity(generatePrivateKey());
  const b = new StaticIdentity(generatePrivateKey());
  const aSeesB = new Handshake(a, b.publicKey, psk);
  const bSeesA = new Handshake(b, a.publicKey, pskB);
  return { a, b, aSeesB, bSeesA };
}

function transportRoundTrip(sendKey: Buffer, recvKey: Buffer): boolean {
  const nonce = Buffer.alloc(12);
  const sealed = native.aead(true, false, sendKey, nonce, Buffer.from('ping'))!;
  const opened = native.aead(false, false, recvKey, nonce, sealed);
  return opened?.toString() === 'ping';
}

describe('Noise_IKpsk2 handshake between two in-memory peers', () => {
  it('derives matching transport keys for both roles', () => {
    const { a, b, aSeesB, bSeesA } = pair(Buffer.alloc(32, 9));
    const init = createInitiation(a, aSeesB, 0x11111111);
    expect(init.length).toBe(148);
    const found = consumeInitiation(b, init, (k) => (k.equals(a.publicKey) ? bSeesA : undefined), 1000);
    expect(found).toBe(bSeesA);
    const resp = createResponse(bSeesA, 0x22222222);
    expect(resp.length).toBe(92);
    consumeResponse(a, aSeesB, resp);
    const ka = deriveSession(aSeesB);
    const kb = deriveSession(bSeesA);
    expect(ka.initiator).toBe(true);
    expect(kb.initiator).toBe(false);
    expect(ka.send.equals(kb.recv)).toBe(true);
    expect(ka.recv.equals(kb.send)).toBe(true);
    expect([ka.localIndex, ka.remoteIndex, kb.localIndex, kb.remoteIndex]).toEqual([0x11111111, 0x22222222, 0x22222222, 0x11111111]);
    expect(transportRoundTrip(ka.send, kb.recv)).toBe(true);
    expect(transportRoundTrip(kb.send, ka.recv)).toBe(true);
    // handshake secrets are wiped once the session is derived
    expect(aSeesB.state).toBe('zeroed');
  });

  it('rejects a replayed initiation and an initiation flood', () => {
    const { a, b, aSeesB, bSeesA } = pair();
    const find = (k: Buffer) => (k.equals(a.publicKey) ? bSeesA : undefined);
    const init = createInitiation(a, aSeesB, 1, 1_700_000_000_000);
    consumeInitiation(b, init, find, 1000);
    expect(() => consumeInitiation(b, init, find, 5000)).toThrow(/replayed/);
    const fresh = createInitiation(a, aSeesB, 2, 1_700_000_001_000);
    expect(() => consumeInitiation(b, fresh, find, 1010)).toThrow(/flood/);
    expect(consumeInitiation(b, fresh, find, 1030)).toBe(bSeesA);
  });

  it('fails on a preshared key mismatch and on an unknown initiator', () => {
    const { a, b, aSeesB, bSeesA } = pair(Buffer.alloc(32, 1), Buffer.alloc(32, 2));
    consumeInitiation(b, createInitiation(a, aSeesB, 1), () => bSeesA, 0);
    const resp = createResponse(bSeesA, 2);
    expect(() => consumeResponse(a, aSeesB, resp)).toThrow(/authenticate/);
    const other = pair();
    expect(() => consumeInitiation(b, createInitiation(other.a, new Handshake(other.a, b.publicKey), 3), () => undefined, 0)).toThrow(/unknown peer/);
  });

  it('rejects a tampered initiation', () => {
    const { a, b, aSeesB, bSeesA } = pair();
    const init = createInitiation(a, aSeesB, 1);
    init[60]! ^= 0x80;
    expect(() => consumeInitiation(b, init, () => bSeesA, 0)).toThrow(/does not decrypt/);
  });
});

describe('cookies: native checker against the TypeScript generator', () => {
  it('mac1 is checked, a cookie reply is consumed and mac2 then verifies', () => {
    const { a, b, aSeesB } = pair();
    let now = 1_000;
    const gen = new CookieGenerator(b.publicKey, () => now);
    const checker = new testhooks.CookieChecker();
    checker.setPublicKey(b.publicKey);
    const src = Buffer.from([198, 18, 0, 1, 0xca, 0x6c]);
    const msg = gen.addMacs(createInitiation(a, aSeesB, 7));
    expect(checker.checkMac1(msg)).toBe(true);
    expect(checker.checkMac2(msg, src, now)).toBe(false); // no cookie yet
    const reply = checker.makeReply(msg, 7, src, now)!;
    expect(reply.length).toBe(64);
    expect(reply.readUInt32LE(4)).toBe(7);
    expect(gen.consumeReply(reply)).toBe(true);
    const again = gen.addMacs(createInitiation(a, aSeesB, 8));
    expect(checker.checkMac2(again, src, now)).toBe(true);
    // bound to the source address
    expect(checker.checkMac2(again, Buffer.from([198, 18, 0, 2, 0xca, 0x6c]), now)).toBe(false);
    // a tampered mac1 fails
    again[again.length - 20]! ^= 1;
    expect(checker.checkMac1(again)).toBe(false);
    // the cookie expires after 120 s
    now += 121_000;
    const late = gen.addMacs(createInitiation(a, aSeesB, 9));
    expect(late.subarray(late.length - 16).every((x) => x === 0)).toBe(true);
  });
});

describe('macs and timestamp written by the native create steps', () => {
  it('equal cookie.ts addMacs (the TypeScript reference) with and without a cookie, for both messages', () => {
    const { a, b, aSeesB, bSeesA } = pair();
    let now = 5_000;
    const toB = new CookieGenerator(b.publicKey, () => now);
    const toA = new CookieGenerator(a.publicKey, () => now);
    const checker = new testhooks.CookieChecker();
    checker.setPublicKey(b.publicKey);
    const src = Buffer.from([198, 18, 0, 1, 0xca, 0x6c]);
    for (const withCookie of [false, true]) {
      if (withCookie) {
        // a cookie reply to the last message (its mac1 recorded by `sent`) arms mac2
        const last = createInitiation(a, aSeesB, 20, 1_700_000_000_000 + now, toB);
        expect(toB.consumeReply(checker.makeReply(last, 20, src, now)!)).toBe(true);
      }
      const init = createInitiation(a, aSeesB, 21, 1_700_000_000_000 + now, toB);
      const ref = toB.addMacs(Buffer.from(init)); // recomputes both macs over the same first bytes
      expect(init.toString('hex'), `cookie ${withCookie}`).toBe(ref.toString('hex'));
      expect(init.subarray(132).every((x) => x === 0)).toBe(!withCookie);
      expect(checker.checkMac1(init)).toBe(true);
      expect(checker.checkMac2(init, src, now)).toBe(withCookie);
      consumeInitiation(b, init, () => bSeesA, now);
      const resp = createResponse(bSeesA, 22, toA);
      expect(resp.toString('hex')).toBe(toA.addMacs(Buffer.from(resp)).toString('hex'));
      expect(resp.subarray(76).every((x) => x === 0)).toBe(true); // no cookie from a
      consumeResponse(a, aSeesB, resp);
      deriveSession(aSeesB);
      deriveSession(bSeesA);
      now += 1_000;
    }
  });

  it('the timestamp built natively from tai64nSeconds/tai64nNanos is tai64n() on random times (seeded)', () => {
    const { a, b, aSeesB } = pair();
    let x = 0x9e3779b9;
    const next = () => ((x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
    for (let i = 0; i < 200; i++) {
      // whole and fractional milliseconds from 1970 to 2100, and the edges of a second
      const ms = i % 3 === 0 ? Math.floor(next() * 4.1e12) : i % 3 === 1 ? next() * 4.1e12 : Math.floor(next() * 4.1e9) * 1000 + (i % 2 ? 999 : 0);
      const bSeesA = new Handshake(b, a.publicKey); // no earlier timestamp: any passes the replay check
      consumeInitiation(b, createInitiation(a, aSeesB, i + 1, ms), () => bSeesA, 0);
      expect(bSeesA.lastTimestamp.toString('hex'), `ms ${ms}`).toBe(tai64n(ms).toString('hex'));
      aSeesB.clear();
    }
  });
});
