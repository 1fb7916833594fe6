/**
 * TAI64N timestamps for handshake initiations: 8-byte big-endian TAI64 label
 * (2^62 + 10 + seconds) and 4-byte nanoseconds. Nanoseconds are rounded down to
 * 2^24 ns (about 16.8 ms), as wireguard-go does, so the timestamp does not leak
 * a precise clock to whoever can decrypt it.
 */
export const TAI64N_LEN = 12;
const BASE = 0x400000000000000an;
const WHITENER = 0x1000000;

export function tai64n(epochMs: number = Date.now(), extraNs = 0): Buffer {
  const out = Buffer.alloc(TAI64N_LEN);
  const secs = Math.floor(epochMs / 1000);
  let nanos = Math.floor((epochMs - secs * 1000) * 1e6) + extraNs;
  nanos -= nanos % WHITENER;
  out.writeBigUInt64BE(BASE + BigInt(secs), 0);
  out.writeUInt32BE(nanos, 8);
  return out;
}

/** a is strictly later than b. */
export function tai64nAfter(a: Buffer, b: Buffer): boolean {
  return Buffer.compare(a, b) > 0;
}
