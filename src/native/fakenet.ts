/**
 * A network between FakeDevices (as wireguard-go's conn/bindtest links two
 * binds): what one device sends arrives at another, so two WireGuardDevices run
 * real handshakes in one process, without root, sockets or the addon's threads.
 *
 * - Handshake messages (sendHandshake) reach the device attached at their
 *   destination as handshake-message events, from the sender's address and port.
 * - Keepalives (sendKeepalive, flushStaged) are real WireGuard transport
 *   messages: sealed with the sender's current keypair (ChaCha20-Poly1305, the
 *   counter as nonce), found by receiver index and opened with the receiver's
 *   key. One that opens with a responder's next keypair confirms it
 *   (keypair-confirmed event), as the addon's RX path does. A sender without a
 *   current keypair asks for a handshake (handshake-needed) instead.
 * - Nothing moves until the test calls deliver(): datagrams and events queue in
 *   order, so a device's handler never runs inside another's. `lose` drops
 *   chosen datagrams; every datagram is kept in `datagrams` with its fate.
 *
 * Not modelled: replay windows, key expiry, staging of data packets, cookies
 * under load (nothing here is under load).
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { FakeDevice, FakeKeypair, FakePeer, FakeWire } from './fakedevice.js';
import { ROAM_MAX } from '../wireguard/roaming.js';

const MSG_TRANSPORT = 4;
const HEADER = 16;
const TAG = 16;

export interface FakeAddress {
  host: string;
  port: number;
}

export type FakeFate = 'queued' | 'delivered' | 'lost' | 'no-route' | 'unknown-receiver' | 'decrypt-failed';

export interface FakeDatagram {
  from: FakeAddress;
  to: FakeAddress;
  /** The message type (first byte): 1 initiation, 2 response, 3 cookie reply, 4 transport. */
  type: number;
  msg: Buffer;
  fate: FakeFate;
}

type Queued = { datagram: FakeDatagram } | { event: () => void };

/** WireGuard's transport nonce: 4 zero bytes and the 64-bit little-endian counter. */
function nonce(counter: bigint): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64LE(counter, 4);
  return n;
}

/** A transport message carrying `plain` under kp's send key. */
export function sealTransport(kp: FakeKeypair, counter: bigint, plain: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', kp.sendKey, nonce(counter), { authTagLength: TAG });
  const body = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  const head = Buffer.alloc(HEADER);
  head.writeUInt32LE(MSG_TRANSPORT, 0);
  head.writeUInt32LE(kp.remoteIndex >>> 0, 4);
  head.writeBigUInt64LE(counter, 8);
  return Buffer.concat([head, body]);
}

/** The plaintext of a transport message under kp's receive key, or null if it does not authenticate. */
export function openTransport(kp: FakeKeypair, msg: Buffer): Buffer | null {
  if (msg.length < HEADER + TAG) return null;
  const d = createDecipheriv('chacha20-poly1305', kp.recvKey, nonce(msg.readBigUInt64LE(8)), { authTagLength: TAG });
  d.setAuthTag(msg.subarray(msg.length - TAG));
  try {
    return Buffer.concat([d.update(msg.subarray(HEADER, msg.length - TAG)), d.final()]);
  } catch {
    return null;
  }
}

export class FakeNetwork implements FakeWire {
  /** Every datagram sent, in order, with what became of it. */
  readonly datagrams: FakeDatagram[] = [];
  /** Return true to lose a datagram (asked once, when it would be delivered). */
  lose: ((d: FakeDatagram) => boolean) | undefined;
  private readonly byAddress = new Map<string, FakeDevice>();
  private readonly hosts = new Map<FakeDevice, string>();
  private readonly counters = new WeakMap<FakeKeypair, bigint>();
  private queue: Queued[] = [];

  /** The device answers at host and its own port from now on; it sends from there. */
  attach(dev: FakeDevice, host: string): void {
    this.byAddress.set(`${host}:${dev.port}`, dev);
    this.hosts.set(dev, host);
    dev.wire = this;
  }

  /** The address a device sends from. */
  addressOf(dev: FakeDevice): FakeAddress {
    const host = this.hosts.get(dev);
    if (host === undefined) throw new Error('FakeNetwork: device not attached');
    return { host, port: dev.port };
  }

  /** Datagrams (and events) waiting for deliver(). */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * Delivers everything queued, and what that causes, until nothing is left.
   * Returns how many datagrams were handled. Throws after `max` steps (devices
   * answering each other forever).
   */
  deliver(max = 10_000): number {
    let datagrams = 0;
    for (let steps = 0; this.queue.length > 0; steps++) {
      if (steps >= max) throw new Error(`FakeNetwork: still busy after ${max} steps`);
      const q = this.queue.shift()!;
      if ('event' in q) {
        q.event();
        continue;
      }
      datagrams++;
      this.arrive(q.datagram);
    }
    return datagrams;
  }

  handshake(from: FakeDevice, host: string, port: number, msg: Buffer): void {
    this.send(from, { host, port }, msg);
  }

  keepalive(from: FakeDevice, peer: FakePeer): void {
    const kp = peer.current;
    // The addon stages the packet and asks for a handshake when it has no keypair to send with.
    if (!kp) return void this.queue.push({ event: () => from.handshakeNeeded(peer.id) });
    if (!peer.endpoint) return;
    const counter = this.counters.get(kp) ?? 0n;
    this.counters.set(kp, counter + 1n);
    const msg = sealTransport(kp, counter, Buffer.alloc(0));
    peer.stats.txPackets++;
    peer.stats.txBytes += msg.length;
    peer.stats.lastAuthSentMs = from.now();
    this.send(from, peer.endpoint, msg);
  }

  private send(from: FakeDevice, to: FakeAddress, msg: Buffer): void {
    const d: FakeDatagram = { from: this.addressOf(from), to: { ...to }, type: msg[0] ?? 0, msg, fate: 'queued' };
    this.datagrams.push(d);
    this.queue.push({ datagram: d });
  }

  private arrive(d: FakeDatagram): void {
    if (this.lose?.(d)) return void (d.fate = 'lost');
    const dst = this.byAddress.get(`${d.to.host}:${d.to.port}`);
    if (!dst || dst.closed) return void (d.fate = 'no-route');
    if (d.type !== MSG_TRANSPORT) {
      d.fate = 'delivered';
      return dst.handshakeMessage(d.msg, d.from.host, d.from.port);
    }
    const found = this.findKeypair(dst, d.msg.length >= 8 ? d.msg.readUInt32LE(4) : -1);
    if (!found) return void (d.fate = 'unknown-receiver');
    if (!openTransport(found.kp, d.msg)) return void (d.fate = 'decrypt-failed');
    d.fate = 'delivered';
    const { peer } = found;
    peer.stats.rxPackets++;
    peer.stats.rxBytes += d.msg.length;
    peer.stats.lastAuthRecvMs = dst.now();
    peer.stats.sentUnansweredMs = 0;
    // an authenticated packet moves the endpoint (roaming), a mesh peer's only within its roaming set: its first
    // ROAM_MAX addresses, as roam.h keeps them
    if (!peer.roam || peer.roam.slice(0, ROAM_MAX).includes(d.from.host)) peer.endpoint = { ...d.from };
    else if (peer.endpoint?.host !== d.from.host || peer.endpoint.port !== d.from.port) dst.counterValues.endpoint_roam_refused = (dst.counterValues.endpoint_roam_refused ?? 0) + 1;
    if (dst.confirm(peer, found.kp)) dst.keypairConfirmed(peer.id);
  }

  private findKeypair(dev: FakeDevice, receiver: number): { peer: FakePeer; kp: FakeKeypair } | undefined {
    for (const peer of dev.peers.values())
      for (const kp of [peer.current, peer.next, peer.previous]) if (kp && kp.localIndex === receiver) return { peer, kp };
    return undefined;
  }
}

/** Two devices on one FakeNetwork, at 198.18.0.1 and 198.18.0.2 (each on its own port). */
export function linkFakeDevices(a: FakeDevice, b: FakeDevice, hosts: readonly [string, string] = ['198.18.0.1', '198.18.0.2']): FakeNetwork {
  const net = new FakeNetwork();
  net.attach(a, hosts[0]);
  net.attach(b, hosts[1]);
  return net;
}
