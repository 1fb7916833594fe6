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
