// Mirrors the kernel's counter self-test (and wireguard-go's replay_test.go).
import { describe, expect, it } from 'vitest';
import { testhooks } from '../../src/native/testhooks.js';

const WINDOW = 8128n; // (128 - 1) * 64
const REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n;

describe('replay window', () => {
  it('passes the kernel counter test sequence', () => {
    const f = new testhooks.ReplayFilter();
    const T = (n: bigint, v: boolean) => expect([n, f.validate(n)]).toEqual([n, v]);
    const LIM = WINDOW + 1n;
    T(0n, true); T(1n, true); T(1n, false); T(9n, true); T(8n, true); T(7n, true); T(7n, false);
    T(LIM, true); T(LIM - 1n, true); T(LIM - 1n, false); T(LIM - 2n, true); T(2n, true); T(2n, false);
    T(LIM + 16n, true); T(3n, false); T(LIM + 16n, false); T(LIM * 4n, true);
    T(LIM * 4n - (LIM - 1n), true); T(10n, false); T(LIM * 4n - LIM, false); T(LIM * 4n - (LIM + 1n), false);
    T(LIM * 4n - (LIM - 2n), true); T(LIM * 4n + 1n - LIM, false); T(0n, false);
    T(REJECT_AFTER_MESSAGES, false); T(REJECT_AFTER_MESSAGES - 1n, true); T(REJECT_AFTER_MESSAGES, false);
    T(REJECT_AFTER_MESSAGES - 1n, false); T(REJECT_AFTER_MESSAGES - 2n, true); T(REJECT_AFTER_MESSAGES + 1n, false);
    T(REJECT_AFTER_MESSAGES + 2n, false); T(REJECT_AFTER_MESSAGES - 2n, false); T(REJECT_AFTER_MESSAGES - 3n, true);
    T(0n, false);
  });

  it('accepts a full window in either order', () => {
    let f = new testhooks.ReplayFilter();
    for (let i = 1n; i <= WINDOW; i++) expect(f.validate(i)).toBe(true);
    expect(f.validate(0n)).toBe(true);
    expect(f.validate(0n)).toBe(false);

    f = new testhooks.ReplayFilter();
    for (let i = 2n; i <= WINDOW + 1n; i++) expect(f.validate(i)).toBe(true);
    expect(f.validate(1n)).toBe(true);
    expect(f.validate(0n)).toBe(false);

    f = new testhooks.ReplayFilter();
    for (let i = WINDOW + 1n; i > 0n; i--) expect(f.validate(i)).toBe(true);

    f = new testhooks.ReplayFilter();
    for (let i = WINDOW + 2n; i > 1n; i--) expect(f.validate(i)).toBe(true);
    expect(f.validate(0n)).toBe(false);

    f = new testhooks.ReplayFilter();
    for (let i = WINDOW; i > 1n; i--) expect(f.validate(i)).toBe(true);
    expect(f.validate(WINDOW + 1n)).toBe(true);
    expect(f.validate(0n)).toBe(false);

    f = new testhooks.ReplayFilter();
    for (let i = WINDOW; i > 1n; i--) expect(f.validate(i)).toBe(true);
    expect(f.validate(0n)).toBe(true);
    expect(f.validate(WINDOW + 1n)).toBe(true);
  });

  it('tolerates reordering of up to 8128 counters (1024 would drop)', () => {
    const f = new testhooks.ReplayFilter();
    expect(f.validate(5000n)).toBe(true);
    expect(f.validate(5000n - 4000n)).toBe(true);
  });
});
