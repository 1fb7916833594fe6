/**
 * The handshake's primitives (whitepaper §5.4): HASH, MAC, HMAC, KDF, DH, AEAD.
 *
 * Choices, by measurement (bench/handshake.ts prints the figures):
 * - BLAKE2s runs in our addon (plain and keyed). Node's `blake2s256` has no key
 *   input and no 16-byte output, which mac1/mac2/cookies need.
 * - HMAC-BLAKE2s is built from the addon's BLAKE2s (RFC 2104, 64-byte blocks).
 * - X25519 runs libsodium's implementation in the addon: faster than OpenSSL's
 *   EVP X25519 even with its key objects and contexts reused (the benchmark runs
 *   both), and far faster than node:crypto (a DER-wrapped KeyObject per peer key).
 * - The handshake messages themselves are built and checked by whole native steps
 *   (noise.ts calls them): this file's dh, aeadSeal and aeadOpen serve the tests,
 *   cookies and the static-static precomputation.
 * - ChaCha20-Poly1305 here uses node:crypto; XChaCha20-Poly1305 (cookie replies) the
 *   addon, since OpenSSL exposes no HChaCha20.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { native } from '../native/binding.js';

export const KEY_LEN = 32;
const BLOCK = 64;

export function hash(...parts: Buffer[]): Buffer {
  return native.blake2s(32, parts.length === 1 ? parts[0]! : Buffer.concat(parts));
}

export function mac(key: Buffer, data: Buffer): Buffer {
  return native.blake2s(16, data, key);
}

export function hmac(key: Buffer, data: Buffer): Buffer {
  let k = key.length > BLOCK ? hash(key) : key;
  const block = Buffer.alloc(BLOCK);
  k.copy(block);
  const ipad = Buffer.alloc(BLOCK);
  const opad = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i++) {
    ipad[i] = block[i]! ^ 0x36;
    opad[i] = block[i]! ^ 0x5c;
  }
  k = Buffer.alloc(0);
  return hash(opad, hash(ipad, data));
}

/**
 * HKDF as WireGuard uses it: n (1..3) 32-byte outputs, HMAC-BLAKE2s chained as in
 * the whitepaper (§5.4). One call into the addon (native/src/crypto/noise.cc);
 * `hmac` above is the same construction in TypeScript, which the tests compare.
 */
export function kdf(n: 1 | 2 | 3, chainKey: Buffer, input: Buffer): Buffer[] {
  const out = native.noiseKdf(n, chainKey, input);
  const keys: Buffer[] = [];
  for (let i = 0; i < n; i++) keys.push(out.subarray(32 * i, 32 * i + 32));
  return keys;
}

export function publicFromPrivate(raw: Buffer): Buffer {
  const pub = native.x25519Public(raw);
  // assertion: the addon refuses only a key of the wrong length; callers pass 32 bytes (keys.ts, agent key file check)
  if (!pub) throw new Error('invalid X25519 private key');
  return pub;
}

/** A fresh private key, clamped as `wg genkey` does. */
export function generatePrivateKey(): Buffer {
  const k = randomBytes(32);
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k;
}

/** A handshake's ephemeral key pair (the native steps generate them). */
export interface EphemeralKey {
  privateKey: Buffer;
  publicKey: Buffer;
}

/**
 * X25519. Returns null for a low-order peer key (an all-zero shared secret,
 * which libsodium refuses): the caller rejects the handshake.
 */
export function dh(privateKey: Buffer, peerPublic: Buffer): Buffer | null {
  return native.x25519(privateKey, peerPublic);
}

const ZERO_NONCE = Buffer.alloc(12);

function nonceFor(counter: bigint): Buffer {
  if (counter === 0n) return ZERO_NONCE;
  const n = Buffer.alloc(12);
  n.writeBigUInt64LE(counter, 4);
  return n;
}

export function aeadSeal(key: Buffer, counter: bigint, plaintext: Buffer, aad: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonceFor(counter), { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  c.final();
  return Buffer.concat([body, c.getAuthTag()]);
}

export function aeadOpen(key: Buffer, counter: bigint, ciphertext: Buffer, aad: Buffer): Buffer | null {
  if (ciphertext.length < 16) return null;
  try {
    const d = createDecipheriv('chacha20-poly1305', key, nonceFor(counter), { authTagLength: 16 });
    d.setAAD(aad, { plaintextLength: ciphertext.length - 16 });
    d.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
    const body = d.update(ciphertext.subarray(0, ciphertext.length - 16));
    d.final();
    return body;
  } catch {
    return null;
  }
}

export function xaeadSeal(key: Buffer, nonce24: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const out = native.aead(true, true, key, nonce24, plaintext, aad);
  // assertion: sealing fails only on wrong key or nonce lengths, which callers fix
  if (!out) throw new Error('xchacha20-poly1305 seal failed');
  return out;
}

export function xaeadOpen(key: Buffer, nonce24: Buffer, ciphertext: Buffer, aad: Buffer): Buffer | null {
  return native.aead(false, true, key, nonce24, ciphertext, aad);
}

/** Constant-time equality for MACs and keys. */
export function equal(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function isZero(b: Buffer): boolean {
  let d = 0;
  for (let i = 0; i < b.length; i++) d |= b[i]!;
  return d === 0;
}
