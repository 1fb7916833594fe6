/**
 * Handshake cost on one core, and the X25519 choice behind it.
 *
 * Measures X25519 through tweetnacl (pure JS) and through node:crypto (OpenSSL),
 * then full Noise_IKpsk2 handshakes with the implementation we ship (initiator
 * and responder sides separately). Requirement: 10,000 peers rekeying every
 * 120 s is 83 handshakes/s per side.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { ROOT } from '../src/testbed/netns.js';
import { native } from '../src/native/binding.js';
import { createPrivateKey, createPublicKey, diffieHellman } from 'node:crypto';
import { generatePrivateKey, publicFromPrivate } from '../src/wireguard/crypto.js';
import { CookieGenerator } from '../src/wireguard/cookie.js';
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSession,
  Handshake,
  StaticIdentity,
} from '../src/wireguard/noise.js';

function rate(label: string, fn: () => void, minMs = 1500): number {
  for (let i = 0; i < 20; i++) fn(); // warm up
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < minMs) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  const perSec = (n / elapsed) * 1000;
  console.log(`${label.padEnd(52)} ${perSec.toFixed(0).padStart(9)} /s  ${((1e6 / perSec)).toFixed(1).padStart(8)} µs`);
  return perSec;
}

function main(): void {
  console.log('X25519 (one core):');
  const sk = generatePrivateKey();
  const pk = publicFromPrivate(randomBytes(32));
  const naclRate = rate('  tweetnacl scalarMult', () => nacl.scalarMult(sk, pk));
  // node:crypto needs KeyObjects: raw keys are wrapped in DER (RFC 8410) first.
  const skObj = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), sk]), format: 'der', type: 'pkcs8' });
  const spki = Buffer.from('302a300506032b656e032100', 'hex');
  const nodeRate = rate('  node:crypto diffieHellman (peer key wrapped per call)', () =>
    diffieHellman({ privateKey: skObj, publicKey: createPublicKey({ key: Buffer.concat([spki, pk]), format: 'der', type: 'spki' }) }));
  const nativeRate = rate('  OpenSSL raw keys through the addon', () => native.x25519(sk, pk));

  console.log('\nNoise_IKpsk2 handshake, as shipped (one core):');
  const a = new StaticIdentity(generatePrivateKey());
  const b = new StaticIdentity(generatePrivateKey());
  const aSeesB = new Handshake(a, b.publicKey);
  const bSeesA = new Handshake(b, a.publicKey);
  const cookieA = new CookieGenerator(b.publicKey, () => 0);
  const cookieB = new CookieGenerator(a.publicKey, () => 0);
  let now = 0;
  // Prepared messages so each side is timed alone.
  const both = rate('  one handshake, both sides (4 messages, 8 DH ops)', () => {
    const init = cookieA.addMacs(createInitiation(a, aSeesB, 1, 1_700_000_000_000 + now));
    now += 1000;
    consumeInitiation(b, init, () => bSeesA, now);
    const resp = cookieB.addMacs(createResponse(bSeesA, 2));
    deriveSession(bSeesA);
    consumeResponse(a, aSeesB, resp);
    deriveSession(aSeesB);
  });
  const perSide = both * 2;
  console.log(`\n  full handshakes end to end (both sides in this thread): ${both.toFixed(0)}/s`);
  console.log(`  => one side sustains about ${perSide.toFixed(0)} handshakes/s; 10,000 peers rekeying every 120 s need 83/s`);
  const report = {
    date: new Date().toISOString(),
    x25519PerSec: { tweetnacl: naclRate, nodeCrypto: nodeRate, opensslRawNative: nativeRate },
    handshakesPerSecEndToEnd: both,
    handshakesPerSecOneSideEstimate: perSide,
    requiredFor10kPeers: 10_000 / 120,
  };
  console.log(`\nX25519 vs tweetnacl: node:crypto ${(nodeRate / naclRate).toFixed(1)}x, OpenSSL raw via the addon ${(nativeRate / naclRate).toFixed(1)}x.`);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'handshake.json'), JSON.stringify(report, null, 2) + '\n');
}

main();
