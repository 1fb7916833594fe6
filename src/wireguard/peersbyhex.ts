/**
 * The device's peers by public key as 64 lowercase hex digits (UAPI's spelling), a read-only view of its map by
 * base64 key (device.ts): the device keeps one key string per peer, the base64 one a node record already holds
 * (s21peer, issue 16: the hex copy was 80 B per peer, ~9 B per remote endpoint at 16 × 1000 × 10), and this view
 * keeps the `peers` map's hex keys for its readers (UAPI, tests, benches) without storing them.
 *
 * Costs: get/has decode the hex (one 32-byte Buffer and a 44-char string, garbage); keys() makes each hex key as
 * it is read. Iteration order is the map's (insertion order), as before. A string that is not exactly 64
 * lowercase hex digits names no peer, as with the former map keyed by Buffer.toString('hex').
 */
import type { Peer } from './peer.js';

const HEX_KEY = /^[0-9a-f]{64}$/;

/** What the former Map<string, Peer> was read for (size, lookups, iteration). */
export interface PeerMapView {
  readonly size: number;
  get(hex: string): Peer | undefined;
  has(hex: string): boolean;
  keys(): IterableIterator<string>;
  values(): IterableIterator<Peer>;
  entries(): IterableIterator<[string, Peer]>;
  [Symbol.iterator](): IterableIterator<[string, Peer]>;
}

export class PeersByHex implements PeerMapView {
  /** `byB64`: the device's own map, by canonical base64 key (never written here). */
  constructor(private readonly byB64: ReadonlyMap<string, Peer>) {}

  get size(): number {
    return this.byB64.size;
  }

  get(hex: string): Peer | undefined {
    return HEX_KEY.test(hex) ? this.byB64.get(Buffer.from(hex, 'hex').toString('base64')) : undefined;
  }

  has(hex: string): boolean {
    return this.get(hex) !== undefined;
  }

  *keys(): IterableIterator<string> {
    for (const peer of this.byB64.values()) yield peer.publicKeyHex;
  }

  values(): IterableIterator<Peer> {
    return this.byB64.values();
  }

  *entries(): IterableIterator<[string, Peer]> {
    for (const peer of this.byB64.values()) yield [peer.publicKeyHex, peer];
  }

  [Symbol.iterator](): IterableIterator<[string, Peer]> {
    return this.entries();
  }
}
