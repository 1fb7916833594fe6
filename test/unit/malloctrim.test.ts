// glibc's malloc arenas trimmed after a change (src/agent/malloctrim.ts): due when the arenas hold the floor
// free and that much more became free, or the RSS grew that much, since the last trim; never for what was
// trimmed; at most one per interval. The addon's mallocInfo/mallocTrim on a real fragmented arena, alone and
// through the agent's periodic check (heapcompaction.ts).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { startHeapCompaction } from '../../src/agent/heapcompaction.js';
import { checkMallocTrim, mallocTrims, type MallocControl } from '../../src/agent/malloctrim.js';
import { native } from '../../src/native/binding.js';
import { waitFor } from '../../src/testbed/netns.js';
import type { Logger } from '../../src/log.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MiB = 2 ** 20;

/** A malloc whose free bytes and the process's RSS the test sets. */
function fake(free: number | null, rss = 500 * MiB) {
  const f = { free, rss, info: 0, trim: 0 };
  const malloc: MallocControl = { mallocInfo: () => (f.info++, f.free === null ? null : { freeBytes: f.free }), mallocTrim: () => (f.trim++, true) };
  return { malloc, f, opts: { minIntervalMs: 0, minFreeBytes: 8 * MiB, rss: () => f.rss } };
}

describe('malloc trim (the rule)', () => {
  it('trims what is free once; again only after that much more became free', () => {
    const { malloc, f, opts } = fake(64 * MiB);
    const before = mallocTrims;
    for (let t = 0; t < 5; t++) checkMallocTrim(malloc, t, opts);
    expect(f.trim).toBe(1); // the 64 MiB free is trimmed once, not at every check
    f.free = 10 * MiB; // reused
    checkMallocTrim(malloc, 5, opts);
    f.free = 17 * MiB; // 7 MiB freed again: below the floor
    checkMallocTrim(malloc, 6, opts);
    expect(f.trim).toBe(1);
    f.free = 26 * MiB; // 16 MiB since the least: due
    checkMallocTrim(malloc, 7, opts);
    expect(f.trim).toBe(2);
    expect(mallocTrims - before).toBe(2);
  });

  it('trims when the RSS grew by the floor with the free bytes where they were (reused and freed again between checks)', () => {
    const { malloc, f, opts } = fake(64 * MiB);
    checkMallocTrim(malloc, 0, opts);
    f.rss += 7 * MiB;
    checkMallocTrim(malloc, 1, opts);
    expect(f.trim).toBe(1);
    f.rss += 2 * MiB;
    expect(checkMallocTrim(malloc, 2, opts)).toBeDefined();
    expect(f.trim).toBe(2);
    f.free = 4 * MiB; // below the floor: however much the RSS grows
    f.rss += 100 * MiB;
    checkMallocTrim(malloc, 3, opts);
    expect(f.trim).toBe(2);
  });

  it('never below the floor, never without a figure, at most one per interval', () => {
    const below = fake(7 * MiB);
    const unknown = fake(null);
    const busy = fake(16 * MiB);
    const slow = { ...busy.opts, minIntervalMs: 9_000 };
    for (let t = 0; t < 20; t++) {
      checkMallocTrim(below.malloc, t * 1000, below.opts);
      checkMallocTrim(unknown.malloc, t * 1000, unknown.opts);
      busy.f.free = busy.f.free! + 16 * MiB; // always due, but for the interval
      checkMallocTrim(busy.malloc, t * 1000, slow);
    }
    expect([below.f.trim, unknown.f.trim]).toEqual([0, 0]);
    expect(below.f.info).toBe(20); // read at every check: the least free stays current
    expect(busy.f.trim).toBe(3); // at 0, 9 and 18 s
  });

  it('the agent check runs it at each tick; a failing malloc stops the trims alone', async () => {
    const infos: string[] = [];
    const warns: string[] = [];
    const log = { info: (_o: unknown, m: string) => void infos.push(m), warn: (_o: unknown, m: string) => void warns.push(m), error: () => undefined, debug: () => undefined } as unknown as Logger;
    const ok = fake(64 * MiB);
    let bad = 0;
    const broken: MallocControl = { mallocInfo: () => (bad++, { freeBytes: 64 * MiB }), mallocTrim: () => { throw new Error('no trim here'); } };
    const stops = [startHeapCompaction(log, { checkMs: 20, minHolesBytes: 2 ** 40, malloc: ok.malloc, trim: ok.opts }), startHeapCompaction(log, { checkMs: 20, minHolesBytes: 2 ** 40, malloc: broken, trim: { minIntervalMs: 0 } })];
    await waitFor(() => ok.f.info >= 5 && warns.length > 0, 10_000, 'ticks');
    for (const stop of stops) stop();
    expect(ok.f.trim).toBe(1);
    expect(infos).toEqual(['malloc arenas trimmed']);
    expect(warns).toEqual(['malloc trims are off: a trim failed']);
    expect(bad).toBe(1);
  });
});

/** touched 4 KiB blocks from malloc, one in 8 kept (the last too): 7/8 free between live blocks */
function fragmentArena(n: number): Buffer[] {
  const blocks: Buffer[] = [];
  for (let i = 0; i < n; i++) blocks.push(Buffer.allocUnsafeSlow(4096).fill(1));
  return blocks.filter((_, i) => i % 8 === 7);
}

describe('malloc trim (the addon, glibc)', () => {
  it('reads the arenas, and its trim gives the free pages of a fragmented arena back', async () => {
    const before = native.mallocInfo();
    expect(before).not.toBeNull(); // this machine's C library is glibc ≥ 2.33
    expect(before!.arenaBytes).toBeGreaterThanOrEqual(before!.inUseBytes);
    const kept = fragmentArena(20_000); // ~70 MiB free between live blocks, which glibc keeps on its own
    const free0 = before!.freeBytes;
    gc();
    await waitFor(() => native.mallocInfo()!.freeBytes > free0 + 40 * MiB, 10_000, 'V8 to free the backing stores'); // off this thread
    const rss = process.memoryUsage.rss();
    expect(native.mallocTrim()).toBe(true);
    expect(process.memoryUsage.rss()).toBeLessThan(rss - 40 * MiB);
    expect(kept.length).toBe(2_500);
    expect(kept.every((b) => b[0] === 1 && b[4095] === 1)).toBe(true);
  });

  it('the agent check trims after a change, and again after pages were reused and freed between two checks', async () => {
    const infos: string[] = [];
    const log = { info: (_o: unknown, m: string) => void infos.push(m), warn: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;
    let reads = 0;
    const malloc: MallocControl = { mallocInfo: () => (reads++, native.mallocInfo()), mallocTrim: () => native.mallocTrim() }; // its own trim state
    const opts = { checkMs: 50, minHolesBytes: 2 ** 40, malloc, trim: { minIntervalMs: 0 } };
    let kept = fragmentArena(20_000);
    gc();
    let stop = startHeapCompaction(log, opts);
    await waitFor(() => infos.length >= 1, 10_000, 'a first trim');
    let at = reads;
    await waitFor(() => reads >= at + 3, 10_000, 'checks after it');
    stop(); // no check sees the burst: the free bytes end where they were, the pages are resident again
    const free0 = native.mallocInfo()!.freeBytes;
    const trimmed = process.memoryUsage.rss();
    let burst: Buffer[] | undefined = [];
    for (let i = 0; i < 15_000; i++) burst.push(Buffer.allocUnsafeSlow(4096).fill(2));
    burst = undefined;
    gc();
    await waitFor(() => native.mallocInfo()!.freeBytes >= free0 - MiB, 10_000, 'the burst freed');
    expect(process.memoryUsage.rss()).toBeGreaterThan(trimmed + 20 * MiB);
    const trims = infos.length;
    stop = startHeapCompaction(log, opts); // the same MallocControl: the same trim state
    try {
      at = reads;
      await waitFor(() => infos.length > trims, 10_000, 'a second trim');
      expect(reads - at).toBeLessThanOrEqual(2); // at its first check (or the next, for a read racing the start)
      await waitFor(() => process.memoryUsage.rss() < trimmed + 20 * MiB, 10_000, 'the burst given back');
    } finally {
      stop();
    }
    expect(kept.length).toBe(2_500);
    kept = [];
  });
});
