/**
 * A peer as the control thread sees it: configuration, handshake state, cookie
 * generator and timers. Its data-path half (keypairs, endpoint in use, staged
 * packets, counters) lives natively, keyed by `id`.
 */
import type { Prefix } from '../net/ip.js';
import { CookieGenerator } from './cookie.js';
import { Handshake, type StaticIdentity } from './noise.js';
import { PeerTimers } from './timers.js';

export interface Endpoint {
  host: string;
  port: number;
}

/** Keypair indices we keep reserved: previous, current, next and a pending handshake. */
const KEPT_INDICES = 4;

export class Peer {
  readonly id: number;
  readonly publicKey: Buffer;
  readonly publicKeyHex: string;
  handshake: Handshake;
  readonly cookie: CookieGenerator;
  readonly timers: PeerTimers;
  presharedKey: Buffer = Buffer.alloc(32);
  endpoint: Endpoint | undefined;
  allowedIPs: Prefix[] = [];
  /** Wall-clock time of the last completed handshake. */
  lastHandshakeEpochMs = 0;
  lastSentHandshakeMs = -Infinity;
  /** Monotonic ms of the first initiation not answered yet (0: none): an unreachable peer shows here. */
  initiatingSinceMs = 0;
  /** Local indices of recent keypairs and handshakes, newest last. */
  readonly indices: number[] = [];

  constructor(id: number, publicKey: Buffer, identity: StaticIdentity | null, now: () => number) {
    this.id = id;
    this.publicKey = Buffer.from(publicKey);
    this.publicKeyHex = this.publicKey.toString('hex');
    this.handshake = identity ? new Handshake(identity, this.publicKey, this.presharedKey) : placeholderHandshake(this.publicKey);
    this.cookie = new CookieGenerator(this.publicKey, now);
    this.timers = new PeerTimers(now());
  }

  /** Rebuilds the handshake for a new local identity (private key change). */
  rekeyIdentity(identity: StaticIdentity | null): void {
    const old = this.handshake;
    this.handshake = identity ? new Handshake(identity, this.publicKey, this.presharedKey) : placeholderHandshake(this.publicKey);
    this.handshake.lastTimestamp = old.lastTimestamp;
  }

  setPresharedKey(psk: Buffer): void {
    this.presharedKey = Buffer.from(psk);
    this.handshake.presharedKey = this.presharedKey;
  }

  /** Records a newly used index; returns the indices that are no longer needed. */
  rememberIndex(index: number): number[] {
    this.indices.push(index);
    return this.indices.length > KEPT_INDICES ? this.indices.splice(0, this.indices.length - KEPT_INDICES) : [];
  }
}

/** Without a private key no handshake can run; this keeps the field non-null. */
function placeholderHandshake(publicKey: Buffer): Handshake {
  const hs = Object.create(Handshake.prototype) as Handshake;
  Object.assign(hs, {
    state: 'zeroed',
    hash: Buffer.alloc(0),
    chainKey: Buffer.alloc(0),
    localEphemeral: null,
    remoteEphemeral: Buffer.alloc(0),
    localIndex: 0,
    remoteIndex: 0,
    lastTimestamp: Buffer.alloc(12),
    lastInitiationConsumedMs: -Infinity,
    remoteStatic: publicKey,
    remoteStaticHash: Buffer.alloc(32),
    presharedKey: Buffer.alloc(32),
    precomputedStaticStatic: null,
    secrets: Buffer.alloc(160),
  });
  return hs;
}
