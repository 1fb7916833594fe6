// The agent's heap compaction (src/agent/heapcompaction.ts): one compacting GC
// gives back old-space pages a normal full GC leaves mostly empty; the periodic
// check compacts once the heap is fragmented and quiet, and not when it is not.
// The same check trims glibc's malloc arenas (the addon's mallocTrim) when they
// hold enough free bytes, at most once per interval.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { compactHeap, compactions, mallocTrims, oldSpace, startHeapCompaction, type MallocControl } from '../../src/agent/heapcompaction.js';
import { native } from '../../src/native/binding.js';
import { waitFor } from '../../src/testbed/netns.js';
import type { Logger } from '../../src/log.js';

setFlagsFromString('--expose-gc');
const plainGc = runInNewContext('gc') as () => void;

/** Fills old space with small objects and keeps one in 8: what a sync leaves behind. */
function fragment(): unknown[] {
  const all: unknown[] = [];
  for (let i = 0; i < 1_500_000; i++) all.push({ a: i, b: `k${i}` });
  const keep: unknown[] = [];
  for (let i = 0; i < all.length; i += 8) keep.push(all[i]);
  return keep;
}

function recordingLog(): { log: Logger; infos: string[] } {
  const infos: string[] = [];
  const log = { info: (_o: unknown, msg: string) => void infos.push(msg), warn: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;
  return { log, infos };
}

describe('heap compaction', () => {
  it('one compacting GC frees the pages a normal full GC leaves as holes, keeping every live object', () => {
    const keep = fragment();
    plainGc();
    const before = oldSpace();
    compactHeap();
    const after = oldSpace();
    expect(after.holes).toBeLessThan(before.holes / 4); // a second plain GC frees about half: this needs compaction
    expect(keep.length).toBe(187_500);
    expect((keep[1] as { a: number; b: string })).toEqual({ a: 8, b: 'k8' });
  });

  it('the periodic check compacts a fragmented, quiet heap; never a tidy one', async () => {
    compactHeap();
    const tidy = recordingLog();
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined(); // the main context got no gc
    // tidy: holes below the (huge) floor, however long it runs
    const stopTidy = startHeapCompaction(tidy.log, { checkMs: 20, minIntervalMs: 0, minHolesBytes: 2 ** 40 });
    await new Promise((r) => setTimeout(r, 200));
    stopTidy();
    expect(tidy.infos).toEqual([]);

    const keep = fragment();
    plainGc();
    const busy = recordingLog();
    const stop = startHeapCompaction(busy.log, { checkMs: 20, minIntervalMs: 60_000, minHolesBytes: 1 });
    const before = compactions;
    await waitFor(() => busy.infos.includes('heap compacted'), 10_000, 'a compaction');
    await new Promise((r) => setTimeout(r, 200));
    stop();
    expect(busy.infos.filter((m) => m === 'heap compacted')).toHaveLength(1); // minIntervalMs holds it to one
    expect(compactions - before).toBe(1);
    expect(keep.length).toBe(187_500);
  });

  it('the periodic check trims the malloc arenas once bytes became free since the last trim; never for what it trimmed', async () => {
    const fake = (free: number | null) => {
      const f = { free, info: 0, trim: 0 };
      const malloc: MallocControl = { mallocInfo: () => (f.info++, f.free === null ? null : { freeBytes: f.free }), mallocTrim: () => (f.trim++, true) };
      return { malloc, f };
    };
    const below = fake(7 * 2 ** 20);
    const unknown = fake(null);
    const above = fake(64 * 2 ** 20);
    const logs = [recordingLog(), recordingLog(), recordingLog()];
    const trimsBefore = mallocTrims;
    const opts = { checkMs: 20, minHolesBytes: 2 ** 40, minTrimIntervalMs: 0, minMallocFreeBytes: 8 * 2 ** 20 };
    const stops = [below, unknown, above].map((x, i) => startHeapCompaction(logs[i]!.log, { ...opts, malloc: x.malloc }));
    const checks = async (n: number) => {
      const at = above.f.info;
      await waitFor(() => above.f.info >= at + n, 10_000, `${n} checks`);
    };
    await checks(5);
    expect([below.f.trim, unknown.f.trim, above.f.trim]).toEqual([0, 0, 1]); // the 64 MiB free is trimmed once, not at every check
    expect(logs[2]!.infos).toEqual(['malloc arenas trimmed']);
    // reused (free falls to 10 MiB), then 7 MiB freed again: below the floor; 9 MiB more: due
    above.f.free = 10 * 2 ** 20;
    await checks(2);
    above.f.free = 17 * 2 ** 20;
    await checks(2);
    expect(above.f.trim).toBe(1);
    above.f.free = 26 * 2 ** 20;
    await checks(2);
    for (const stop of stops) stop();
    expect(above.f.trim).toBe(2);
    expect(below.f.trim + unknown.f.trim).toBe(0);
    expect(below.f.info).toBeGreaterThan(3);
    expect(mallocTrims - trimsBefore).toBe(2);
  });

  it('the addon reads glibc arenas and its trim gives the free pages of a fragmented arena back', async () => {
    const before = native.mallocInfo();
    expect(before).not.toBeNull(); // this machine's C library is glibc
    expect(before!.arenaBytes).toBeGreaterThanOrEqual(before!.inUseBytes);
    // 20,000 touched 4 KiB blocks from malloc, one in 8 kept (the last too): 70 MiB free between live blocks,
    // which glibc does not give back on its own (it trims only the arena's top)
    let blocks: Buffer[] = [];
    for (let i = 0; i < 20_000; i++) blocks.push(Buffer.allocUnsafeSlow(4096).fill(1));
    blocks = blocks.filter((_, i) => i % 8 === 7);
    compactHeap();
    await new Promise((r) => setTimeout(r, 500)); // V8 frees backing stores after the GC, off this thread
    const fragmented = native.mallocInfo()!;
    expect(fragmented.freeBytes).toBeGreaterThan(40 * 2 ** 20);
    const rss = process.memoryUsage.rss();
    expect(native.mallocTrim()).toBe(true);
    expect(process.memoryUsage.rss()).toBeLessThan(rss - 40 * 2 ** 20);
    expect(blocks.length).toBe(2_500);
    expect(blocks.every((b) => b[0] === 1 && b[4095] === 1)).toBe(true);
  });
});
