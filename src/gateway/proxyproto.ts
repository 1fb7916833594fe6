/**
 * PROXY protocol version 2 header (haproxy's proxy-protocol.txt, section 2.2):
 * the 12-byte signature, version 2 / command PROXY, TCP over IPv4 or IPv6, and
 * the original source and destination addresses and ports, so a backend that
 * asks for it learns the client behind the gateway.
 */
import { parseIP } from '../net/ip.js';

export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** Node reports IPv4 clients of a dual-stack listener as ::ffff:a.b.c.d: the IPv4 address, else addr as it is. */
export function unmappedIPv4(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

export function proxyV2Header(src: string, srcPort: number, dst: string, dstPort: number): Buffer {
  const s = parseIP(unmappedIPv4(src));
  const d = parseIP(unmappedIPv4(dst));
  // assertion: both come from a connected socket's addresses, never from a user
  if (!s || !d) throw new Error(`PROXY v2: bad address ${src} or ${dst}`);
  const v4 = s.length === 4 && d.length === 4;
  const as16 = (a: Buffer) => (a.length === 16 ? a : Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), a]));
  const addrs = v4 ? Buffer.concat([s, d]) : Buffer.concat([as16(s), as16(d)]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(srcPort, 0);
  ports.writeUInt16BE(dstPort, 2);
  const head = Buffer.alloc(4);
  head[0] = 0x21; // version 2, PROXY
  head[1] = v4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  head.writeUInt16BE(addrs.length + 4, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, head, addrs, ports]);
}

/** Parses a v2 header at the start of buf: the addresses, and its length; null if buf does not start with one. */
export function parseProxyV2(buf: Buffer): { src: string; srcPort: number; dst: string; dstPort: number; length: number } | null {
  if (buf.length < 16 || !buf.subarray(0, 12).equals(PROXY_V2_SIGNATURE) || buf[12] !== 0x21) return null;
  const len = buf.readUInt16BE(14);
  if (buf.length < 16 + len) return null;
  const fam = buf[13];
  const n = fam === 0x11 ? 4 : fam === 0x21 ? 16 : 0;
  if (!n || len < 2 * n + 4) return null;
  const fmt = (a: Buffer) => (n === 4 ? [...a].join('.') : a.toString('hex').replace(/(.{4})(?!$)/g, '$1:'));
  return { src: fmt(buf.subarray(16, 16 + n)), dst: fmt(buf.subarray(16 + n, 16 + 2 * n)), srcPort: buf.readUInt16BE(16 + 2 * n), dstPort: buf.readUInt16BE(18 + 2 * n), length: 16 + len };
}
