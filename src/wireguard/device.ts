/**
 * A WireGuard device: the control half in TypeScript, the packet path native.
 *
 *   native Device (C++ threads)                 this class (JS thread)
 *   ─ TUN/UDP batches, crypto, replay,  events ▶ handshake messages → noise.ts
 *     cryptokey routing, staging                 handshake needed    → initiation
 *                                                keypair confirmed   → timers
 *                                     ◀ calls    installKeypair / setEndpoint /
 *                                                setAllowedIPs / sendHandshake
 *   tick() every 250 ms reads the data path's per-peer timestamps and runs the
 *   protocol timers (timers.ts).
 *
 * Configuration changes come from UAPI (uapi.ts) or the mesh agent through the
 * methods below; each keeps the native tables in step with the JS peer objects.
 *
 * The data path is the addon's Device unless one is passed (DeviceOptions.device):
 * unit tests run two of these on linked FakeDevices (src/native/fakenet.ts), no root.
 */
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import {
  EVENT_HANDSHAKE_MESSAGE,
  EVENT_HANDSHAKE_NEEDED,
  EVENT_KEYPAIR_CONFIRMED,
  EVENT_TUN_CLOSED,
  native,
  type NativeDevice,
  type NativeEvent,
  type NativePeerStats,
} from '../native/binding.js';
import type { Prefix } from '../net/ip.js';
import { readAllowedIPRows } from '../native/rows.js';
import { HandshakeError, HostError } from '../errors.js';
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSession,
  MSG_COOKIE_REPLY,
  MSG_INITIATION,
  MSG_RESPONSE,
  StaticIdentity,
  type Handshake,
  type SessionKeys,
} from './noise.js';
import { Peer, type AllowedIPsReader, type Endpoint } from './peer.js';
import { PeersByHex, type PeerMapView } from './peersbyhex.js';
import { PeersById } from './peersbyid.js';
import { REKEY_TIMEOUT_MS } from './timers.js';
import type { DeviceOptions, DeviceStats, WireGuardNative } from './devicetypes.js';
import { roamAllowed, roamHosts } from './roaming.js';

export type { DeviceOptions, DeviceStats, WireGuardNative } from './devicetypes.js';

/** Prefixes as the addon's allowed-IPs calls take them: [address bytes, length]. */
const pairs = (prefixes: Prefix[]): Array<[Buffer, number]> => prefixes.map((p) => [p.addr, p.cidr]);

export class WireGuardDevice<D extends WireGuardNative = NativeDevice> extends EventEmitter {
  readonly native: D;
  readonly log: Logger;
  identity: StaticIdentity | null = null;
  fwmark = 0;
  /** Peers by public key, canonical base64 (the one key string a peer keeps: peer.ts). */
  private readonly byKey = new Map<string, Peer>();
  /** Peers by public key as 64 hex digits: a view of byKey (peersbyhex.ts), no hex string stored. */
  readonly peers: PeerMapView = new PeersByHex(this.byKey);
  readonly stats: DeviceStats = { handshakesInitiated: 0, handshakesCompleted: 0, handshakesRejected: 0, cookieRepliesConsumed: 0, initiationsCrossed: 0, endpointRoamsRefused: 0 };
  /** Peers by id, for the data path's events and statistics (peersbyid.ts: a sorted array, not a Map). */
  private readonly byId = new PeersById<Peer>();
  /**
   * Peers whose timers may be armed (a retransmit, key zeroing or persistent keepalive pending): added where a
   * timer is armed, dropped by tick() once it no longer is, so a tick looks at these and the device's active
   * peers, never at every peer (an agent holds thousands of idle ones).
   */
  private readonly armedPeers = new Set<Peer>();
  /**
   * The peers' allowed IPs as the data path's table holds them (their one copy, s35: the device keeps no owner per
   * prefix, nor its peers a list): one reader for every peer, also the key of the peers' shared keying (keying.ts),
   * so it must stay one object per device.
   */
  private readonly allowedIPsReader: AllowedIPsReader = {
    allowedIPsOf: (id) => readAllowedIPRows(this.native.allowedIPs(id)),
  };
  private readonly indices = new Map<number, Peer>();
  private nextPeerId = 1;
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;
  private closed = false;
  readonly now: () => number;

  constructor(opts: DeviceOptions<D> = {}) {
    super();
    this.log = opts.logger ?? silentLogger;
    this.now = opts.now ?? (() => native.nowMs());
    // Without a device D is its default, NativeDevice, which the addon's Device is (TypeScript cannot see that).
    this.native =
      opts.device ??
      (new native.Device({
        tunName: opts.tunName ?? '',
        createTun: opts.createTun ?? true,
        vnetHdr: true,
        mtu: opts.mtu ?? 1420,
        port: opts.listenPort ?? 0,
      }) as unknown as D);
    this.native.start((events) => this.onEvents(events));
    const tickMs = opts.tickMs ?? 250;
    if (tickMs > 0) {
      this.timer = setInterval(() => this.tick(), tickMs);
      this.timer.unref();
    }
  }

  get tunName(): string {
    return this.native.tunName;
  }

  get listenPort(): number {
    return this.native.port;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.native.close();
    this.emit('close');
  }

  // ---- configuration --------------------------------------------------------

  setPrivateKey(key: Buffer | null): void {
    const identity = key && !key.every((b) => b === 0) ? new StaticIdentity(key) : null;
    if (identity && this.identity && identity.publicKey.equals(this.identity.publicKey)) return;
    this.identity = identity;
    if (identity) this.native.setPublicKey(identity.publicKey);
    for (const peer of [...this.byKey.values()]) {
      // A peer with our own public key makes no sense; wireguard-go drops it too.
      if (identity && peer.publicKey.equals(identity.publicKey)) {
        this.removePeer(peer.publicKey);
        continue;
      }
      peer.rekeyIdentity(identity);
      this.native.clearKeypairs(peer.id);
    }
  }

  setListenPort(port: number): void {
    if (port === this.native.port && port !== 0) return;
    try {
      this.native.rebind(port);
    } catch (err) {
      throw new HostError('WM_PORT_IN_USE', (err as Error).message);
    }
  }

  setFwmark(mark: number): void {
    this.fwmark = mark;
    this.native.setFwmark(mark);
  }

  getPeer(publicKey: Buffer): Peer | undefined {
    return this.byKey.get(publicKey.toString('base64'));
  }

  /**
   * The peer with this public key, added if there is none. `keyText`: the key's base64 as the caller holds it (a
   * node record's): the new peer keeps that string instead of a copy when it is the canonical spelling (else the
   * canonical one is kept, so one key never names two peers).
   */
  addPeer(publicKey: Buffer, keyText?: string): Peer {
    const b64 = publicKey.toString('base64');
    const existing = this.byKey.get(b64);
    if (existing) return existing;
    const peer = new Peer(this.nextPeerId++, keyText === b64 ? keyText : b64, this.identity, this.now, this.allowedIPsReader);
    this.byKey.set(peer.publicKeyB64, peer);
    this.byId.add(peer);
    this.native.upsertPeer(peer.id);
    return peer;
  }

  removePeer(publicKey: Buffer): void {
    const peer = this.getPeer(publicKey);
    if (!peer) return;
    peer.stopTimers();
    this.armedPeers.delete(peer);
    this.native.removePeer(peer.id);
    for (const idx of peer.indices) this.indices.delete(idx);
    this.byKey.delete(peer.publicKeyB64);
    this.byId.delete(peer.id);
  }

  removeAllPeers(): void {
    for (const peer of [...this.byKey.values()]) this.removePeer(peer.publicKey);
  }

  setPeerEndpoint(peer: Peer, ep: Endpoint | undefined): void {
    peer.endpoint = ep;
    this.native.setEndpoint(peer.id, ep ? ep.host : null, ep?.port ?? 0);
  }

  /**
   * Mesh peers: the endpoint may roam only to these addresses (a node record's underlay addresses; any port; the
   * first ROAM_MAX count), by transport messages (natively) and handshakes (here). null: roams anywhere (WireGuard).
   * Throws TypeError on an address that is not an IP literal.
   */
  setPeerRoaming(peer: Peer, hosts: readonly string[] | null): void {
    const set = hosts === null ? undefined : roamHosts(hosts);
    peer.roamHosts = set;
    this.native.setRoaming(peer.id, set ? [...set] : null);
  }

  /**
   * Replaces the peer's allowed IPs. An address belongs to one peer: a prefix given here leaves the peer that held
   * it, whose `allowedIPs` no longer list it (the data path's table moves it; nothing is kept here to update).
   */
  setPeerAllowedIPs(peer: Peer, prefixes: Prefix[]): void {
    this.native.setAllowedIPs(peer.id, pairs(prefixes));
  }

  /**
   * Adds to the peer's allowed IPs (a UAPI set without replace_allowed_ips): each prefix taken from the peer that
   * held it, one this peer holds left where it is in its list. O(the prefixes given), whatever the peer holds.
   */
  addPeerAllowedIPs(peer: Peer, prefixes: Prefix[]): void {
    this.native.addAllowedIPs(peer.id, pairs(prefixes));
  }

  setPeerPersistentKeepalive(peer: Peer, seconds: number): void {
    const was = peer.timers.persistentKeepaliveS;
    peer.timers.persistentKeepaliveSet(seconds, this.now());
    this.armedPeers.add(peer);
    // As wireguard-go: turning it on sends one at once, which also starts a handshake.
    if (seconds > 0 && was === 0 && this.identity) this.native.sendKeepalive(peer.id);
  }

  peerStats(): Map<number, NativePeerStats> {
    const m = new Map<number, NativePeerStats>();
    for (const s of this.native.peerStats()) m.set(s.id, s);
    return m;
  }

  /** Starts a handshake now (the mesh agent and tests use this). */
  initiate(peer: Peer): void {
    this.sendInitiation(peer, false);
  }

  // ---- events from the data path ---------------------------------------------

  private onEvents(events: NativeEvent[]): void {
    for (const ev of events) {
      try {
        switch (ev.kind) {
          case EVENT_HANDSHAKE_MESSAGE:
            this.onHandshakeMessage(ev.data!, { host: ev.host!, port: ev.port! });
            break;
          case EVENT_HANDSHAKE_NEEDED: {
            const peer = this.byId.get(ev.peer);
            if (peer) this.sendInitiation(peer, false);
            break;
          }
          case EVENT_KEYPAIR_CONFIRMED: {
            const peer = this.byId.get(ev.peer);
            if (peer) this.handshakeComplete(peer);
            break;
          }
          case EVENT_TUN_CLOSED:
            this.log.info({ tun: this.tunName }, 'TUN device closed');
            this.emit('tun-closed');
            break;
        }
      } catch (err) {
        this.log.error({ err }, 'event handling failed');
      }
    }
  }

  private onHandshakeMessage(msg: Buffer, from: Endpoint): void {
    const identity = this.identity;
    if (!identity) return;
    const now = this.now();
    try {
      switch (msg[0]) {
        case MSG_INITIATION: {
          let peer: Peer | undefined;
          const hs = consumeInitiation(identity, msg, (key) => (peer = this.getPeer(key))?.handshake, now);
          if (hs !== peer!.handshake) this.stats.initiationsCrossed++; // answered from a scratch state (noise.ts)
          this.onInitiation(peer!, hs, from, now);
          break;
        }
        case MSG_RESPONSE: {
          const peer = this.indices.get(msg.readUInt32LE(8));
          if (!peer) throw new HandshakeError('response to an unknown index');
          consumeResponse(identity, peer.handshake, msg);
          this.updateEndpoint(peer, from);
          const keys = deriveSession(peer.handshake);
          this.install(peer, keys, now);
          this.handshakeComplete(peer);
          this.native.flushStaged(peer.id, true);
          break;
        }
        case MSG_COOKIE_REPLY: {
          const peer = this.indices.get(msg.readUInt32LE(4));
          if (peer && peer.cookie.consumeReply(msg)) this.stats.cookieRepliesConsumed++;
          break;
        }
      }
    } catch (err) {
      this.stats.handshakesRejected++;
      this.log.debug({ from, reason: (err as Error).message }, 'handshake message rejected');
    }
  }

  private onInitiation(peer: Peer, hs: Handshake, from: Endpoint, now: number): void {
    const to = this.updateEndpoint(peer, from);
    const index = this.allocIndex(peer);
    const response = createResponse(hs, index, peer.cookie);
    const keys = deriveSession(hs);
    this.install(peer, keys, now);
    peer.lastSentHandshakeMs = now;
    if (to) this.native.sendHandshake(to.host, to.port, response);
  }

  /** Follows a roaming peer (whitepaper §2.1) within its roaming set; returns where answers go (none: nowhere known). */
  private updateEndpoint(peer: Peer, from: Endpoint): Endpoint | undefined {
    if (!roamAllowed(peer, from)) {
      this.stats.endpointRoamsRefused++;
      this.log.debug({ peer: peer.id, from, endpoint: peer.endpoint }, 'handshake from outside the peer\'s roaming set: endpoint kept');
      return peer.endpoint;
    }
    // also when it is where we last put it: transport messages may have moved the native one since (roaming)
    this.setPeerEndpoint(peer, from);
    return from;
  }

  private install(peer: Peer, keys: SessionKeys, now: number): void {
    this.native.installKeypair(peer.id, keys.localIndex, keys.remoteIndex, keys.send, keys.recv, keys.initiator);
    keys.send.fill(0);
    keys.recv.fill(0);
    peer.timers.sessionDerived(now);
    this.armedPeers.add(peer);
  }

  private handshakeComplete(peer: Peer): void {
    // The peer confirmed a session we answered: an initiation of ours still pending (crossed, lost or refused) is
    // dropped, so that a response to it held back and let go later cannot replace the session (noise.ts).
    if (peer.handshake.state === 'initiation-created') peer.handshake.clear();
    peer.timers.handshakeComplete();
    peer.initiatingSinceMs = 0;
    peer.lastHandshakeEpochMs = Date.now();
    this.stats.handshakesCompleted++;
    this.emit('handshake', peer);
  }

  private allocIndex(peer: Peer): number {
    let idx: number;
    do idx = randomInt(0, 0x1_0000_0000 - 1) + 1;
    while (this.indices.has(idx));
    this.indices.set(idx, peer);
    for (const old of peer.rememberIndex(idx)) this.indices.delete(old);
    return idx;
  }

  private sendInitiation(peer: Peer, isRetry: boolean): void {
    const identity = this.identity;
    if (!identity || !peer.endpoint || !peer.handshake.precomputedStaticStatic) return;
    const now = this.now();
    if (!isRetry) {
      peer.timers.handshakeAttempts = 0;
      if (now - peer.lastSentHandshakeMs < REKEY_TIMEOUT_MS) return;
    }
    peer.lastSentHandshakeMs = now;
    if (peer.initiatingSinceMs === 0) peer.initiatingSinceMs = now;
    const msg = createInitiation(identity, peer.handshake, this.allocIndex(peer), Date.now(), peer.cookie);
    peer.handshake.initiatedAtMs = now;
    this.native.sendHandshake(peer.endpoint.host, peer.endpoint.port, msg);
    peer.timers.handshakeInitiated(now);
    this.armedPeers.add(peer);
    this.stats.handshakesInitiated++;
  }

  // ---- timers ---------------------------------------------------------------------

  /** The peers tick() looks at besides the active ones (a test compares them with a full scan). */
  get trackedArmedPeers(): ReadonlySet<Peer> {
    return this.armedPeers;
  }

  tick(): void {
    if (this.closed) return;
    if (++this.ticks % 4 === 0) this.native.refreshMtu();
    const now = this.now();
    const idle = { lastAuthSentMs: 0, lastAuthRecvMs: 0, sentUnansweredMs: 0, recvUnansweredMs: 0 };
    const seen = new Set<number>();
    const work: Array<[Peer, typeof idle]> = [];
    for (const s of this.native.peerStats(true)) {
      const peer = this.byId.get(s.id);
      if (!peer) continue;
      seen.add(s.id);
      work.push([peer, s]);
    }
    // idle peers whose own timers can still fire
    for (const peer of this.armedPeers) {
      if (!peer.timers.armed) this.armedPeers.delete(peer);
      else if (!seen.has(peer.id)) work.push([peer, idle]);
    }
    for (const [peer, s] of work) {
      for (const action of peer.timers.tick(now, s)) {
        switch (action) {
          case 'retransmit-initiation':
            this.sendInitiation(peer, true);
            break;
          case 'initiate':
            this.sendInitiation(peer, false);
            break;
          case 'keepalive':
            this.native.sendKeepalive(peer.id);
            break;
          case 'give-up':
            this.log.info({ peer: peer.publicKey.toString('base64') }, `handshake did not complete after ${peer.timers.handshakeAttempts + 1} attempts, giving up`);
            break;
          case 'zero-keys':
            this.native.clearKeypairs(peer.id);
            peer.clearHandshake();
            break;
        }
      }
    }
  }
}
