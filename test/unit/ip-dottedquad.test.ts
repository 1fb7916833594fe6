/**
 * parseIP's dotted-quad fast path (src/net/ip.ts) against the parse it short-cuts (node's isIPv4, then a split)
 * as the oracle: on seeded random and mutated strings it accepts exactly what isIPv4 accepts, with the same
 * bytes, and leaves everything else (IPv6, junk) to the code as before. ipv4HostValue (the ipcache's key of an
 * IPv4 host) against the same oracle, with and without "/32".
 */
import { isIPv4 } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ipv4HostValue, parseIP } from '../../src/net/ip.js';

const oracle = (s: string) => (isIPv4(s) ? [...Buffer.from(s.split('.').map(Number))] : null);
/** ipv4HostValue's oracle: the text without a "/32" suffix is an IPv4 address to isIPv4, as a number. */
const hostOracle = (s: string): number | undefined => {
  const a = s.endsWith('/32') ? s.slice(0, -3) : s;
  return isIPv4(a) ? a.split('.').reduce((v, o) => v * 256 + Number(o), 0) : undefined;
};

describe('parseIP, dotted quads', () => {
  it('agrees with isIPv4 + split on edge cases', () => {
    const cases = ['0.0.0.0', '255.255.255.255', '1.2.3.4', '100.64.1.7', '256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.04', '1.2.3.4 ', ' 1.2.3.4',
      '1..2.3', '1.2.3.', '.1.2.3', '1.2.3.4a', '1.2.3.1000', '999.1.1.1', '1.2.3.٣', '1.2.3.+4', '1.2.3.-4', '12.34.56.789', '00.0.0.0', '0.0.0.00', '1.2.3.4\n', ''];
    for (const s of cases) {
      for (const t of [s, `${s}/32`, `${s}/31`, `${s}/032`, `${s}32`]) if (hostOracle(t) !== ipv4HostValue(t)) expect(ipv4HostValue(t), JSON.stringify(t)).toBe(hostOracle(t));
      const got = parseIP(s);
      if (oracle(s)) expect([...got!], JSON.stringify(s)).toEqual(oracle(s));
      else expect(got === null || got.length === 16, JSON.stringify(s)).toBe(true); // not a dotted quad: IPv6 or null, as before
    }
  });

  it('on seeded random and mutated addresses accepts exactly what isIPv4 accepts, with the same bytes', () => {
    let x = 12345; // mulberry32: a failure reproduces with its seed
    const rnd = () => {
      x = (x + 0x6d2b79f5) | 0;
      let t = Math.imul(x ^ (x >>> 15), 1 | x);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const alphabet = '0123456789.0123456789.:a ';
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      let s = Array.from({ length: 4 }, () => String(Math.floor(rnd() * (rnd() < 0.1 ? 1000 : 256)))).join('.');
      for (let m = Math.floor(rnd() * 3); m > 0; m--) {
        const at = Math.floor(rnd() * (s.length + 1));
        const op = rnd();
        const ch = alphabet[Math.floor(rnd() * alphabet.length)]!;
        s = op < 0.4 ? s.slice(0, at) + ch + s.slice(at) : op < 0.7 ? s.slice(0, at) + s.slice(at + 1) : s.slice(0, at) + ch + s.slice(at + 1);
      }
      const host = rnd() < 0.5 ? `${s}/32` : s;
      if (hostOracle(host) !== ipv4HostValue(host)) expect(ipv4HostValue(host), JSON.stringify(host)).toBe(hostOracle(host));
      const want = oracle(s);
      const got = parseIP(s);
      if (want) {
        accepted++;
        expect(got && [...got], JSON.stringify(s)).toEqual(want);
      } else expect(got === null || got.length === 16, JSON.stringify(s)).toBe(true);
    }
    expect(accepted).toBeGreaterThan(5_000); // the sample reaches both sides
  });
});
