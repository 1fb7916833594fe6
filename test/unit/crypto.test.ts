import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding.js';
import { testhooks } from '../../src/native/testhooks.js';
import {
  aeadOpen,
  aeadSeal,
  dh,
  hash,
  hmac,
  kdf,
  mac,
  publicFromPrivate,
  xaeadOpen,
  xaeadSeal,
} from '../../src/wireguard/crypto.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const seq = (from: number, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => from + i));
const SUNSCREEN = Buffer.from(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
);

describe('BLAKE2s', () => {
  it('matches RFC 7693 appendix B ("abc")', () => {
    expect(hash(Buffer.from('abc')).toString('hex')).toBe('508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  });
  it('matches the keyed BLAKE2s KAT (key 00..1f, empty input and 00..3f)', () => {
    const key = seq(0, 32);
    expect(native.blake2s(32, Buffer.alloc(0), key).toString('hex')).toBe(
      '48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49',
    );
    expect(native.blake2s(32, seq(0, 64), key).toString('hex')).toBe(
      '8975b0577fd35566d750b362b0897a26c399136df07bababbde6203ff2954ed4',
    );
  });
  it('agrees with OpenSSL over lengths around the block size', () => {
    for (const n of [0, 1, 63, 64, 65, 127, 128, 129, 1000]) {
      const data = Buffer.alloc(n, n & 0xff);
      expect(hash(data).equals(createHash('blake2s256').update(data).digest())).toBe(true);
    }
  });
  it('MAC is keyed BLAKE2s with a 16-byte output', () => {
    const m = mac(seq(0, 32), Buffer.from('x'));
    expect(m.length).toBe(16);
    expect(m.equals(native.blake2s(16, Buffer.from('x'), seq(0, 32)))).toBe(true);
  });
});

describe('HMAC-BLAKE2s and HKDF', () => {
  it('HMAC equals OpenSSL HMAC over blake2s256', () => {
    for (const [k, d] of [[seq(1, 32), Buffer.from('hello')], [Buffer.alloc(0), Buffer.alloc(0)], [seq(0, 80), seq(3, 200)]] as const) {
      expect(hmac(k, d).equals(createHmac('blake2s256', k).update(d).digest())).toBe(true);
    }
  });
  it('KDF chains HMAC as in the whitepaper', () => {
    const ck = seq(7, 32);
    const input = Buffer.from('input');
    const [t1, t2, t3] = kdf(3, ck, input);
    const prk = createHmac('blake2s256', ck).update(input).digest();
    const e1 = createHmac('blake2s256', prk).update(Buffer.from([1])).digest();
    const e2 = createHmac('blake2s256', prk).update(Buffer.concat([e1, Buffer.from([2])])).digest();
    const e3 = createHmac('blake2s256', prk).update(Buffer.concat([e2, Buffer.from([3])])).digest();
    expect([t1!.equals(e1), t2!.equals(e2), t3!.equals(e3)]).toEqual([true, true, true]);
  });
});

describe('X25519 (libsodium in the addon) against RFC 7748', () => {
  const alicePriv = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const alicePub = hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  const bobPriv = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
  const bobPub = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  it('§6.1: derives both public keys', () => {
    expect(publicFromPrivate(alicePriv).equals(alicePub)).toBe(true);
    expect(publicFromPrivate(bobPriv).equals(bobPub)).toBe(true);
  });
  it('§6.1: both sides agree on the shared secret', () => {
    expect(dh(alicePriv, bobPub)!.toString('hex')).toBe(shared);
    expect(dh(bobPriv, alicePub)!.toString('hex')).toBe(shared);
  });
  it('§5.2: the two single-multiplication vectors (the second u has its top bit set, which is masked)', () => {
    expect(dh(hex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'),
      hex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c'))!.toString('hex'))
      .toBe('c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552');
    expect(dh(hex('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d'),
      hex('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493'))!.toString('hex'))
      .toBe('95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957');
  });
  it('§5.2: the iterated vector after 1 and 1,000 iterations', () => {
    let k: Buffer = Buffer.alloc(32);
    k[0] = 9;
    let u: Buffer = Buffer.from(k);
    const after: Record<number, string> = {};
    for (let i = 1; i <= 1000; i++) {
      const r = dh(k, u)!;
      u = k;
      k = r;
      if (i === 1 || i === 1000) after[i] = k.toString('hex');
    }
    expect(after).toEqual({
      1: '422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079',
      1000: '684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51',
    });
  });
  it('refuses every low-order point (all-zero shared secret), as WireGuard requires', () => {
    // u = 0, 1, the two points of order 8, p − 1, p, p + 1, and the same with the (masked) top bit set
    const lowOrder = [
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0100000000000000000000000000000000000000000000000000000000000000',
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    ];
    const withTopBit = lowOrder.map((h) => { const b = hex(h); b[31]! |= 0x80; return b.toString('hex'); });
    for (const u of [...lowOrder, ...withTopBit]) {
      expect(dh(alicePriv, hex(u)), u).toBeNull();
      expect(native.x25519(bobPriv, hex(u)), u).toBeNull();
    }
  });
});

describe('X25519 fixed-base by the Ed25519 comb (the handshake ephemerals) equals crypto_scalarmult_base', () => {
  it('RFC 7748 §6.1: both public keys', () => {
    expect(testhooks.x25519PublicComb(hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'))!.toString('hex'))
      .toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(testhooks.x25519PublicComb(hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'))!.toString('hex'))
      .toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  });
  it('the same bytes as libsodium crypto_scalarmult_base on 5,000 seeded keys (clamped or not) and edge scalars', () => {
    // keys from a SHA-256 chain (seeded: a failure names the key that reproduces it)
    let seed = createHash('sha256').update('x25519-comb').digest();
    const keys: Buffer[] = [Buffer.alloc(32), Buffer.alloc(32, 0xff), hex('08' + '00'.repeat(30) + '40')];
    for (let i = 0; i < 5000; i++) {
      seed = createHash('sha256').update(seed).digest();
      keys.push(Buffer.from(seed));
    }
    const bad = keys.filter((k) => !testhooks.x25519PublicComb(k)!.equals(native.x25519Public(k)!)).map((k) => k.toString('hex'));
    expect(bad).toEqual([]);
  });
});

describe('ChaCha20-Poly1305 (RFC 8439 §2.8.2)', () => {
  const key = seq(0x80, 32);
  const nonce = hex('070000004041424344454647');
  const aad = hex('50515253c0c1c2c3c4c5c6c7');
  const ct = hex(`d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b
    1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de
    576d26586cec64b6116`);
  const tag = hex('1ae10b594f09e26a7e902ecbd0600691');
  it('native (OpenSSL EVP via the addon) seals and opens the vector', () => {
    const sealed = native.aead(true, false, key, nonce, SUNSCREEN, aad)!;
    expect(sealed.equals(Buffer.concat([ct, tag]))).toBe(true);
    expect(native.aead(false, false, key, nonce, sealed, aad)!.equals(SUNSCREEN)).toBe(true);
    const bad = Buffer.from(sealed);
    bad[5]! ^= 1;
    expect(native.aead(false, false, key, nonce, bad, aad)).toBeNull();
  });
  it('node:crypto path used by the handshake agrees with the native path', () => {
    // The handshake nonce is 4 zero bytes + LE counter; build the RFC nonce as a counter is impossible,
    // so check agreement on WireGuard-style nonces instead.
    const counter = 0x0102030405060708n;
    const n12 = Buffer.alloc(12);
    n12.writeBigUInt64LE(counter, 4);
    const a = aeadSeal(key, counter, SUNSCREEN, aad);
    expect(a.equals(native.aead(true, false, key, n12, SUNSCREEN, aad)!)).toBe(true);
    expect(aeadOpen(key, counter, a, aad)!.equals(SUNSCREEN)).toBe(true);
    expect(aeadOpen(key, counter + 1n, a, aad)).toBeNull();
  });
});

describe('XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03)', () => {
  it('HChaCha20 matches §2.2.1', () => {
    const out = testhooks.hchacha20(seq(0, 32), hex('000000090000004a0000000031415927'));
    expect(out.toString('hex')).toBe('82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc');
  });
  it('AEAD matches appendix A.3.1', () => {
    const key = seq(0x80, 32);
    const nonce = hex('404142434445464748494a4b4c4d4e4f5051525354555657');
    const aad = hex('50515253c0c1c2c3c4c5c6c7');
    const ct = hex(`bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae
      64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da976
      8812f615c68b13b52e`);
    const tag = hex('c0875924c1c7987947deafd8780acf49');
    const sealed = xaeadSeal(key, nonce, SUNSCREEN, aad);
    expect(sealed.equals(Buffer.concat([ct, tag]))).toBe(true);
    expect(xaeadOpen(key, nonce, sealed, aad)!.equals(SUNSCREEN)).toBe(true);
    expect(xaeadOpen(key, nonce, sealed, Buffer.from('other'))).toBeNull();
  });
});
