/**
 * What a peer's handshake is built from besides the peer's own key: the local static identity, the device's
 * clock and the preshared key (s23node); and where the device reads a peer's allowed IPs (s39). Every peer of a
 * device has the same identity, clock and reader and nearly every one the all-zero preshared key, so those peers
 * share one PeerKeying: one field per peer instead of four (24 B per peer of an agent's 16,000, 64-bit V8 without
 * pointer compression, as Node ships it).
 *
 * Shape: immutable { identity, now, presharedKey, allowed }; a change (rekey, a preshared key set) gives the
 * peer another object, so no peer sees another's change. Sharing: sharedKeying() keeps, per reader (WireGuardDevice's
 * `allowedIPsReader`, one object per device: this file sees the reader, not the device), the last shared object
 * made, and returns it while the identity and clock asked for are the same (a WeakMap by the reader: the entry
 * goes with its device and holds nothing of another one). s39's first cut kept it per clock function, as before;
 * with the reader inside, a clock given to several devices (or Date.now) kept the last device alive (review of
 * s39, test/unit/keying-retention.test.ts). A peer with a preshared key of its own holds an object of its own
 * (~56 B, as the field it replaces held a Buffer of its own anyway).
 * Bound: one cached object per live reader (device), and one for the peers made outside a device (NO_ALLOWED,
 * for the process's life: it keeps the last such peer's identity; only tests make such peers).
 */
import type { StaticIdentity } from './noise.js';
import type { Prefix } from '../net/ip.js';

/** Where a peer's allowed IPs are read (WireGuardDevice: the data path's table): one object per device. */
export interface AllowedIPsReader {
  /** The allowed IPs of peer `id` in the order set, without those another peer took since (new objects per call). */
  allowedIPsOf(id: number): Prefix[];
}

/** A peer made outside a device (tests) holds none. */
export const NO_ALLOWED: AllowedIPsReader = Object.freeze({ allowedIPsOf: () => [] });

/** The default preshared key (none: 32 zero bytes, whitepaper §5.4.2); never written, peers replace it. */
export const ZERO_PSK = Buffer.alloc(32);

export class PeerKeying {
  constructor(
    /** The local static identity (null: no private key yet, no handshake can run). */
    readonly identity: StaticIdentity | null,
    /** The device's monotonic clock (ms). */
    readonly now: () => number,
    /** 32 bytes; ZERO_PSK itself when none was set. */
    readonly presharedKey: Buffer,
    /** Reads the peer's allowed IPs (the device's table); not the IPs themselves. */
    readonly allowed: AllowedIPsReader,
  ) {}
}

const shared = new WeakMap<AllowedIPsReader, PeerKeying>();

/**
 * The keying of a peer with `identity`, clock `now`, reader `allowed` and no preshared key: the reader's cached one
 * while its identity and clock are these, else a new one cached in its place (peers holding the old one keep it).
 * O(1); never throws.
 */
export function sharedKeying(
  identity: StaticIdentity | null,
  now: () => number,
  allowed: AllowedIPsReader,
): PeerKeying {
  const k = shared.get(allowed);
  if (k && k.identity === identity && k.now === now) return k;
  const made = new PeerKeying(identity, now, ZERO_PSK, allowed);
  shared.set(allowed, made);
  return made;
}
