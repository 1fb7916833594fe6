/**
 * TAI64N timestamps for handshake initiations: 8-byte big-endian TAI64 label
 * (2^62 + 10 + seconds) and 4-byte nanoseconds. Nanoseconds are rounded down to
 * 2^24 ns (about 16.8 ms), as wireguard-go does, so the timestamp does not leak
 * a precise clock to whoever can decrypt it.
 */
export const TAI64N_LEN = 12;
const BASE = 0x400000000000000an;
const WHITENER = 0x1000000;

/** The seconds of `epochMs`'s TAI64N timestamp (before the 2^62 + 10 offset). */
export function tai64nSeconds(epochMs: number): number {
  return Math.floor(epochMs / 1000);
}

/** The whitened nanoseconds of `epochMs`'s TAI64N timestamp (a multiple of 2^24, < 10^9). */
export function tai64nNanos(epochMs: number, extraNs = 0): number {
  const nanos = Math.floor((epochMs - tai64nSeconds(epochMs) * 1000) * 1e6) + extraNs;
  return nanos - (nanos % WHITENER);
}

/**
 * The 12-byte timestamp. The handshake's initiations have theirs written natively from
 * tai64nSeconds / tai64nNanos (native/src/crypto/noise.cc, tai64n); this is the reference.
 */
export function tai64n(epochMs: number = Date.now(), extraNs = 0): Buffer {
  const out = Buffer.alloc(TAI64N_LEN);
  out.writeBigUInt64BE(BASE + BigInt(tai64nSeconds(epochMs)), 0);
  out.writeUInt32BE(tai64nNanos(epochMs, extraNs), 8);
  return out;
}

/** a is strictly later than b. */
export function tai64nAfter(a: Buffer, b: Buffer): boolean {
  return Buffer.compare(a, b) > 0;
}
