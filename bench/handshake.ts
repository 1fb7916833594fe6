/**
 * Handshake cost on one core, and the X25519 choice behind it.
 *
 * 1. The anchor, in the same run: `openssl speed ecdhx25519` (the system OpenSSL's own
 *    X25519 figure, CPU user time) and the per-side ceiling it implies: one side of a
 *    Noise_IKpsk2 handshake does 4 scalar multiplications (3 with a peer key, 1 fixed-base
 *    for its ephemeral; the static-static one is precomputed per peer).
 *    The ephemeral's fixed-base one runs libsodium's Ed25519 comb and the Edwards -> Montgomery
 *    map (x25519_public_comb), timed beside crypto_scalarmult_base.
 * 2. X25519 implementations available to the addon, measured natively (no JS crossing,
 *    thread CPU time): libsodium (what the addon uses), OpenSSL EVP with contexts reused,
 *    OpenSSL EVP with fresh key objects per call (the addon before), nettle (when installed), and, through JS,
 *    node:crypto and tweetnacl for scale.
 * 3. Handshakes per side on one core, as shipped (src/wireguard/noise.ts + cookie macs):
 *    initiator = create initiation + consume response + derive keys; responder = consume
 *    initiation + create response + derive keys; each side timed alone over a batch of
 *    peers (CPU time of the JS thread, of the whole process, and wall time), and beside it
 *    the same steps natively with no JavaScript, interleaved round by round, and OpenSSL's EVP X25519
 *    interleaved too (the anchor at the same moments: this machine's speed drifts within a run).
 *
 * Writes bench/results/handshake.json. Goal: ≥ 5,000 handshakes/s per side.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, diffieHellman, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { native } from '../src/native/binding.js';
import { testhooks } from '../src/native/testhooks.js';
import { ROOT } from '../src/testbed/netns.js';
import { CookieGenerator } from '../src/wireguard/cookie.js';
import { generatePrivateKey, publicFromPrivate } from '../src/wireguard/crypto.js';
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSession,
  Handshake,
  StaticIdentity,
} from '../src/wireguard/noise.js';

const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Operations per CPU second of fn, run for about minMs of wall time. */
function jsRate(fn: () => void, minMs = 800): number {
  for (let i = 0; i < 20; i++) fn();
  let n = 0;
  const wall = Date.now();
  const cpu = cpuSeconds();
  while (Date.now() - wall < minMs) {
    for (let i = 0; i < 10; i++) fn();
    n += 10;
  }
  return n / (cpuSeconds() - cpu);
}

/** `openssl speed ecdhx25519`: X25519 derives per CPU (user) second, or null without the CLI. */
function opensslSpeed(seconds: number): number | null {
  try {
    const out = execFileSync('openssl', ['speed', '-seconds', String(seconds), 'ecdhx25519'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: (seconds + 20) * 1000,
    });
    const line = out.split('\n').find((l) => l.includes('ecdh (X25519)'));
    const v = line ? Number(line.trim().split(/\s+/).pop()) : NaN;
    return Number.isFinite(v) && v > 0 ? v : null;
  } catch {
    return null;
  }
}

const fmt = (perSec: number): string => `${perSec.toFixed(0).padStart(8)} /s ${(1e6 / perSec).toFixed(1).padStart(8)} µs`;

function x25519Section(): Record<string, number> {
  const native5 = ['libsodium', 'libsodium-base', 'libsodium-comb', 'openssl-reuse', 'openssl-keygen', 'openssl-fresh', 'nettle'] as const;
  const labels: Record<(typeof native5)[number], string> = {
    libsodium: 'libsodium crypto_scalarmult (the addon)',
    'libsodium-base': 'libsodium crypto_scalarmult_base',
    'libsodium-comb': 'Ed25519 comb + Edwards->Montgomery map (ephemerals)',
    'openssl-reuse': 'OpenSSL EVP derive, key object + context reused',
    'openssl-keygen': 'OpenSSL EVP keygen, context reused',
    'openssl-fresh': 'OpenSSL EVP, key objects built per call (before)',
    nettle: 'nettle curve25519_mul (libhogweed6, x86-64 asm field)',
  };
  const out: Record<string, number> = {};
  console.log('\nX25519 in the addon, measured natively (thread CPU time, best of 3 rounds):');
  for (const impl of native5) {
    let best = Infinity;
    for (let round = 0; round < 3; round++) best = Math.min(best, testhooks.x25519Cost(impl, 1500) ?? Infinity);
    if (best === Infinity) {
      console.log(`  ${labels[impl].padEnd(54)} not installed`);
      continue;
    }
    out[impl] = 1 / best;
    console.log(`  ${labels[impl].padEnd(54)} ${fmt(out[impl]!)}`);
  }
  const sk = generatePrivateKey();
  const pk = publicFromPrivate(randomBytes(32));
  console.log('X25519 called from JavaScript (process CPU time):');
  out['addon-from-js'] = jsRate(() => native.x25519(sk, pk));
  console.log(`  ${'native.x25519 (libsodium, one crossing)'.padEnd(54)} ${fmt(out['addon-from-js']!)}`);
  // node:crypto needs KeyObjects: raw keys are wrapped in DER (RFC 8410) first.
  const skObj = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), sk]), format: 'der', type: 'pkcs8' });
  const spki = Buffer.from('302a300506032b656e032100', 'hex');
  out['node-crypto'] = jsRate(() =>
    diffieHellman({ privateKey: skObj, publicKey: createPublicKey({ key: Buffer.concat([spki, pk]), format: 'der', type: 'spki' }) }));
  console.log(`  ${'node:crypto diffieHellman (peer key wrapped per call)'.padEnd(54)} ${fmt(out['node-crypto']!)}`);
  out.tweetnacl = jsRate(() => nacl.scalarMult(sk, pk), 400);
  console.log(`  ${'tweetnacl scalarMult (pure JS)'.padEnd(54)} ${fmt(out.tweetnacl)}`);
  return out;
}

interface SideRates {
  /** per CPU second of the JS thread (the per-core figure) */
  initiatorCpu: number;
  responderCpu: number;
  /** per CPU second of the whole process (adds V8's and libuv's helper threads, e.g. the collector) */
  initiatorProcessCpu: number;
  responderProcessCpu: number;
  initiatorWall: number;
  responderWall: number;
  /** the native steps alone, interleaved with the rounds above (per thread CPU second) */
  nativeInitiator: number;
  nativeResponder: number;
  /**
   * OpenSSL's EVP X25519 (our key and derive context reused, the peer's key object built per call as for a
   * handshake's fresh peer keys: a little slower than `openssl speed`), run in process between the rounds
   * (per thread CPU second): the anchor taken at the same moments as the handshakes, since this shared
   * machine's speed drifts within one run.
   */
  anchorInterleaved: number;
}

/**
 * Runs `rounds` rounds of a complete handshake with each of `peers` initiators against one
 * responder (peers found by static key, as the device does), timing each side's work alone.
 */
function handshakeSection(peers: number, rounds: number): SideRates {
  const b = new StaticIdentity(generatePrivateKey());
  const byKey = new Map<string, Handshake>();
  const pairs = Array.from({ length: peers }, () => {
    const a = new StaticIdentity(generatePrivateKey());
    const aSeesB = new Handshake(a, b.publicKey); // static-static DH precomputed here, once per peer
    const bSeesA = new Handshake(b, a.publicKey);
    byKey.set(a.publicKey.toString('hex'), bSeesA);
    return { a, aSeesB, bSeesA, macsToB: new CookieGenerator(b.publicKey, () => 0), macsToA: new CookieGenerator(a.publicKey, () => 0) };
  });
  const find = (k: Buffer): Handshake | undefined => byKey.get(k.toString('hex'));
  const t = { initCpu: 0, respCpu: 0, initProc: 0, respProc: 0, initWall: 0, respWall: 0, nativeInit: 0, nativeResp: 0, anchor: 0 };
  const clock = () => [testhooks.threadCpuSeconds(), cpuSeconds(), Number(process.hrtime.bigint()) / 1e9] as const;
  const add = (start: readonly [number, number, number], side: 'init' | 'resp') => {
    const [c, p, w] = clock();
    t[`${side}Cpu`] += c - start[0];
    t[`${side}Proc`] += p - start[1];
    t[`${side}Wall`] += w - start[2];
  };
  for (let round = 0; round < rounds + 1; round++) {
    const warm = round === 0;
    const nowMs = 1000 * (round + 1);
    let s = clock();
    const inits = pairs.map((p, i) => createInitiation(p.a, p.aSeesB, i + 1, 1_700_000_000_000 + nowMs, p.macsToB));
    if (!warm) add(s, 'init');
    s = clock();
    const resps = inits.map((msg, i) => {
      const hs = consumeInitiation(b, msg, find, nowMs);
      const resp = createResponse(hs, 1_000_000 + i, pairs[i]!.macsToA);
      deriveSession(hs);
      return resp;
    });
    if (!warm) add(s, 'resp');
    s = clock();
    resps.forEach((msg, i) => {
      consumeResponse(pairs[i]!.a, pairs[i]!.aSeesB, msg);
      deriveSession(pairs[i]!.aSeesB);
    });
    if (!warm) add(s, 'init');
    const floor = testhooks.noiseStepsCost(peers);
    t.nativeInit += floor.initiator * peers;
    t.nativeResp += floor.responder * peers;
    t.anchor += testhooks.x25519Cost('openssl-reuse', 4 * peers)! * 4 * peers;
  }
  const n = peers * rounds;
  return {
    initiatorCpu: n / t.initCpu,
    responderCpu: n / t.respCpu,
    initiatorProcessCpu: n / t.initProc,
    responderProcessCpu: n / t.respProc,
    initiatorWall: n / t.initWall,
    responderWall: n / t.respWall,
    nativeInitiator: (n + peers) / t.nativeInit,
    nativeResponder: (n + peers) / t.nativeResp,
    anchorInterleaved: (4 * (n + peers)) / t.anchor,
  };
}

function main(): void {
  console.log('Anchor: openssl speed -seconds 3 ecdhx25519 (system OpenSSL, CPU user time) ...');
  const anchor = opensslSpeed(3);
  const ceiling = anchor ? anchor / 4 : null;
  console.log(anchor
    ? `  OpenSSL X25519 ${fmt(anchor)}  => per-side ceiling at OpenSSL's speed (4 scalar mults): ${ceiling!.toFixed(0)} handshakes/s`
    : '  openssl CLI not available: no anchor in this run');
  const x = x25519Section();
  const sides = handshakeSection(100, 15);
  console.log('\nNoise_IKpsk2 handshakes per side, one core (100 peers × 15 rounds, macs and key derivation included):');
  const row = (label: string, cpu: number, proc: number, wall: number, nat: number) =>
    console.log(`  ${label} ${cpu.toFixed(0).padStart(6)} /s thread CPU, ${proc.toFixed(0).padStart(6)} /s process CPU, ${wall.toFixed(0).padStart(6)} /s wall; native steps alone ${nat.toFixed(0).padStart(6)} /s`);
  row('initiator (create initiation + consume response):', sides.initiatorCpu, sides.initiatorProcessCpu, sides.initiatorWall, sides.nativeInitiator);
  row('responder (consume initiation + create response):', sides.responderCpu, sides.responderProcessCpu, sides.responderWall, sides.nativeResponder);
  const perSideMs = (r: number) => 1e6 / r;
  const x25519Us = 1e6 / x.libsodium!;
  console.log(`  per side: ${perSideMs(sides.initiatorCpu).toFixed(0)} / ${perSideMs(sides.responderCpu).toFixed(0)} µs, of which 4 X25519 at libsodium's ${x25519Us.toFixed(1)} µs ≈ ${(3 * x25519Us + 1e6 / x['libsodium-comb']!).toFixed(0)} µs (3 with a peer key + 1 fixed-base by the comb)`);
  if (ceiling) {
    console.log(`  ratio to the OpenSSL per-side ceiling: initiator ${(sides.initiatorCpu / ceiling).toFixed(2)}, responder ${(sides.responderCpu / ceiling).toFixed(2)}`);
  }
  const ceilingNow = sides.anchorInterleaved / 4;
  console.log(`  anchor interleaved with the rounds (OpenSSL EVP X25519 in process): ${fmt(sides.anchorInterleaved)} => ceiling ${ceilingNow.toFixed(0)}/s; ratio initiator ${(sides.initiatorCpu / ceilingNow).toFixed(2)}, responder ${(sides.responderCpu / ceilingNow).toFixed(2)}`);
  console.log(`  libsodium vs OpenSSL EVP (contexts reused): ${(x.libsodium! / x['openssl-reuse']!).toFixed(2)}x; vs the addon before (fresh key objects): ${(x.libsodium! / x['openssl-fresh']!).toFixed(2)}x${x.nettle ? `; vs nettle: ${(x.libsodium! / x.nettle).toFixed(2)}x` : ''}`);
  console.log(`  goal ≥ 5,000/s per side: ${Math.min(sides.initiatorCpu, sides.responderCpu) >= 5000 ? 'met' : 'NOT met'} (JS thread CPU time)`);
  const report = {
    date: new Date().toISOString(),
    anchor: { opensslSpeedX25519PerSec: anchor, perSideCeilingHandshakesPerSec: ceiling },
    x25519PerCpuSec: x,
    handshakesPerSec: sides,
    ratioToCeiling: ceiling ? { initiator: sides.initiatorCpu / ceiling, responder: sides.responderCpu / ceiling } : null,
    ratioToInterleavedCeiling: { initiator: (4 * sides.initiatorCpu) / sides.anchorInterleaved, responder: (4 * sides.responderCpu) / sides.anchorInterleaved },
    goalPerSide: 5000,
  };
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'handshake.json'), JSON.stringify(report, null, 2) + '\n');
}

main();
