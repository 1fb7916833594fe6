/**
 * The binary rows TypeScript and the addon exchange (docs/wire-format.md): every layout in one place,
 * the TypeScript twin of native/src/rows.h (whose static_asserts pin the same sizes and offsets).
 * Little-endian throughout; one address-family encoding in every row: 4 = IPv4, 6 = IPv6.
 */
import { parseIP } from '../net/ip.js';

/** The family byte of every row. */
export enum RowFamily {
  V4 = 4,
  V6 = 6,
}

/** A policy row's action byte (native/src/policy/policymap.h PolicyAction). */
export enum PolicyAction {
  Allow = 0,
  Deny = 1,
  /** To the node's L7 proxy. */
  Redirect = 2,
}

export const IPCACHE_ROW_SIZE = 28;
export const ALLOWED_IP_ROW_SIZE = 18;
export const POLICY_ROW_SIZE = 16;
export const FRONTEND_ROW_SIZE = 20;
export const BACKEND_ROW_SIZE = 24;
export const L7_RECORD_SIZE = 56;
export const FLOW_RECORD_SIZE = 72;

/** The family byte of a 4- or 16-byte address. */
export function rowFamily(addr: Buffer): RowFamily {
  return addr.length === 4 ? RowFamily.V4 : RowFamily.V6;
}

/** The address bytes of a row's family byte (rows.h family_bytes); any other value throws, as the addon refuses it. */
export function familyBytes(family: number | undefined): 4 | 16 {
  if (family === RowFamily.V4) return 4;
  if (family === RowFamily.V6) return 16;
  throw new TypeError(`row family ${family}: 4 or 6`);
}

/**
 * A Device.ipcacheUpdate row: family, prefix length, 2 reserved, identity u32le, endpoint u32le
 * (local endpoint id, 0 = not on this node), address[16].
 */
export function ipcacheRow(addr: Buffer, cidr: number, identity: number, endpoint: number): Buffer {
  const row = Buffer.alloc(IPCACHE_ROW_SIZE);
  row[0] = rowFamily(addr);
  row[1] = cidr;
  row.writeUInt32LE(identity >>> 0, 4);
  row.writeUInt32LE(endpoint >>> 0, 8);
  addr.copy(row, 12);
  return row;
}

/** Device.allowedIPs rows (addon → agent): family, prefix length, address[16] (the addon's masked to the length; these as given). */
export function allowedIPRows(prefixes: ReadonlyArray<{ addr: Buffer; cidr: number }>): Buffer {
  const b = Buffer.alloc(prefixes.length * ALLOWED_IP_ROW_SIZE);
  prefixes.forEach((p, i) => {
    const o = i * ALLOWED_IP_ROW_SIZE;
    b[o] = rowFamily(p.addr);
    b[o + 1] = p.cidr;
    p.addr.copy(b, o + 2);
  });
  return b;
}

/** The prefixes of allowedIPRows (each address a view into `rows`: they share its memory); a bad family throws. */
export function readAllowedIPRows(rows: Buffer): Array<{ addr: Buffer; cidr: number }> {
  const out: Array<{ addr: Buffer; cidr: number }> = [];
  for (let o = 0; o + ALLOWED_IP_ROW_SIZE <= rows.length; o += ALLOWED_IP_ROW_SIZE) {
    out.push({ addr: rows.subarray(o + 2, o + 2 + familyBytes(rows[o])), cidr: rows[o + 1]! });
  }
  return out;
}

/** One policy map entry as Device.setEndpointPolicy takes it. */
export interface PolicyRowInput {
  identity: number;
  proto: number;
  action: PolicyAction;
  lo: number;
  hi: number;
  rule: number;
}

/** Policy rows: identity u32le, proto, action, portLo u16le, portHi u16le, 2 reserved, rule u32le. */
export function policyRows(entries: readonly PolicyRowInput[]): Buffer {
  const b = Buffer.alloc(entries.length * POLICY_ROW_SIZE);
  entries.forEach((e, i) => {
    const o = i * POLICY_ROW_SIZE;
    b.writeUInt32LE(e.identity >>> 0, o);
    b[o + 4] = e.proto;
    b[o + 5] = e.action;
    b.writeUInt16LE(e.lo, o + 6);
    b.writeUInt16LE(e.hi, o + 8);
    b.writeUInt32LE(e.rule >>> 0, o + 12);
  });
  return b;
}

/** policyRows' rows decoded (the addon's policyMapEntries answers in them). */
export function decodePolicyRows(b: Buffer): PolicyRowInput[] {
  const out: PolicyRowInput[] = [];
  for (let o = 0; o + POLICY_ROW_SIZE <= b.length; o += POLICY_ROW_SIZE)
    out.push({ identity: b.readUInt32LE(o), proto: b[o + 4]!, action: b[o + 5]!, lo: b.readUInt16LE(o + 6), hi: b.readUInt16LE(o + 8), rule: b.readUInt32LE(o + 12) });
  return out;
}

/** The native map's order (policymap.h): grouped by identity ascending, in a group denies, redirects, allows, else as given. */
export function lookupOrder(rows: readonly PolicyRowInput[]): PolicyRowInput[] {
  const rank = (a: PolicyAction) => (a === PolicyAction.Deny ? 0 : a === PolicyAction.Redirect ? 1 : 2);
  return [...rows].sort((a, b) => a.identity - b.identity || rank(a.action) - rank(b.action));
}

const PROTO = { TCP: 6, UDP: 17 } as const;

/** A frontend row (family, protocol, port u16le, address[16]). Throws on a VIP that is not an IP address. */
export function frontendRow(vip: string, port: number, protocol: 'TCP' | 'UDP'): Buffer {
  const addr = parseIP(vip);
  if (!addr) throw new Error(`bad VIP ${vip}`);
  const b = Buffer.alloc(FRONTEND_ROW_SIZE);
  b[0] = rowFamily(addr);
  b[1] = PROTO[protocol];
  b.writeUInt16LE(port, 2);
  addr.copy(b, 4);
  return b;
}

/** Backend rows (family, reserved, port u16le, weight u32le, address[16]) of [backend, weight] pairs. */
export function backendRows(rows: ReadonlyArray<readonly [{ ip: string; port: number }, number]>): Buffer {
  const b = Buffer.alloc(BACKEND_ROW_SIZE * rows.length);
  rows.forEach(([be, weight], i) => {
    const addr = parseIP(be.ip)!;
    const o = i * BACKEND_ROW_SIZE;
    b[o] = rowFamily(addr);
    b.writeUInt16LE(be.port, o + 2);
    b.writeUInt32LE(weight, o + 4);
    addr.copy(b, o + 8);
  });
  return b;
}

/** One L7 record, decoded from the native proxy's rows (docs/wire-format.md "L7 records"). */
export interface NativeL7Record {
  timeMs: number;
  client: Buffer;
  clientPort: number;
  identity: number;
  dst: Buffer;
  dstPort: number;
  denied: boolean;
  status: number;
  latencyUs: number;
  ref: number;
  generation: number;
  method: string;
  path: string;
  host: string;
}

/** Decodes L7Proxy.drain()'s rows; method, path and host are bytes from the request head (latin1 keeps them exact). */
export function decodeL7Records(rows: Buffer, text: Buffer): NativeL7Record[] {
  const out: NativeL7Record[] = [];
  for (let o = 0; o + L7_RECORD_SIZE <= rows.length; o += L7_RECORD_SIZE) {
    const t = rows.readUInt32LE(o + 40);
    const ml = rows.readUInt16LE(o + 44);
    const pl = rows.readUInt16LE(o + 46);
    const hl = rows.readUInt16LE(o + 48);
    out.push({
      timeMs: rows.readDoubleLE(o),
      client: rows.subarray(o + 8, o + 12),
      dst: rows.subarray(o + 12, o + 16),
      clientPort: rows.readUInt16LE(o + 16),
      dstPort: rows.readUInt16LE(o + 18),
      identity: rows.readUInt32LE(o + 20),
      status: rows.readUInt16LE(o + 24),
      denied: rows[o + 26] === 1,
      latencyUs: rows.readUInt32LE(o + 28),
      ref: rows.readInt32LE(o + 32),
      generation: rows.readUInt32LE(o + 36),
      method: text.toString('latin1', t, t + ml),
      path: text.toString('latin1', t + ml, t + ml + pl),
      host: text.toString('latin1', t + ml + pl, t + ml + pl + hl),
    });
  }
  return out;
}
