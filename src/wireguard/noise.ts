/**
 * Noise_IKpsk2 handshake state machine (whitepaper §5.4.2–5.4.4), both roles.
 *
 * Pure protocol logic: no sockets, no timers, no native device. The device
 * (device.ts) feeds it messages and installs the keys it derives; the unit tests
 * run two of these against each other in memory.
 */
import { HandshakeError } from '../errors.js';
import { native } from '../native/binding.js';
import { dh, hash, isZero, publicFromPrivate, type EphemeralKey } from './crypto.js';
import { tai64nAfter, tai64nNanos, tai64nSeconds, TAI64N_LEN } from './tai64n.js';
import { REKEY_TIMEOUT_MS } from './timers.js';

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
  /** Monotonic ms our pending initiation was sent (set by its sender, device.ts), or -Infinity. */
  initiatedAtMs = -Infinity;
  readonly remoteStatic: Buffer;
  readonly remoteStaticHash: Buffer;
  presharedKey: Buffer;
  /** DH(our static, their static); null when their key is of low order. */
  precomputedStaticStatic: Buffer | null;
  /**
   * h | ck | ephemeral private | transport keys τ1 | τ2 (once the last native step derived them):
   * `hash`, `chainKey` and `localEphemeral.privateKey` are views of it.
   */
  readonly secrets: Buffer = Buffer.alloc(160);

  /** `staticStatic`: DH(our static, their static) when already computed (a scratch state of the same peer). */
  constructor(local: StaticIdentity, remoteStatic: Buffer, presharedKey: Buffer = Buffer.alloc(32), staticStatic?: Buffer) {
    this.remoteStatic = Buffer.from(remoteStatic);
    this.remoteStaticHash = hash(INITIAL_HASH, this.remoteStatic);
    this.presharedKey = Buffer.from(presharedKey);
    this.precomputedStaticStatic = staticStatic ?? dh(local.privateKey, this.remoteStatic);
  }

  /**
   * Takes a native step's h | ck (and, from a step that made one, the ephemeral private key and
   * then the transport keys: up to 160 bytes) into this handshake's own buffer; `src` is the
   * step's scratch.
   */
  commit(src: Buffer): void {
    src.copy(this.secrets, 0, 0, Math.min(src.length, this.secrets.length));
    this.hash = this.secrets.subarray(0, 32);
    this.chainKey = this.secrets.subarray(32, 64);
  }

  /** Forgets all ephemeral state (keeps the replay and flood guards). */
  clear(): void {
    this.state = 'zeroed';
    this.secrets.fill(0);
    this.hash = EMPTY;
    this.chainKey = EMPTY;
    this.localEphemeral = null;
    this.remoteEphemeral = EMPTY;
    this.localIndex = 0;
    this.remoteIndex = 0;
    this.initiatedAtMs = -Infinity;
  }
}

/**
 * The cookie macs of the messages sent to one peer (cookie.ts's CookieGenerator): the create steps
 * write mac1/mac2 natively in the same call that builds the message.
 */
export interface MessageMacs {
  /** HASH(LABEL_MAC1 || the receiver's public key), 32 bytes. */
  readonly mac1Key: Buffer;
  /** The receiver's cookie (16 bytes) while fresh, else null (mac2 zero). */
  freshCookie(): Buffer | null;
  /** Told the whole message once it is built (a cookie reply is bound to its mac1). */
  sent(msg: Buffer): void;
}

export interface SessionKeys {
  send: Buffer;
  recv: Buffer;
  localIndex: number;
  remoteIndex: number;
  initiator: boolean;
}

/** Why a native handshake step refused its input (native/src/crypto/noise.h, enum Fail). */
const FAIL_LOW_ORDER = 1;
const FAIL_DECRYPT = 2;

/** Throws the HandshakeError a native step's failure code stands for; 0 passes. */
function check(code: number, lowOrder: string, decrypt: string): void {
  if (code === 0) return;
  throw new HandshakeError(code === FAIL_LOW_ORDER ? lowOrder : code === FAIL_DECRYPT ? decrypt : 'handshake computation failed');
}

/*
 * The native steps write into these (one JS thread; each is wiped after use). A consumed message
 * reaches a Handshake only once it has passed every check, so a forged or replayed message never
 * disturbs a handshake in progress.
 */
const OUT_INITIATION = Buffer.alloc(INITIATION_SIZE + 96);
const OUT_RESPONSE = Buffer.alloc(RESPONSE_SIZE + 160);
const OUT_STATIC = Buffer.alloc(96);
const OUT_TIMESTAMP = Buffer.alloc(64 + TAI64N_LEN);
const OUT_HASHES = Buffer.alloc(128);

/**
 * Builds an initiation (148 bytes). `nowEpochMs` feeds the TAI64N timestamp. With `macs`, mac1 and
 * mac2 are written too (and `macs.sent` told); without, they stay zero (cookie.ts's addMacs can add
 * them). One native call does the whole message (ephemeral, DH, KDF chain, both AEADs, macs).
 * Throws HandshakeError for a low-order peer key.
 */
export function createInitiation(
  local: StaticIdentity,
  hs: Handshake,
  localIndex: number,
  nowEpochMs: number = Date.now(),
  macs?: MessageMacs,
): Buffer {
  if (!hs.precomputedStaticStatic) throw new HandshakeError('peer public key is of low order');
  const out = OUT_INITIATION;
  check(
    native.noiseCreateInitiation(out, localIndex >>> 0, hs.remoteStaticHash, hs.remoteStatic, local.publicKey, hs.precomputedStaticStatic,
      tai64nSeconds(nowEpochMs), tai64nNanos(nowEpochMs), macs ? macs.mac1Key : null, macs ? macs.freshCookie() : null),
    'peer public key is of low order',
    'initiation could not be sealed',
  );
  return adoptCreated(hs, out, INITIATION_SIZE, 8, localIndex, 'initiation-created', macs);
}

/**
 * Takes a create step's output (message `size` bytes | h | ck | ephemeral private, the
 * ephemeral public key at `ephAt` in the message) into `hs`; returns a copy of the message.
 */
function adoptCreated(hs: Handshake, out: Buffer, size: number, ephAt: number, localIndex: number, state: HandshakeStateName, macs?: MessageMacs): Buffer {
  const msg = Buffer.from(out.subarray(0, size));
  macs?.sent(msg);
  hs.commit(out.subarray(size));
  out.fill(0);
  hs.localEphemeral = { privateKey: hs.secrets.subarray(64, 96), publicKey: msg.subarray(ephAt, ephAt + 32) };
  hs.localIndex = localIndex >>> 0;
  hs.state = state;
  return msg;
}

/**
 * Decrypts an initiation far enough to learn who sent it. `findPeer` maps the
 * sender's static key to its handshake state; the message is then checked
 * against that peer's replay and flood guards and, if it passes, committed.
 * Two native calls: up to the static key, then (the peer known) the timestamp.
 *
 * Returns the state to answer from: the peer's own, or, when our initiation to
 * that peer waits in it (state initiation-created, sent less than REKEY_TIMEOUT
 * ago: an older one is retransmitted anyway; crossed initiations), a
 * scratch state with the peer's keys, so that ours is not overwritten and the
 * response to it still completes (the guards are the peer's either way). One
 * state per peer, as wireguard-go and the kernel keep it, would leave both sides
 * responders, each waiting for the other's first transport message, and no
 * session until a retransmission 5 s later (REKEY_TIMEOUT). Throws
 * HandshakeError for any failed check.
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
  // first: h 32 | ck 32 | initiator static 32
  const first = OUT_STATIC;
  const second = OUT_TIMESTAMP;
  try {
    check(
      native.noiseConsumeInitiationStatic(first, local.privateKey, local.responderHash, msg),
      'initiator ephemeral key is of low order',
      'initiation static key does not decrypt',
    );
    const hs = findPeer(Buffer.from(first.subarray(64, 96)));
    if (!hs) throw new HandshakeError('initiation from an unknown peer');
    if (!hs.precomputedStaticStatic || isZero(hs.precomputedStaticStatic))
      throw new HandshakeError('peer public key is of low order');
    // second: h 32 | ck 32 | timestamp 12
    check(
      native.noiseConsumeInitiationTimestamp(second, first.subarray(0, 32), first.subarray(32, 64), hs.precomputedStaticStatic, msg),
      'peer public key is of low order',
      'initiation timestamp does not decrypt',
    );
    const ts = second.subarray(64, 64 + TAI64N_LEN);
    if (!tai64nAfter(ts, hs.lastTimestamp)) throw new HandshakeError('replayed initiation (timestamp not newer)');
    if (nowMs - hs.lastInitiationConsumedMs < HANDSHAKE_INITIATION_RATE_MS)
      throw new HandshakeError('initiation flood (less than 20 ms since the last one)');
    const crossed = hs.state === 'initiation-created' && nowMs - hs.initiatedAtMs < REKEY_TIMEOUT_MS;
    const into = crossed ? new Handshake(local, hs.remoteStatic, hs.presharedKey, hs.precomputedStaticStatic) : hs;
    commitInitiation(into, second, sender, msg, nowMs);
    hs.lastTimestamp = into.lastTimestamp;
    hs.lastInitiationConsumedMs = nowMs;
    return into;
  } finally {
    first.fill(0);
    second.fill(0);
  }
}

/** Commits a consumed initiation that passed every check to its peer's handshake. */
function commitInitiation(hs: Handshake, out: Buffer, sender: number, msg: Buffer, nowMs: number): void {
  hs.commit(out.subarray(0, 64));
  hs.remoteIndex = sender;
  hs.remoteEphemeral = Buffer.from(msg.subarray(8, 40));
  hs.lastTimestamp = Buffer.from(out.subarray(64, 64 + TAI64N_LEN));
  hs.lastInitiationConsumedMs = nowMs;
  hs.state = 'initiation-consumed';
}

/**
 * The responder's answer to a consumed initiation (92 bytes; mac1/mac2 by `macs` as in
 * createInitiation, else zero): one native call. Throws HandshakeError without a consumed initiation
 * or for a low-order key.
 */
export function createResponse(hs: Handshake, localIndex: number, macs?: MessageMacs): Buffer {
  if (hs.state !== 'initiation-consumed') throw new HandshakeError('no initiation to respond to');
  const out = OUT_RESPONSE;
  check(
    native.noiseCreateResponse(out, localIndex >>> 0, hs.remoteIndex >>> 0, hs.hash, hs.chainKey, hs.remoteEphemeral, hs.remoteStatic, hs.presharedKey,
      macs ? macs.mac1Key : null, macs ? macs.freshCookie() : null),
    'low-order key in response derivation',
    'response could not be sealed',
  );
  return adoptCreated(hs, out, RESPONSE_SIZE, 12, localIndex, 'response-created', macs);
}

/** The initiator consumes the response addressed to `hs` (found by receiver index): one native call. */
export function consumeResponse(local: StaticIdentity, hs: Handshake, msg: Buffer): void {
  if (msg.length !== RESPONSE_SIZE || msg.readUInt32LE(0) !== MSG_RESPONSE)
    throw new HandshakeError('not a response');
  if (hs.state !== 'initiation-created' || !hs.localEphemeral)
    throw new HandshakeError('response without a pending initiation');
  if (msg.readUInt32LE(8) !== hs.localIndex) throw new HandshakeError('response to another initiation');
  // out: h 32 | ck 32 | τ1 32 | τ2 32 (the keys go after the ephemeral private key in secrets)
  const out = OUT_HASHES;
  try {
    check(
      native.noiseConsumeResponse(out, hs.hash, hs.chainKey, hs.localEphemeral.privateKey, local.privateKey, hs.presharedKey, msg),
      'responder ephemeral key is of low order',
      'response does not authenticate',
    );
    hs.commit(out.subarray(0, 64));
    out.copy(hs.secrets, 96, 64, 128);
  } finally {
    out.fill(0);
  }
  hs.remoteIndex = msg.readUInt32LE(4);
  hs.remoteEphemeral = Buffer.from(msg.subarray(12, 44));
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
  // τ1 | τ2 = KDF2(ck, ε), derived by the native step that completed the handshake
  const t1 = Buffer.from(hs.secrets.subarray(96, 128));
  const t2 = Buffer.from(hs.secrets.subarray(128, 160));
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
