import { describe, expect, it } from 'vitest';
import { testhooks } from '../../src/native/testhooks.js';

const MS = 1_000_000n;

describe('handshake rate limiter (20/s, burst 5)', () => {
  it('allows a burst of 5 then one every 50 ms', () => {
    const rl = new testhooks.RateLimiter();
    const ip = Buffer.from([198, 18, 0, 1]);
    const t0 = 10_000n * MS;
    const burst = Array.from({ length: 8 }, () => rl.allow(ip, t0));
    expect(burst).toEqual([true, true, true, true, true, false, false, false]);
    expect(rl.allow(ip, t0 + 49n * MS)).toBe(false);
    expect(rl.allow(ip, t0 + 51n * MS)).toBe(true);
    expect(rl.allow(ip, t0 + 52n * MS)).toBe(false);
  });

  it('keeps sources apart', () => {
    const rl = new testhooks.RateLimiter();
    const t0 = 20_000n * MS;
    const a = Buffer.from([198, 18, 0, 1]);
    const b = Buffer.alloc(16, 7);
    for (let i = 0; i < 5; i++) rl.allow(a, t0);
    expect(rl.allow(a, t0)).toBe(false);
    expect(rl.allow(b, t0)).toBe(true);
  });

  it('refills to the burst after idling and forgets idle sources', () => {
    const rl = new testhooks.RateLimiter();
    const ip = Buffer.from([198, 18, 0, 9]);
    const t0 = 30_000n * MS;
    for (let i = 0; i < 5; i++) rl.allow(ip, t0);
    expect(rl.allow(ip, t0)).toBe(false);
    const later = t0 + 10_000n * MS;
    expect(rl.allow(Buffer.from([1, 2, 3, 4]), later)).toBe(true); // triggers the sweep
    expect(rl.size()).toBe(1);
    expect(Array.from({ length: 6 }, () => rl.allow(ip, later))).toEqual([true, true, true, true, true, false]);
  });

  // Red-team finding: one /64 holder took all 65,536 slots, and then every new source (IPv4 too) was refused.
  const TABLE = 65_536;
  const v6 = (prefix: number, host: number): Buffer => {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(0x20010db8, 0);
    b.writeUInt32BE(prefix, 4); // bits 32..63: which /64
    b.writeUInt32BE(host, 12); // the interface identifier, inside the /64
    return b;
  };

  it('keys IPv6 by /64: its addresses share one bucket and one slot', () => {
    const rl = new testhooks.RateLimiter();
    const t0 = 40_000n * MS;
    const allowed = Array.from({ length: TABLE }, (_, i) => rl.allow(v6(7, i), t0)).filter(Boolean).length;
    expect(allowed).toBe(5); // the /64's burst, not one burst per address
    expect(rl.size()).toBe(1);
    expect(rl.allow(v6(8, 1), t0)).toBe(true); // the next /64 is another source
    expect(rl.allow(Buffer.from([198, 18, 0, 1]), t0)).toBe(true);
  });

  it('a table full of IPv6 sources leaves IPv4 sources their own table', () => {
    const rl = new testhooks.RateLimiter();
    const t0 = 50_000n * MS;
    for (let i = 0; i < TABLE; i++) rl.allow(v6(i, 1), t0);
    expect(rl.size()).toBe(TABLE);
    expect(rl.allow(Buffer.from([198, 18, 0, 1]), t0)).toBe(true);
    expect(rl.allow(Buffer.from([198, 18, 0, 2]), t0)).toBe(true);
  });

  it('a full table slows new sources through the shared overflow bucket, never refuses them all', () => {
    const rl = new testhooks.RateLimiter();
    const t0 = 60_000n * MS;
    for (let i = 0; i < TABLE; i++) rl.allow(Buffer.from([100, 64, i >> 8, i & 255]), t0);
    const later = t0 + 500n * MS; // every tracked source seen within the last second
    // 100/s with a burst of 5, for all the sources left out, together
    const newcomers = Array.from({ length: 8 }, (_, i) => rl.allow(Buffer.from([198, 18, 1, i]), later));
    expect(newcomers).toEqual([true, true, true, true, true, false, false, false]);
    expect(rl.allow(Buffer.from([198, 18, 2, 1]), later + 11n * MS)).toBe(true);
    expect(rl.allow(Buffer.from([198, 18, 2, 2]), later + 11n * MS)).toBe(false);
    expect(rl.size()).toBe(TABLE); // the bound holds
  });

  it('a source idle for a second gives its slot to a new one, oldest first', () => {
    const rl = new testhooks.RateLimiter();
    const t0 = 70_000n * MS;
    for (let i = 0; i < TABLE; i++) rl.allow(Buffer.from([100, 65, i >> 8, i & 255]), i < 10 ? t0 : t0 + 900n * MS);
    const later = t0 + 1_500n * MS; // the first 10 have idled past a second, the rest not
    for (let i = 0; i < 10; i++) expect(rl.allow(Buffer.from([198, 18, 3, i]), later)).toBe(true);
    expect(rl.size()).toBe(TABLE);
    // the table is full of live sources again: newcomers now share the overflow bucket's burst of 5
    const rest = Array.from({ length: 6 }, (_, i) => rl.allow(Buffer.from([198, 18, 4, i]), later));
    expect(rest).toEqual([true, true, true, true, true, false]);
  });

  it('refuses an address of another length', () => {
    const rl = new testhooks.RateLimiter();
    expect(rl.allow(Buffer.alloc(6, 1), 80_000n * MS)).toBe(false);
    expect(rl.size()).toBe(0);
  });
});
