// The native Noise_IKpsk2 steps (native/src/crypto/noise.cc, called by src/wireguard/noise.ts) against a
// reference written here from the whitepaper (§5.4.2–5.4.4) with the separately tested primitives: HASH
// (BLAKE2s), HMAC-BLAKE2s in TypeScript (crypto.test.ts checks it against OpenSSL), X25519 and node:crypto's
// ChaCha20-Poly1305. Each side of the shipped code talks to the reference: a message built natively opens
// with the reference and the other way round, and both derive the same transport keys.
import { describe, expect, it } from 'vitest';
import { aeadOpen, aeadSeal, dh, generatePrivateKey, hash, hmac, kdf, publicFromPrivate } from '../../src/wireguard/crypto.js';
import {
  CONSTRUCTION,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSession,
  Handshake,
  IDENTIFIER,
  StaticIdentity,
} from '../../src/wireguard/noise.js';
import { tai64n } from '../../src/wireguard/tai64n.js';

const EMPTY = Buffer.alloc(0);
const C0 = hash(Buffer.from(CONSTRUCTION));
const H0 = hash(C0, Buffer.from(IDENTIFIER));

/** KDF_n from the whitepaper, on the TypeScript HMAC (not the addon's noiseKdf). */
function refKdf(n: number, ck: Buffer, input: Buffer): Buffer[] {
  const prk = hmac(ck, input);
  const out: Buffer[] = [];
  let prev: Buffer = EMPTY;
  for (let i = 1; i <= n; i++) out.push((prev = hmac(prk, Buffer.concat([prev, Buffer.from([i])]))));
  return out;
}

interface RefState {
  h: Buffer;
  ck: Buffer;
  ePriv: Buffer;
  ePub: Buffer;
}

/** The initiator's message 1 (macs zero) and its state, as the whitepaper writes it. */
function refInitiation(sPriv: Buffer, sPub: Buffer, rPub: Buffer, sender: number, ts: Buffer): { msg: Buffer; st: RefState } {
  const ePriv = generatePrivateKey();
  const ePub = publicFromPrivate(ePriv);
  let h = hash(H0, rPub);
  let [ck] = refKdf(1, C0, ePub) as [Buffer];
  h = hash(h, ePub);
  let k: Buffer;
  [ck, k] = refKdf(2, ck, dh(ePriv, rPub)!) as [Buffer, Buffer];
  const encStatic = aeadSeal(k, 0n, sPub, h);
  h = hash(h, encStatic);
  [ck, k] = refKdf(2, ck, dh(sPriv, rPub)!) as [Buffer, Buffer];
  const encTs = aeadSeal(k, 0n, ts, h);
  h = hash(h, encTs);
  const msg = Buffer.alloc(148);
  msg.writeUInt32LE(1, 0);
  msg.writeUInt32LE(sender, 4);
  Buffer.concat([ePub, encStatic, encTs]).copy(msg, 8);
  return { msg, st: { h, ck, ePriv, ePub } };
}

/** The responder's side of message 1: the initiator's static key and timestamp, and the state. */
function refConsumeInitiation(sPriv: Buffer, sPub: Buffer, msg: Buffer) {
  const ePub = msg.subarray(8, 40);
  let h = hash(H0, sPub);
  let [ck] = refKdf(1, C0, ePub) as [Buffer];
  h = hash(h, ePub);
  let k: Buffer;
  [ck, k] = refKdf(2, ck, dh(sPriv, ePub)!) as [Buffer, Buffer];
  const peer = aeadOpen(k, 0n, msg.subarray(40, 88), h)!;
  h = hash(h, msg.subarray(40, 88));
  [ck, k] = refKdf(2, ck, dh(sPriv, peer)!) as [Buffer, Buffer];
  const ts = aeadOpen(k, 0n, msg.subarray(88, 116), h)!;
  h = hash(h, msg.subarray(88, 116));
  return { peer, ts, h, ck, remoteEphemeral: Buffer.from(ePub) };
}

/** The key schedule over message 2: returns the final chain key and checks or makes the empty AEAD. */
function refResponseSchedule(h0: Buffer, ck0: Buffer, ePub: Buffer, ee: Buffer, se: Buffer, psk: Buffer) {
  let h = hash(h0, ePub);
  let [ck] = refKdf(1, ck0, ePub) as [Buffer];
  [ck] = refKdf(1, ck, ee) as [Buffer];
  [ck] = refKdf(1, ck, se) as [Buffer];
  const [chainKey, tau, key] = refKdf(3, ck, psk) as [Buffer, Buffer, Buffer];
  h = hash(h, tau);
  return { h, chainKey, key };
}

const transportKeys = (ck: Buffer) => refKdf(2, ck, EMPTY) as [Buffer, Buffer];

describe('native Noise_IKpsk2 steps against a TypeScript reference from the whitepaper', () => {
  const psk = Buffer.alloc(32, 0x5a);
  const a = new StaticIdentity(generatePrivateKey());
  const b = new StaticIdentity(generatePrivateKey());

  it('the addon KDF equals the whitepaper KDF on TypeScript HMAC for n = 1, 2, 3', () => {
    for (const n of [1, 2, 3] as const) {
      const ck = generatePrivateKey();
      const input = Buffer.from(`input ${n}`);
      expect(kdf(n, ck, input).map((x) => x.toString('hex'))).toEqual(refKdf(n, ck, input).map((x) => x.toString('hex')));
    }
    expect(kdf(2, C0, EMPTY).map((x) => x.toString('hex'))).toEqual(refKdf(2, C0, EMPTY).map((x) => x.toString('hex')));
  });

  it('the addon KDF (HMAC pad states precomputed per key) equals the reference on random keys and inputs of 0..200 bytes (seeded)', () => {
    let x = 0x2545f491;
    const byte = () => ((x = (Math.imul(x ^ (x >>> 13), 0x5bd1e995) + 0x9e3779b9) >>> 0) >>> 24);
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, byte));
    for (let i = 0; i < 300; i++) {
      const n = ((i % 3) + 1) as 1 | 2 | 3;
      const ck = i % 7 === 0 ? C0 : bytes(32);
      const input = bytes(i % 67 === 0 ? 0 : byte() % 201);
      expect(kdf(n, ck, input).map((k) => k.toString('hex')), `case ${i}`).toEqual(refKdf(n, ck, input).map((k) => k.toString('hex')));
    }
  });

  it('shipped initiator, reference responder', () => {
    const hs = new Handshake(a, b.publicKey, psk);
    const msg = createInitiation(a, hs, 0x01020304, 1_700_000_000_123);
    expect(msg.subarray(116).every((x) => x === 0)).toBe(true); // macs are cookie.ts's
    const r = refConsumeInitiation(b.privateKey, b.publicKey, msg);
    expect(r.peer.equals(a.publicKey)).toBe(true);
    expect(r.ts.equals(tai64n(1_700_000_000_123))).toBe(true);
    expect([r.h.equals(hs.hash), r.ck.equals(hs.chainKey)]).toEqual([true, true]);
    // the reference answers; the shipped initiator consumes it
    const ePriv = generatePrivateKey();
    const ePub = publicFromPrivate(ePriv);
    const sch = refResponseSchedule(r.h, r.ck, ePub, dh(ePriv, r.remoteEphemeral)!, dh(ePriv, a.publicKey)!, psk);
    const resp = Buffer.alloc(92);
    resp.writeUInt32LE(2, 0);
    resp.writeUInt32LE(0x0a0b0c0d, 4);
    resp.writeUInt32LE(0x01020304, 8);
    ePub.copy(resp, 12);
    aeadSeal(sch.key, 0n, EMPTY, sch.h).copy(resp, 44);
    consumeResponse(a, hs, resp);
    const keys = deriveSession(hs);
    const [t1, t2] = transportKeys(sch.chainKey);
    expect([keys.send.equals(t1), keys.recv.equals(t2), keys.remoteIndex]).toEqual([true, true, 0x0a0b0c0d]);
  });

  it('reference initiator, shipped responder', () => {
    const hs = new Handshake(b, a.publicKey, psk);
    const { msg, st } = refInitiation(a.privateKey, a.publicKey, b.publicKey, 77, tai64n(1_700_000_000_000));
    expect(consumeInitiation(b, msg, (k) => (k.equals(a.publicKey) ? hs : undefined), 1000)).toBe(hs);
    expect([hs.hash.equals(st.h), hs.chainKey.equals(st.ck), hs.remoteIndex]).toEqual([true, true, 77]);
    const resp = createResponse(hs, 99);
    expect([resp.readUInt32LE(0), resp.readUInt32LE(4), resp.readUInt32LE(8)]).toEqual([2, 99, 77]);
    // the reference initiator checks the response
    const rEph = resp.subarray(12, 44);
    const sch = refResponseSchedule(st.h, st.ck, rEph, dh(st.ePriv, rEph)!, dh(a.privateKey, rEph)!, psk);
    expect(aeadOpen(sch.key, 0n, resp.subarray(44, 60), sch.h)).not.toBeNull();
    const keys = deriveSession(hs);
    const [t1, t2] = transportKeys(sch.chainKey);
    expect([keys.recv.equals(t1), keys.send.equals(t2), keys.initiator]).toEqual([true, true, false]);
  });

  it('a tampered byte anywhere in the authenticated part of either message is refused', () => {
    for (let i = 8; i < 116; i += 9) {
      const hs = new Handshake(a, b.publicKey, psk);
      const msg = createInitiation(a, hs, 1);
      msg[i]! ^= 1;
      expect(() => consumeInitiation(b, msg, () => new Handshake(b, a.publicKey, psk), 0), `byte ${i}`).toThrow();
    }
    for (let i = 12; i < 60; i += 5) {
      const init = new Handshake(a, b.publicKey, psk);
      const resp = new Handshake(b, a.publicKey, psk);
      consumeInitiation(b, createInitiation(a, init, 1), () => resp, 0);
      const msg = createResponse(resp, 2);
      msg[i]! ^= 1;
      expect(() => consumeResponse(a, init, msg), `byte ${i}`).toThrow();
    }
  });
});

describe('noiseCreateInitiation: the timestamp parts are checked at the addon boundary', () => {
  it('regression: a negative, fractional, NaN or ≥ 10^9 nanosecond count (or such seconds) throws instead of wrapping', async () => {
    const { native } = await import('../../src/native/binding.js');
    const k = Buffer.alloc(32, 9);
    const call = (s: number, ns: number) => native.noiseCreateInitiation(Buffer.alloc(244), 1, k, k, k, k, s, ns, null, null);
    for (const [s, ns] of [[1, -1], [1, 1e9], [1, 0.5], [1, NaN], [-1, 0], [NaN, 0], [Infinity, 0], [2 ** 53, 0], [1.5, 0]]) expect(() => call(s!, ns!), `${s} ${ns}`).toThrow(/tsSeconds/);
    expect(() => call(1_764_500_000, 999_999_999)).not.toThrow();
  });
});
