/**
 * prefixContains (src/net/ip.ts) compares byte by byte; the oracle is its definition as it was written before:
 * the address masked to the prefix length (maskPrefix) equals the prefix's bytes. Every length of both families,
 * seeded random addresses near and inside each prefix, and prefixes whose bytes are not masked (which hold nothing).
 */
import { describe, expect, it } from 'vitest';
import { formatIP, maskPrefix, prefixContains, type Prefix } from '../../src/net/ip.js';
import { prng } from '../helpers/prng.js';

const oracle = (p: Prefix, addr: Buffer) => addr.length === p.addr.length && maskPrefix(addr, p.cidr).equals(p.addr);

describe('prefixContains', () => {
  it('agrees with mask-and-compare at every length, IPv4 and IPv6, masked and unmasked prefixes', () => {
    const rnd = prng(4242); // a failure reproduces with its seed
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
    let inside = 0;
    let outside = 0;
    for (const n of [4, 16]) {
      for (let cidr = 0; cidr <= n * 8; cidr++) {
        for (let i = 0; i < 60; i++) {
          const base = bytes(n);
          const p: Prefix = { addr: i % 10 === 9 ? base : maskPrefix(base, cidr), cidr }; // one in ten not masked
          // an address inside the prefix with one random bit flipped (or none), and one of the other family
          const addr = Buffer.from(base);
          const bit = Math.floor(rnd() * (n * 8 + 8));
          if (bit < n * 8) addr[bit >> 3]! ^= 0x80 >> (bit & 7);
          for (const a of [addr, bytes(n), bytes(n === 4 ? 16 : 4)]) {
            const want = oracle(p, a);
            expect(prefixContains(p, a), `${formatIP(p.addr)}/${cidr} ${formatIP(a)}`).toBe(want);
            if (want) inside++;
            else outside++;
          }
        }
      }
    }
    expect(inside).toBeGreaterThan(2_000); // the sample reaches both answers
    expect(outside).toBeGreaterThan(2_000);
  });
});
