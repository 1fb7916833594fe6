/** Builders and checkers for raw IP packets used by offload and fuzz-style tests. */

function sum16(b: Buffer, start: number, end: number, acc = 0): number {
  for (let i = start; i + 1 < end; i += 2) acc += b.readUInt16BE(i);
  if ((end - start) % 2) acc += b[end - 1]! << 8;
  return acc;
}

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

export function tcpPacket(v: 4 | 6, seq: number, payload: Buffer, flags: { psh?: boolean }): Buffer {
  const l4 = v === 4 ? 20 : 40;
  const p = Buffer.alloc(l4 + 20 + payload.length);
  if (v === 4) {
    p[0] = 0x45;
    p.writeUInt16BE(p.length, 2);
    p.writeUInt16BE(0x1234, 4);
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    Buffer.from([100, 64, 0, 1]).copy(p, 12);
    Buffer.from([100, 64, 0, 2]).copy(p, 16);
    p.writeUInt16BE(~fold(sum16(p, 0, 20)) & 0xffff, 10);
  } else {
    p[0] = 0x60;
    p.writeUInt16BE(p.length - 40, 4);
    p[6] = 6;
    p[7] = 64;
    p[8] = 0xfd;
    p[23] = 1;
    p[24] = 0xfd;
    p[39] = 2;
  }
  p.writeUInt16BE(40000, l4);
  p.writeUInt16BE(5201, l4 + 2);
  p.writeUInt32BE(seq >>> 0, l4 + 4);
  p.writeUInt32BE(777, l4 + 8);
  p[l4 + 12] = 5 << 4;
  p[l4 + 13] = 0x10 | (flags.psh ? 0x08 : 0);
  p.writeUInt16BE(502, l4 + 14);
  payload.copy(p, l4 + 20);
  p.writeUInt16BE(~fold(tcpPseudo(p, v, l4)) & 0xffff, l4 + 16);
  return p;
}

function tcpPseudo(p: Buffer, v: 4 | 6, l4: number): number {
  const [a, b] = v === 4 ? [12, 20] : [8, 40];
  let s = sum16(p, a, b);
  s += 6 + (p.length - l4);
  return sum16(p, l4, p.length, s);
}

export function tcpChecksumOk(p: Buffer): boolean {
  const v = p[0]! >> 4 === 4 ? 4 : 6;
  return fold(tcpPseudo(p, v, v === 4 ? 20 : 40)) === 0xffff;
}

export function ipv4ChecksumOk(p: Buffer): boolean {
  return fold(sum16(p, 0, 20)) === 0xffff;
}

/** An IPv6 extension header for `l4Packet`: type 0/43/60 (options-style), 44 (fragment), 51 (AH), or any number. */
export interface ExtHeader {
  type: number;
  /** options-style and AH: extra 8-byte (AH: 4-byte) units beyond the minimum */
  units?: number;
  /** fragment header: offset in 8-byte units, more-fragments flag */
  fragOffset?: number;
  more?: boolean;
}

export interface L4PacketOptions {
  v: 4 | 6;
  src: Buffer;
  dst: Buffer;
  proto: number;
  sport?: number;
  dport?: number;
  tcpFlags?: number;
  ext?: ExtHeader[];
  /** IPv4: option bytes (a multiple of 4, NOPs) and fragment offset in 8-byte units */
  ipv4Options?: number;
  ipv4FragOffset?: number;
  ipv4More?: boolean;
  /** bytes after the L4 header (an ICMP error's quoted packet) */
  payload?: Buffer;
}

/**
 * A policy-test packet: IPv4 with options/fragment fields or IPv6 with an
 * extension-header chain, then a minimal L4 header (TCP 20 bytes with flags,
 * anything else 8 bytes with ports or ICMP type in front). Checksums are not
 * filled: the policy path does not read them.
 */
export function l4Packet(o: L4PacketOptions): Buffer {
  const head = Buffer.alloc(o.proto === 6 ? 20 : 8);
  const l4 = Buffer.concat([head, o.payload ?? Buffer.alloc(0)]);
  l4.writeUInt16BE(o.sport ?? 40000, 0);
  l4.writeUInt16BE(o.dport ?? 0, 2);
  if (o.proto === 6) {
    l4[12] = 0x50;
    l4[13] = o.tcpFlags ?? 0x02;
  }
  if (o.v === 4) {
    const ihl = 20 + (o.ipv4Options ?? 0);
    const h = Buffer.alloc(ihl, 1); // option bytes: NOP
    h[0] = 0x40 | (ihl / 4);
    h[1] = 0;
    h.writeUInt16BE(ihl + l4.length, 2);
    h.writeUInt32BE(0, 4);
    h.writeUInt16BE(((o.ipv4More ? 1 : 0) << 13) | (o.ipv4FragOffset ?? 0), 6);
    h[8] = 64;
    h[9] = o.proto;
    h.writeUInt16BE(0, 10);
    o.src.copy(h, 12);
    o.dst.copy(h, 16);
    return Buffer.concat([h, l4]);
  }
  const chain: Buffer[] = [];
  const types = (o.ext ?? []).map((e) => e.type);
  (o.ext ?? []).forEach((e, i) => {
    const next = i + 1 < types.length ? types[i + 1]! : o.proto;
    let b: Buffer;
    if (e.type === 44) {
      b = Buffer.alloc(8);
      b.writeUInt16BE(((e.fragOffset ?? 0) << 3) | (e.more ? 1 : 0), 2);
      b.writeUInt32BE(0xabcd, 4);
    } else if (e.type === 51) {
      b = Buffer.alloc((2 + (e.units ?? 1)) * 4);
      b[1] = e.units ?? 1;
    } else {
      b = Buffer.alloc((1 + (e.units ?? 0)) * 8);
      b[1] = e.units ?? 0;
      b[2] = 1; // PadN option covering the rest
      b[3] = b.length - 4;
    }
    b[0] = next;
    chain.push(b);
  });
  const payload = Buffer.concat([...chain, l4]);
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = types.length ? types[0]! : o.proto;
  h[7] = 64;
  o.src.copy(h, 8);
  o.dst.copy(h, 24);
  return Buffer.concat([h, payload]);
}

/** An ICMP (IPv4) / ICMPv6 message of `type` and `code` with identifier `id` (bytes 4-5), then `payload`. */
export function icmpPacket(v: 4 | 6, from: Buffer, to: Buffer, type: number, id = 0, payload?: Buffer, code = 0): Buffer {
  const p = l4Packet({ v, src: from, dst: to, proto: v === 4 ? 1 : 58, sport: (type << 8) | code, dport: 0, payload });
  p.writeUInt16BE(id, (v === 4 ? 20 : 40) + 4);
  return p;
}
