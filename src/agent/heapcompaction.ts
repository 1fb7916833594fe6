/**
 * One compacting full GC once the agent's old space is mostly holes and the
 * heap has stopped moving (issue 16, agent memory per remote endpoint).
 *
 * Why: a sync of 160,000 remote endpoints promotes much short-lived garbage, so
 * old space ends at ~220 MiB of pages for ~90 MiB of live objects. V8's full GCs
 * compact only the pages their heuristics pick, and its idle memory reducer
 * frees part of the rest 20–40 s later (measured: 196 → 141 MiB for 49 MiB
 * live). One GC with compaction of every page brings old space to what is live
 * (bench:memory: RSS growth 1,807 → 1,029 B per remote endpoint).
 *
 * The pause is the agent's JavaScript thread only (the data path runs on the
 * addon's threads) and grows with the live bytes: ~0.2 s at 26 MiB live, 1.2–1.4 s
 * at 369 MiB live on 2 shared cores. Bounds: a check every `checkMs` (one
 * heap-space read), at most one compaction per `minIntervalMs` in the process,
 * only when the holes are ≥ `minHolesBytes` and ≥ the live bytes, the live bytes
 * moved < 5 % since the last check (the sync or churn is over) and are at most
 * `maxLiveBytes` (above it the pause would stall the agent's API, DNS and etcd
 * keep-alives too long). A failure stops the checks (logged once); never throws.
 *
 * The same periodic check gives glibc's free pages back (`malloc`, the addon's mallocInfo/mallocTrim): once V8
 * has collected a sync's Buffers (gRPC frames) and native tables have grown and rehashed, the main malloc
 * arena holds free chunks between live ones, and glibc returns only the arena's top on its own.
 * malloc_trim(0) releases every whole free page inside (bench:controlplane 4 x 1000 x 10: the main arena's
 * growth 598 -> 213 B per remote endpoint). A trim is due when ≥ `minMallocFreeBytes` (8 MiB) became free
 * since the last one (counted from the least free bytes seen since: trimmed pages stay "free" in mallinfo2,
 * and what was reused and freed again is resident again), so an agent at rest trims once after a change
 * and then not again (the heap need not be quiet: a trim during a sync costs a few page faults when the
 * pages are reused). Bounds: one mallinfo2 read per check (10 s), at most one trim per
 * `minTrimIntervalMs` (10 s). Both walk the arenas' free chunks, each arena locked in turn: measured
 * 0.3–46 ms (read) and 4–59 ms (trim) for 28–207 MiB free in ~70k chunks.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../log.js';

export interface HeapCompactionOptions {
  /** ms between checks; default 10,000. */
  checkMs?: number;
  /** ms between two compactions at least; default 300,000. */
  minIntervalMs?: number;
  /** Free bytes in old space below which nothing is done; default 64 MiB. */
  minHolesBytes?: number;
  /** Live bytes in old space above which nothing is done (the pause grows with them); default 256 MiB. */
  maxLiveBytes?: number;
  /** glibc's malloc to trim (the addon: src/native/binding.ts); none: no trims. */
  malloc?: MallocControl;
  /** ms between two malloc trims at least; default 10,000. */
  minTrimIntervalMs?: number;
  /** Bytes that must have become free inside the malloc arenas since the last trim (from the least free seen
   * since) before the next; default 8 MiB. */
  minMallocFreeBytes?: number;
}

/** What the check needs of the C library's malloc (the addon implements it for glibc). */
export interface MallocControl {
  /** Free bytes inside the arenas (null: not known, no trim). */
  mallocInfo(): { freeBytes: number } | null;
  /** Gives whole free pages back to the kernel. */
  mallocTrim(): boolean;
}

/** Old space's live and free bytes, as V8 counts them now. */
export function oldSpace(): { live: number; holes: number } {
  const s = getHeapSpaceStatistics().find((x) => x.space_name === 'old_space');
  return s ? { live: s.space_used_size, holes: s.space_size - s.space_used_size } : { live: 0, holes: 0 };
}

let gcFn: (() => void) | undefined;
/** performance.now() of the last compaction in this process (every Agent in it shares the bound). */
let lastRun = -Infinity;
/** Compactions run by the periodic check in this process (benchmarks print it). */
export let compactions = 0;
/** Malloc trims run by the periodic check in this process (benchmarks print it). */
export let mallocTrims = 0;

/**
 * A full GC that evacuates every old-space page it can (V8's
 * --compact-on-every-full-gc for this one GC). Works without --expose-gc on the
 * command line: the flag makes V8 install `gc` in contexts created after it.
 */
export function compactHeap(): void {
  if (!gcFn) {
    const own = (globalThis as { gc?: () => void }).gc;
    if (own) gcFn = own;
    else {
      // on only while the new context is made: later vm contexts and workers get no `gc`
      setFlagsFromString('--expose-gc');
      try {
        gcFn = runInNewContext('gc') as () => void;
      } finally {
        setFlagsFromString('--no-expose-gc');
      }
    }
  }
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gcFn();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
}

/** Starts the periodic check; the returned function stops it. */
export function startHeapCompaction(log: Logger, opts: HeapCompactionOptions = {}): () => void {
  const minInterval = opts.minIntervalMs ?? 300_000;
  const minHoles = opts.minHolesBytes ?? 64 * 2 ** 20;
  const maxLive = opts.maxLiveBytes ?? 256 * 2 ** 20;
  const minTrimInterval = opts.minTrimIntervalMs ?? 10_000;
  const minMallocFree = opts.minMallocFreeBytes ?? 8 * 2 ** 20;
  let lastLive = -1;
  let lastTrim = -Infinity;
  let freeLow = 0; // the arenas' least free bytes since the last trim
  const timer = setInterval(() => {
    try {
      const { live, holes } = oldSpace();
      const quiet = lastLive >= 0 && Math.abs(live - lastLive) < live * 0.05;
      lastLive = live;
      if (quiet && holes >= minHoles && holes >= live && live <= maxLive && performance.now() - lastRun >= minInterval) {
        lastRun = performance.now();
        compactHeap();
        compactions++;
        const after = oldSpace();
        lastLive = after.live;
        log.info({ ms: Math.round(performance.now() - lastRun), liveMiB: Math.round(after.live / 2 ** 20), freedMiB: Math.round((holes - after.holes) / 2 ** 20) }, 'heap compacted');
      }
      if (opts.malloc && performance.now() - lastTrim >= minTrimInterval) {
        const free = opts.malloc.mallocInfo()?.freeBytes;
        if (free === undefined) return;
        freeLow = Math.min(freeLow, free);
        if (free - freeLow < minMallocFree) return;
        lastTrim = performance.now();
        const rss = process.memoryUsage.rss();
        opts.malloc.mallocTrim();
        mallocTrims++;
        freeLow = free; // trimmed pages stay counted as free: only bytes freed from now on are new
        log.info({ ms: Math.round(performance.now() - lastTrim), freeMiB: Math.round(free / 2 ** 20), releasedMiB: Math.round((rss - process.memoryUsage.rss()) / 2 ** 20) }, 'malloc arenas trimmed');
      }
    } catch (err) {
      clearInterval(timer);
      log.warn({ err: (err as Error).message }, 'heap compaction is off: it failed');
    }
  }, opts.checkMs ?? 10_000);
  timer.unref();
  return () => clearInterval(timer);
}
