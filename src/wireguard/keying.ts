/**
 * What a peer's handshake is built from besides the peer's own key: the local static identity, the device's
 * clock and the preshared key (s23node). Every peer of a device has the same identity and clock and nearly every
 * one the all-zero preshared key, so those peers share one PeerKeying: one field per peer instead of three
 * (16 B per peer of an agent's 16,000, 64-bit V8 without pointer compression, as Node ships it).
 *
 * Shape: immutable { identity, now, presharedKey }; a change (rekey, a preshared key set) gives the peer another
 * object, so no peer sees another's change. Sharing: sharedKeying() keeps, per clock function, the last shared
 * object made, and returns it while the identity asked for is the same (a WeakMap: a device's default clock is its
 * own closure and lives as long as the device, so a dropped device's identity is not kept alive here; a clock given
 * to several devices keeps one entry, the last identity asked for, while it lives). A peer with a preshared key of
 * its own holds an object of its own (~48 B, as the field it replaces held a Buffer of its own anyway).
 * Bound: one cached object per live clock function.
 */
import type { StaticIdentity } from './noise.js';

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
  ) {}
}

const shared = new WeakMap<() => number, PeerKeying>();

/** The keying of a peer with `identity`, clock `now` and no preshared key: one object while these stay the same. */
export function sharedKeying(identity: StaticIdentity | null, now: () => number): PeerKeying {
  const k = shared.get(now);
  if (k && k.identity === identity) return k;
  const made = new PeerKeying(identity, now, ZERO_PSK);
  shared.set(now, made);
  return made;
}
