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
});
