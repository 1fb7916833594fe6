/**
 * The handshake's primitives (whitepaper §5.4): HASH, MAC, HMAC, KDF, DH, AEAD.
 *
 * Choices, by measurement (bench/handshake.ts prints the figures):
 * - BLAKE2s runs in our addon (plain and keyed). Node's `blake2s256` has no key
 *   input and no 16-byte output, which mac1/mac2/cookies need.
 * - HMAC-BLAKE2s is built from the addon's BLAKE2s (RFC 2104, 64-byte blocks).
 * - X25519 runs OpenSSL's implementation with raw keys through the addon: about
 *   2x node:crypto's diffieHellman (which must wrap every peer key in DER and a
 *   KeyObject) and 9x tweetnacl's pure-JS scalarMult on this machine.
 * - ChaCha20-Poly1305 uses node:crypto; XChaCha20-Poly1305 (cookie replies) the
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

/** HKDF as WireGuard uses it: up to three 32-byte outputs. */
export function kdf(n: 1 | 2 | 3, chainKey: Buffer, input: Buffer): Buffer[] {
  const prk = hmac(chainKey, input);
  const out: Buffer[] = [];
  let prev: Buffer = Buffer.alloc(0);
  for (let i = 1; i <= n; i++) {
    prev = hmac(prk, Buffer.concat([prev, Buffer.from([i])]));
    out.push(prev);
  }
  prk.fill(0);
  return out;
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

export interface EphemeralKey {
  privateKey: Buffer;
  publicKey: Buffer;
}

export function generateEphemeral(): EphemeralKey {
  const privateKey = generatePrivateKey();
  return { privateKey, publicKey: publicFromPrivate(privateKey) };
}

/**
 * X25519. Returns null for a low-order peer key (an all-zero shared secret,
 * which OpenSSL refuses): the caller rejects the handshake.
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
