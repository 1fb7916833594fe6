/**
 * A peer as the control thread sees it: configuration, handshake state, cookie
 * generator and timers. Its data-path half (keypairs, endpoint in use, staged
 * packets, counters) lives natively, keyed by `id`.
 *
 * The handshake state and the cookie generator are built on first use (issue 16): an agent holds a peer per
 * node of every connected cluster (16,000 at 16 × 1000), most of which never exchange a handshake with it, and
 * the two held ~9 Buffers of their own per peer (~2.5 KB of heap, ~0.6 KB of backing stores outside it) plus an
 * X25519 computation each during the sync. Built on first read of `handshake` or `cookie`, from the identity
 * and preshared key the peer has then; what they hold before that is what a fresh one holds.
 *
 * For the same reason (s16peerjs) a peer keeps its public key once, as a string: a Buffer costs ~100 B of heap plus
 * its slice of an 8 KiB pool slab, which also keeps the slab's garbage alive. Its allowed IPs it does not keep at
 * all (s35): the data path's allowed-IPs table holds them per peer (native/src/wireguard/allowedips.h), and
 * `allowedIPs` reads them from there through the device's reader. The key is kept as base64 (s21peer),
 * the device's map key: a peer the reconciler adds holds its node record's own string (44 chars, no copy), where a
 * hex copy cost 80 B per peer (after a same-content rewrite of the record, a relist's copy, the peer keeps the
 * first record's string: 64 B, still less than the hex copy; swapping it would reorder the device's map, and with
 * it UAPI get).
 * The Buffer, hex and Prefix forms are decoded on read (handshake setup, UAPI get, removal: rare next to
 * holding the peer).
 * Since s39 a peer holds 7 fields (80 B, 64-bit V8 without pointer compression, as Node ships it; 120 B
 * before s23node; s35 traded its keys' array, 64 B, for a reader field, which s39 moved into the keying): the
 * identity, clock, preshared key and allowed-IPs reader are one object shared by the device's peers (keying.ts), and
 * when the last handshake completed and since when we initiate without an answer are PeerActivity's (0 until
 * then: an idle peer reads 0 and makes nothing).
 */
import type { Prefix } from '../net/ip.js';
import { holdList, readList, type LoneList } from '../lonelist.js';
import { CookieGenerator } from './cookie.js';
import { Handshake, type StaticIdentity } from './noise.js';
import { PeerTimers } from './timers.js';
import { NO_ALLOWED, PeerKeying, sharedKeying, ZERO_PSK, type AllowedIPsReader } from './keying.js';

export interface Endpoint {
  host: string;
  port: number;
}

export type { AllowedIPsReader } from './keying.js';
const NO_INDICES: readonly number[] = Object.freeze([]);

/** Keypair indices we keep reserved: previous, current, next and a pending handshake. */
const KEPT_INDICES = 4;

export class Peer {
  readonly id: number;
  /** The public key, base64 in its canonical spelling (the form kept, the device's map key: 44 chars). */
  readonly publicKeyB64: string;
  /**
   * Mesh peers' roaming set (roamHosts) as held: a set of one address (nearly every peer's) as that address, not a
   * one-element array (56 B). A node record holds one address so too (records/node.ts HeldNode) and reads it as a
   * new array each time: a peer keeping the set it was given would hold an array of its own (s40).
   */
  private roam: LoneList | undefined;

  /** The endpoint as two fields, not an object per peer (s21peer: 40 B); undefined host: none. */
  private epHost: string | undefined;
  private epPort = 0;
  /** The local identity, clock, preshared key and allowed-IPs reader: one object shared by the device's peers. */
  private keying: PeerKeying;
  /** What only an active peer holds (PeerActivity): made on first use, most peers never need it. */
  private act: PeerActivity | undefined;

  /** Replaced, never written in place (setPresharedKey): every peer starts on the one all-zero key. */
  get presharedKey(): Buffer {
    return this.keying.presharedKey;
  }

  /** Wall-clock time of the last completed handshake (0: none). */
  get lastHandshakeEpochMs(): number {
    return this.act?.lastHandshakeEpochMs ?? 0;
  }

  set lastHandshakeEpochMs(ms: number) {
    if (ms !== 0 || this.act) this.activity().lastHandshakeEpochMs = ms;
  }

  /** Monotonic ms of the first initiation not answered yet (0: none): an unreachable peer shows here. */
  get initiatingSinceMs(): number {
    return this.act?.initiatingSinceMs ?? 0;
  }

  set initiatingSinceMs(ms: number) {
    if (ms !== 0 || this.act) this.activity().initiatingSinceMs = ms;
  }

  /** Monotonic ms of the last initiation we sent (-Infinity: none yet). */
  get lastSentHandshakeMs(): number {
    return this.act?.lastSentHandshakeMs ?? -Infinity;
  }

  set lastSentHandshakeMs(ms: number) {
    this.activity().lastSentHandshakeMs = ms;
  }

  private activity(): PeerActivity {
    return (this.act ??= new PeerActivity());
  }

  /** The timers if made (tests check that reading a peer makes none). */
  private get timerState(): PeerTimers | undefined {
    return this.act?.timers;
  }

  /** `publicKeyB64`: the key's canonical base64 (Buffer.toString('base64') of its 32 bytes; the device checks). */
  constructor(id: number, publicKeyB64: string, identity: StaticIdentity | null, now: () => number, allowed: AllowedIPsReader = NO_ALLOWED) {
    this.id = id;
    this.publicKeyB64 = publicKeyB64;
    this.keying = sharedKeying(identity, now, allowed);
  }

  /**
   * Mesh peers: the addresses the endpoint may roam to (roaming.ts); undefined: anywhere (WireGuard). A set of one
   * address reads as a new array each time (read on handshakes, roaming.ts roamAllowed, and when the device passes
   * the set to the data path; never per packet).
   */
  get roamHosts(): readonly string[] | undefined {
    return this.roam === undefined ? undefined : readList(this.roam);
  }

  set roamHosts(hosts: readonly string[] | undefined) {
    this.roam = hosts === undefined ? undefined : holdList(hosts);
  }

  /** The public key's 32 bytes (a new Buffer on each read, decoded from publicKeyB64). */
  get publicKey(): Buffer {
    return Buffer.from(this.publicKeyB64, 'base64');
  }

  /** The public key as 64 lowercase hex digits (UAPI's spelling; a new string on each read). */
  get publicKeyHex(): string {
    return this.publicKey.toString('hex');
  }

  /** Where handshakes go (undefined: nowhere known); a new object on each read, the one set is not kept. */
  get endpoint(): Endpoint | undefined {
    return this.epHost === undefined ? undefined : { host: this.epHost, port: this.epPort };
  }

  set endpoint(ep: Endpoint | undefined) {
    this.epHost = ep?.host;
    this.epPort = ep?.port ?? 0;
  }

  /**
   * The allowed IPs, in the order the last set gave them (each once, masked to its length), without those a later
   * set gave another peer: read from the device's table (new Prefix objects on each read).
   */
  get allowedIPs(): Prefix[] {
    return this.keying.allowed.allowedIPsOf(this.id);
  }

  /**
   * The protocol timers (made on first read: a fresh one holds nothing that differs by when it was made, as its
   * persistent-keepalive start is set again when the interval is set, the only way to use it).
   */
  get timers(): PeerTimers {
    const a = this.activity();
    return (a.timers ??= new PeerTimers(this.keying.now()));
  }

  /** Local indices of recent keypairs and handshakes, newest last. */
  get indices(): readonly number[] {
    return this.act?.recentIndices ?? NO_INDICES;
  }

  /** The handshake state with this peer (built on first read, from the identity and preshared key of then). */
  get handshake(): Handshake {
    const a = this.activity();
    const k = this.keying;
    return (a.hs ??= k.identity ? new Handshake(k.identity, this.publicKey, k.presharedKey) : placeholderHandshake(this.publicKey));
  }

  /** The macs of the handshake messages we send to this peer (built on first read). */
  get cookie(): CookieGenerator {
    const a = this.activity();
    return (a.cookieGen ??= new CookieGenerator(this.publicKey, this.keying.now));
  }

  /** False until the handshake state or cookie generator was first needed: an idle peer holds neither. */
  get hasHandshakeState(): boolean {
    return this.act !== undefined && (this.act.hs !== undefined || this.act.cookieGen !== undefined);
  }

  /** The persistent keepalive interval in s (0: off), without making the timers of a peer that has none. */
  get persistentKeepaliveS(): number {
    return this.act?.timers?.persistentKeepaliveS ?? 0;
  }

  /** Stops the timers, if any were made (a peer being removed). */
  stopTimers(): void {
    this.act?.timers?.stop();
  }

  /** Rebuilds the handshake for a new local identity (private key change); the replay guard carries over. */
  rekeyIdentity(identity: StaticIdentity | null): void {
    const k = this.keying;
    this.keying =
      k.presharedKey === ZERO_PSK
        ? sharedKeying(identity, k.now, k.allowed)
        : new PeerKeying(identity, k.now, k.presharedKey, k.allowed);
    const old = this.act?.hs;
    if (!old) return; // built from `identity` when first needed; a fresh one's replay guard is all zero
    this.act!.hs = undefined;
    this.handshake.lastTimestamp = old.lastTimestamp;
  }

  /** Wipes the handshake state (keys zeroed after 540 s); nothing to wipe, and nothing built, if it never was. */
  clearHandshake(): void {
    this.act?.hs?.clear();
  }

  setPresharedKey(psk: Buffer): void {
    const k = this.keying;
    this.keying = new PeerKeying(k.identity, k.now, Buffer.from(psk), k.allowed);
    const hs = this.act?.hs;
    if (hs) hs.presharedKey = this.keying.presharedKey;
  }

  /** Records a newly used index; returns the indices that are no longer needed. */
  rememberIndex(index: number): number[] {
    const a = this.activity();
    const kept = (a.recentIndices ??= []);
    kept.push(index);
    return kept.length > KEPT_INDICES ? kept.splice(0, kept.length - KEPT_INDICES) : [];
  }
}

/**
 * What a peer holds only once it is active (s22node): the handshake state, the cookie generator, the recent
 * indices, the timers and when we last sent an initiation. One field of the peer instead of five: an idle peer
 * (most of an agent's 16,000) saved four pointers and the -Infinity box of lastSentHandshakeMs (a double field:
 * 16 B per peer), ~48 B; an active one holds this object (~64 B) beside what it held anyway. Since s23node also
 * when the last handshake completed and since when we initiate unanswered (both 0 until set non-zero, which only
 * an active peer does: -16 B per idle peer, +16 B per active one).
 */
class PeerActivity {
  hs: Handshake | undefined = undefined;
  cookieGen: CookieGenerator | undefined = undefined;
  recentIndices: number[] | undefined = undefined;
  timers: PeerTimers | undefined = undefined;
  lastSentHandshakeMs = -Infinity;
  lastHandshakeEpochMs = 0;
  initiatingSinceMs = 0;
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
    initiatedAtMs: -Infinity,
    remoteStatic: publicKey,
    remoteStaticHash: Buffer.alloc(32),
    presharedKey: Buffer.alloc(32),
    precomputedStaticStatic: null,
    secrets: Buffer.alloc(160),
  });
  return hs;
}
