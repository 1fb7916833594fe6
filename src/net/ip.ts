/** IP prefix parsing and formatting shared by UAPI, configs and tests. */
import { isIPv4, isIPv6 } from 'node:net';
import { ConfigError } from '../errors.js';

export interface Prefix {
  /** 4 or 16 bytes, masked to `cidr`. */
  addr: Buffer;
  cidr: number;
}

/**
 * A dotted quad as isIPv4 accepts it (four decimal octets ≤ 255, no leading zero), scanned once: its 4 bytes,
 * or undefined for anything else (parseIP then decides as before). kvstoremesh parses every copied node's and
 * endpoint's addresses for the claim checks (issue 16: isIPv4's regular expression, a split and an array per
 * address were ~2 % of its thread during churn).
 */
function dottedQuad(text: string): Buffer | undefined {
  const v = quadValue(text, text.length);
  if (v < 0) return undefined;
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(v);
  return out;
}

/** The dotted quad text[0, end) as isIPv4 accepts it, as an unsigned 32-bit number; -1 for anything else. */
function quadValue(text: string, end: number): number {
  if (end < 7 || end > 15) return -1;
  let out = 0;
  let i = 0;
  for (let o = 0; o < 4; o++) {
    if (o > 0 && text.charCodeAt(i++) !== 46) return -1; // '.'
    const start = i;
    let v = 0;
    for (let c = text.charCodeAt(i); c >= 48 && c <= 57 && i - start < 3 && i < end; c = text.charCodeAt(++i)) v = v * 10 + (c - 48);
    const len = i - start;
    if (len === 0 || v > 255 || (len > 1 && text.charCodeAt(start) === 48)) return -1;
    out = out * 256 + v;
  }
  return i === end ? out : -1;
}

/**
 * An IPv4 host as a bare dotted quad or with "/32" ("100.65.1.10", "100.65.1.10/32"), as an unsigned 32-bit
 * number, without a Buffer (the ipcache keys its IPv4 hosts by number: src/policy/ipcache.ts); undefined for
 * anything else, including what parsePrefix would still read as an IPv4 host through isIPv4, which the caller
 * then parses the slow way.
 */
export function ipv4HostValue(text: string): number | undefined {
  const n = text.length;
  const end = n > 3 && text.charCodeAt(n - 3) === 47 && text.charCodeAt(n - 2) === 51 && text.charCodeAt(n - 1) === 50 ? n - 3 : n; // "/32"
  const v = quadValue(text, end);
  return v < 0 ? undefined : v;
}

/** An IPv4 address given as an unsigned 32-bit number (ipv4HostValue's) in formatIP's text. */
export function formatIPv4Value(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

export function parseIP(text: string): Buffer | null {
  const quad = dottedQuad(text);
  if (quad) return quad;
  if (isIPv4(text)) return Buffer.from(text.split('.').map((x) => Number(x)));
  if (!isIPv6(text)) return null;
  let s = text;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  // An embedded dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const q = tail.split('.').map(Number);
    s = s.slice(0, lastColon + 1) + ((q[0]! << 8) | q[1]!).toString(16) + ':' + ((q[2]! << 8) | q[3]!).toString(16);
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = rest !== undefined && rest !== '' ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) return null;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/**
 * One address as formatIP writes it back ("100.80.0.9", "fd00::1"): its bytes, else null (a prefix, a range, a
 * zone, upper-case or uncompressed IPv6). For values used as keys, so one address has one spelling.
 */
export function parseCanonicalIP(text: string): Buffer | null {
  const addr = parseIP(text);
  return addr && formatIP(addr) === text ? addr : null;
}

export function formatIP(addr: Buffer): string {
  // a template, not Array.from().join(): this runs per flow record
  if (addr.length === 4) return `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(addr.readUInt16BE(i).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return groups.slice(0, best).join(':') + '::' + groups.slice(best + bestLen).join(':');
}

export function maskPrefix(addr: Buffer, cidr: number): Buffer {
  const out = Buffer.from(addr);
  for (let i = 0; i < out.length; i++) {
    const keep = cidr - 8 * i;
    if (keep >= 8) continue;
    out[i] = keep <= 0 ? 0 : out[i]! & (0xff << (8 - keep));
  }
  return out;
}

/** Parses "a.b.c.d/n" or "x::y/n" (a bare address is a host prefix). */
export function parsePrefix(text: string, field = 'allowed_ip'): Prefix {
  const slash = text.indexOf('/');
  const ipText = slash < 0 ? text : text.slice(0, slash);
  const addr = parseIP(ipText);
  if (!addr) throw new ConfigError(field, `"${text}" is not an IP address or prefix`);
  const max = addr.length * 8;
  let cidr = max;
  if (slash >= 0) {
    const c = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(c) || Number(c) > max) throw new ConfigError(field, `"${text}" has an invalid prefix length`);
    cidr = Number(c);
  }
  return { addr: maskPrefix(addr, cidr), cidr };
}

/** A masked prefix as a map key: its address bytes in hex, "/", its length (one key per prefix and family). */
export function prefixKey(p: Prefix): string {
  return `${p.addr.toString('hex')}/${p.cidr}`;
}

/** The prefix of a prefixKey() (its inverse: the same bytes and length). */
export function prefixFromKey(key: string): Prefix {
  const slash = key.indexOf('/');
  return { addr: Buffer.from(key.slice(0, slash), 'hex'), cidr: Number(key.slice(slash + 1)) };
}

export function formatPrefix(p: Prefix): string {
  return `${formatIP(p.addr)}/${p.cidr}`;
}

/**
 * Whether `addr` lies in `p` (same family): `addr` masked to p.cidr equals p.addr, compared byte by byte without
 * building the masked copy (kvstoremesh checks every copied node's addresses against every cluster's pod and
 * underlay CIDRs and notAHost's ranges: a Buffer per test was ~2 % of its thread during churn, plus its garbage).
 * A p.addr not masked to its length (never from parsePrefix) holds no address, as before.
 */
export function prefixContains(p: Prefix, addr: Buffer): boolean {
  const n = addr.length;
  if (n !== p.addr.length) return false;
  const whole = Math.min(p.cidr >> 3, n);
  for (let i = 0; i < whole; i++) if (addr[i] !== p.addr[i]) return false;
  if (whole === n) return true;
  if ((addr[whole]! & ((0xff00 >> (p.cidr & 7)) & 0xff)) !== p.addr[whole]) return false;
  for (let i = whole + 1; i < n; i++) if (p.addr[i] !== 0) return false;
  return true;
}

/** Whether prefix `outer` holds prefix `inner` whole (same family, no wider): allocates nothing (hot paths). */
export function prefixCovers(outer: Prefix, inner: Prefix): boolean {
  if (outer.addr.length !== inner.addr.length || outer.cidr > inner.cidr) return false;
  const whole = outer.cidr >> 3;
  for (let i = 0; i < whole; i++) if (outer.addr[i] !== inner.addr[i]) return false;
  const mask = (0xff00 >> (outer.cidr & 7)) & 0xff;
  return mask === 0 || ((outer.addr[whole]! ^ inner.addr[whole]!) & mask) === 0;
}

/** Parses "host:port" / "[v6]:port" as UAPI and wg(8) write endpoints. */
export function parseEndpoint(text: string, field = 'endpoint'): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) throw new ConfigError(field, `"${text}" is not HOST:PORT`);
  const addr = parseIP(m[1]!);
  const port = Number(m[2]);
  if (!addr || port < 1 || port > 65535) throw new ConfigError(field, `"${text}" is not a valid IP:port`);
  return { host: formatIP(addr), port };
}

export function formatEndpoint(ep: { host: string; port: number }): string {
  return ep.host.includes(':') ? `[${ep.host}]:${ep.port}` : `${ep.host}:${ep.port}`;
}

/**
 * Ranges whose addresses are no host reachable across a routed network (RFC 6890), or that every host has for
 * itself: what each is. The first that holds names it. Addresses that embed an IPv4 one in a routed prefix
 * (NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) are not decoded: they reach a routed host as any
 * unicast address does (docs/security.md, "A node names its own addresses").
 */
const NOT_A_HOST: ReadonlyArray<readonly [Prefix, string]> = (
  [
    ['0.0.0.0/8', 'unspecified ("this network")'],
    ['127.0.0.0/8', 'loopback'],
    ['169.254.0.0/16', 'link-local'],
    ['224.0.0.0/4', 'multicast'],
    ['240.0.0.0/4', 'reserved or broadcast'],
    ['::/128', 'unspecified'],
    ['::1/128', 'loopback'],
    // deprecated forms that carry an IPv4 address (::7f00:1 is 127.0.0.1, ::a9fe:a9fe 169.254.169.254):
    // IPv4-compatible (RFC 4291), IPv4-mapped, IPv4-translated (SIIT, RFC 2765); no host has one as its own
    ['::/96', 'IPv4-compatible (deprecated)'],
    ['::ffff:0:0/96', 'IPv4-mapped'],
    ['::ffff:0:0:0/96', 'IPv4-translated (SIIT)'],
    ['fe80::/10', 'link-local'],
    ['fec0::/10', 'site-local (deprecated)'],
    ['ff00::/8', 'multicast'],
    // cloud platform services outside link-local: like 169.254.169.254 (the metadata service of AWS, GCP's
    // metadata.google.internal, Azure IMDS, DigitalOcean, OpenStack; AWS's IPv4 resolver 169.254.169.253 and
    // time 169.254.169.123 are link-local too), each node's own host answers them. Sources: AWS EC2 user guide
    // ("Instance metadata service", "Amazon Time Sync Service") and VPC guide ("Amazon DNS server": fd00:ec2::253
    // on Nitro); Alibaba ECS "instance metadata"; Oracle OCI "Getting instance metadata"; Azure "What is IP
    // address 168.63.129.16?" (the virtual public IP of the host: DNS, DHCP, health probes, wire server).
    ['fd00:ec2::254/128', 'the AWS metadata service (IPv6)'],
    ['fd00:ec2::253/128', 'the AWS VPC DNS resolver (IPv6)'],
    ['fd00:ec2::123/128', 'the AWS time service (IPv6)'],
    ['100.100.100.200/32', 'the Alibaba Cloud metadata service'],
    ['192.0.0.192/32', 'the Oracle Cloud metadata service'],
    ['168.63.129.16/32', "Azure's host address (DNS, DHCP, wire server)"],
  ] as const
).map(([p, what]) => [parsePrefix(p), what] as const);

/**
 * Why `addr` (4 or 16 bytes) cannot be another machine's address on the underlay (loopback, link-local,
 * site-local, multicast, unspecified, broadcast, IPv4 embedded in ::/96 or ::ffff forms; the cloud platform
 * services each node's own host answers: 169.254.169.254, fd00:ec2::254/253/123, 100.100.100.200, 192.0.0.192,
 * 168.63.129.16), or undefined for an address that can.
 */
export function notAHost(addr: Buffer): string | undefined {
  for (const [p, what] of NOT_A_HOST) if (p.addr.length === addr.length && prefixContains(p, addr)) return what;
  return undefined;
}

/**
 * The first range of notAHost's that overlaps prefix `p` ("169.254.169.254/32 (link-local)"), or undefined: a
 * route for `p` would take some such address (the node's own metadata service, resolver, loopback) off its host.
 */
export function notAHostIn(p: Prefix): string | undefined {
  // parsed prefixes are masked: two overlap when one holds the other (no allocation: a relay offer's every CIDR)
  const hit = NOT_A_HOST.find(([r]) => prefixCovers(r, p) || prefixCovers(p, r));
  return hit ? `${formatPrefix(hit[0])} (${hit[1]})` : undefined;
}
