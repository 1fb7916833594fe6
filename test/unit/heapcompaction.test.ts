// The agent's heap compaction (src/agent/heapcompaction.ts): one compacting GC
// gives back old-space pages a normal full GC leaves mostly empty; the periodic
// check compacts once the heap is fragmented and quiet, and not when it is not.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { compactHeap, compactions, oldSpace, startHeapCompaction } from '../../src/agent/heapcompaction.js';
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
});
