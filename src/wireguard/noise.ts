/**
 * Noise_IKpsk2 handshake state machine (whitepaper §5.4.2–5.4.4), both roles.
 *
 * Pure protocol logic: no sockets, no timers, no native device. The device
 * (device.ts) feeds it messages and installs the keys it derives; the unit tests
 * run two of these against each other in memory.
 */
import { HandshakeError } from '../errors.js';
import {
  aeadOpen,
  aeadSeal,
  dh,
  generateEphemeral,
  hash,
  isZero,
  kdf,
  publicFromPrivate,
  type EphemeralKey,
} from './crypto.js';
import { tai64n, tai64nAfter, TAI64N_LEN } from './tai64n.js';

export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_TRANSPORT = 4;
export const INITIATION_SIZE = 148;
export const RESPONSE_SIZE = 92;
export const COOKIE_REPLY_SIZE = 64;
/** At most one initiation per peer is consumed in this window (flood guard). */
export const HANDSHAKE_INITIATION_RATE_MS = 20;

const INITIAL_CHAIN_KEY = hash(Buffer.from(CONSTRUCTION));
const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, Buffer.from(IDENTIFIER));
const EMPTY = Buffer.alloc(0);

/** Our static key pair, with what every handshake derives from it. */
export class StaticIdentity {
  readonly privateKey: Buffer;
  readonly publicKey: Buffer;
  /** HASH(InitialHash || our public key): the responder's starting hash. */
  readonly responderHash: Buffer;
  constructor(privateKey: Buffer) {
    this.privateKey = Buffer.from(privateKey);
    this.publicKey = publicFromPrivate(this.privateKey);
    this.responderHash = hash(INITIAL_HASH, this.publicKey);
  }
}

export type HandshakeStateName =
  | 'zeroed'
  | 'initiation-created'
  | 'initiation-consumed'
  | 'response-created'
  | 'response-consumed';

/** A peer's handshake state; one per peer. */
export class Handshake {
  state: HandshakeStateName = 'zeroed';
  hash: Buffer = EMPTY;
  chainKey: Buffer = EMPTY;
  localEphemeral: EphemeralKey | null = null;
  remoteEphemeral: Buffer = EMPTY;
  localIndex = 0;
  remoteIndex = 0;
  /** Greatest TAI64N timestamp accepted from this peer (replay protection). */
  lastTimestamp: Buffer = Buffer.alloc(TAI64N_LEN);
  /** Monotonic ms of the last consumed initiation, or -Infinity. */
  lastInitiationConsumedMs = -Infinity;
  readonly remoteStatic: Buffer;
  readonly remoteStaticHash: Buffer;
  presharedKey: Buffer;
  /** DH(our static, their static); null when their key is of low order. */
  precomputedStaticStatic: Buffer | null;

  constructor(local: StaticIdentity, remoteStatic: Buffer, presharedKey: Buffer = Buffer.alloc(32)) {
    this.remoteStatic = Buffer.from(remoteStatic);
    this.remoteStaticHash = hash(INITIAL_HASH, this.remoteStatic);
    this.presharedKey = Buffer.from(presharedKey);
    this.precomputedStaticStatic = dh(local.privateKey, this.remoteStatic);
  }

  /** Forgets all ephemeral state (keeps the replay and flood guards). */
  clear(): void {
    this.state = 'zeroed';
    this.hash.fill(0);
    this.chainKey.fill(0);
    this.hash = EMPTY;
    this.chainKey = EMPTY;
    this.localEphemeral = null;
    this.remoteEphemeral = EMPTY;
    this.localIndex = 0;
    this.remoteIndex = 0;
  }
}

export interface SessionKeys {
  send: Buffer;
  recv: Buffer;
  localIndex: number;
  remoteIndex: number;
  initiator: boolean;
}

/**
 * Builds an initiation (without mac1/mac2, which cookie.ts adds over the final
 * bytes). `nowEpochMs` feeds the TAI64N timestamp.
 */
export function createInitiation(
  local: StaticIdentity,
  hs: Handshake,
  localIndex: number,
  nowEpochMs: number = Date.now(),
): Buffer {
  if (!hs.precomputedStaticStatic) throw new HandshakeError('peer public key is of low order');
  const msg = Buffer.alloc(INITIATION_SIZE);
  msg.writeUInt32LE(MSG_INITIATION, 0);
  msg.writeUInt32LE(localIndex >>> 0, 4);
  let h = hs.remoteStaticHash;
  let ck = INITIAL_CHAIN_KEY;
  const e = generateEphemeral();
  e.publicKey.copy(msg, 8);
  [ck] = kdf(1, ck, e.publicKey) as [Buffer];
  h = hash(h, e.publicKey);
  const ee = dh(e.privateKey, hs.remoteStatic);
  if (!ee) throw new HandshakeError('peer public key is of low order');
  let k: Buffer;
  [ck, k] = kdf(2, ck, ee) as [Buffer, Buffer];
  const encStatic = aeadSeal(k, 0n, local.publicKey, h);
  encStatic.copy(msg, 40);
  h = hash(h, encStatic);
  [ck, k] = kdf(2, ck, hs.precomputedStaticStatic) as [Buffer, Buffer];
  const encTs = aeadSeal(k, 0n, tai64n(nowEpochMs), h);
  encTs.copy(msg, 88);
  h = hash(h, encTs);
  hs.hash = h;
  hs.chainKey = ck;
  hs.localEphemeral = e;
  hs.localIndex = localIndex >>> 0;
  hs.state = 'initiation-created';
  return msg;
}

/**
 * Decrypts an initiation far enough to learn who sent it. `findPeer` maps the
 * sender's static key to its handshake state; the message is then checked
 * against that peer's replay and flood guards and, if it passes, committed.
 */
export function consumeInitiation(
  local: StaticIdentity,
  msg: Buffer,
  findPeer: (staticKey: Buffer) => Handshake | undefined,
  nowMs: number,
): Handshake {
  if (msg.length !== INITIATION_SIZE || msg.readUInt32LE(0) !== MSG_INITIATION)
    throw new HandshakeError('not an initiation');
  const sender = msg.readUInt32LE(4);
  const ephemeral = msg.subarray(8, 40);
  const encStatic = msg.subarray(40, 88);
  const encTs = msg.subarray(88, 116);
  let h = local.responderHash;
  let ck = INITIAL_CHAIN_KEY;
  [ck] = kdf(1, ck, ephemeral) as [Buffer];
  h = hash(h, ephemeral);
  const es = dh(local.privateKey, ephemeral);
  if (!es) throw new HandshakeError('initiator ephemeral key is of low order');
  let k: Buffer;
  [ck, k] = kdf(2, ck, es) as [Buffer, Buffer];
  const peerStatic = aeadOpen(k, 0n, encStatic, h);
  if (!peerStatic) throw new HandshakeError('initiation static key does not decrypt');
  h = hash(h, encStatic);
  const hs = findPeer(peerStatic);
  if (!hs) throw new HandshakeError('initiation from an unknown peer');
  if (!hs.precomputedStaticStatic || isZero(hs.precomputedStaticStatic))
    throw new HandshakeError('peer public key is of low order');
  [ck, k] = kdf(2, ck, hs.precomputedStaticStatic) as [Buffer, Buffer];
  const ts = aeadOpen(k, 0n, encTs, h);
  if (!ts) throw new HandshakeError('initiation timestamp does not decrypt');
  h = hash(h, encTs);
  if (!tai64nAfter(ts, hs.lastTimestamp)) throw new HandshakeError('replayed initiation (timestamp not newer)');
  if (nowMs - hs.lastInitiationConsumedMs < HANDSHAKE_INITIATION_RATE_MS)
    throw new HandshakeError('initiation flood (less than 20 ms since the last one)');
  hs.hash = h;
  hs.chainKey = ck;
  hs.remoteIndex = sender;
  hs.remoteEphemeral = Buffer.from(ephemeral);
  hs.lastTimestamp = Buffer.from(ts);
  hs.lastInitiationConsumedMs = nowMs;
  hs.state = 'initiation-consumed';
  return hs;
}

/**
 * The key schedule both sides run over a response: mixes in the responder's
 * ephemeral key, the two DH results and the preshared key. Returns the AEAD key
 * for the response's empty payload, the hash it authenticates and the new
 * chain key.
 */
function responseSchedule(hs: Handshake, ephemeral: Buffer, ee: Buffer, se: Buffer) {
  let h = hash(hs.hash, ephemeral);
  let [ck] = kdf(1, hs.chainKey, ephemeral) as [Buffer];
  [ck] = kdf(1, ck, ee) as [Buffer];
  [ck] = kdf(1, ck, se) as [Buffer];
  const [chainKey, tau, key] = kdf(3, ck, hs.presharedKey) as [Buffer, Buffer, Buffer];
  h = hash(h, tau);
  return { hash: h, chainKey, key };
}

/** The responder's answer to a consumed initiation (without macs). */
export function createResponse(hs: Handshake, localIndex: number): Buffer {
  if (hs.state !== 'initiation-consumed') throw new HandshakeError('no initiation to respond to');
  const msg = Buffer.alloc(RESPONSE_SIZE);
  msg.writeUInt32LE(MSG_RESPONSE, 0);
  msg.writeUInt32LE(localIndex >>> 0, 4);
  msg.writeUInt32LE(hs.remoteIndex >>> 0, 8);
  const e = generateEphemeral();
  e.publicKey.copy(msg, 12);
  const ee = dh(e.privateKey, hs.remoteEphemeral);
  const se = dh(e.privateKey, hs.remoteStatic);
  if (!ee || !se) throw new HandshakeError('low-order key in response derivation');
  const sch = responseSchedule(hs, e.publicKey, ee, se);
  const empty = aeadSeal(sch.key, 0n, EMPTY, sch.hash);
  empty.copy(msg, 44);
  hs.hash = hash(sch.hash, empty);
  hs.chainKey = sch.chainKey;
  hs.localEphemeral = e;
  hs.localIndex = localIndex >>> 0;
  hs.state = 'response-created';
  return msg;
}

/** The initiator consumes the response addressed to `hs` (found by receiver index). */
export function consumeResponse(local: StaticIdentity, hs: Handshake, msg: Buffer): void {
  if (msg.length !== RESPONSE_SIZE || msg.readUInt32LE(0) !== MSG_RESPONSE)
    throw new HandshakeError('not a response');
  if (hs.state !== 'initiation-created' || !hs.localEphemeral)
    throw new HandshakeError('response without a pending initiation');
  if (msg.readUInt32LE(8) !== hs.localIndex) throw new HandshakeError('response to another initiation');
  const sender = msg.readUInt32LE(4);
  const ephemeral = msg.subarray(12, 44);
  const empty = msg.subarray(44, 60);
  const ee = dh(hs.localEphemeral.privateKey, ephemeral);
  const se = dh(local.privateKey, ephemeral);
  if (!ee || !se) throw new HandshakeError('responder ephemeral key is of low order');
  const sch = responseSchedule(hs, ephemeral, ee, se);
  if (!aeadOpen(sch.key, 0n, empty, sch.hash)) throw new HandshakeError('response does not authenticate');
  hs.hash = hash(sch.hash, empty);
  hs.chainKey = sch.chainKey;
  hs.remoteIndex = sender;
  hs.remoteEphemeral = Buffer.from(ephemeral);
  hs.state = 'response-consumed';
}

/**
 * Derives the transport keys once the handshake is complete for our role, and
 * wipes the handshake's secrets (forward secrecy: nothing left to re-derive them).
 */
export function deriveSession(hs: Handshake): SessionKeys {
  let initiator: boolean;
  if (hs.state === 'response-consumed') initiator = true;
  else if (hs.state === 'response-created') initiator = false;
  else throw new HandshakeError(`no session to derive in state ${hs.state}`);
  const [t1, t2] = kdf(2, hs.chainKey, EMPTY) as [Buffer, Buffer];
  const keys: SessionKeys = {
    send: initiator ? t1 : t2,
    recv: initiator ? t2 : t1,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
    initiator,
  };
  hs.clear();
  return keys;
}
