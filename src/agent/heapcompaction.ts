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
 * The same tick trims glibc's malloc arenas when given one to trim (`malloc`: malloctrim.ts); a failure there
 * stops the trims alone.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../log.js';
import { checkMallocTrim, type MallocControl, type MallocTrimOptions } from './malloctrim.js';

export interface HeapCompactionOptions {
  /** ms between checks; default 10,000. */
  checkMs?: number;
  /** ms between two compactions at least; default 300,000. */
  minIntervalMs?: number;
  /** Free bytes in old space below which nothing is done; default 64 MiB. */
  minHolesBytes?: number;
  /** Live bytes in old space above which nothing is done (the pause grows with them); default 256 MiB. */
  maxLiveBytes?: number;
  /** glibc's malloc to trim at each tick (the addon); none: no trims. */
  malloc?: MallocControl;
  /** The trims' bounds (malloctrim.ts). */
  trim?: MallocTrimOptions;
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
  let lastLive = -1;
  let compacting = true;
  let malloc = opts.malloc;
  const timer = setInterval(() => {
    const now = performance.now(); // the tick's start: ticks are scheduled from it
    if (compacting) {
      try {
        compactIfDue();
      } catch (err) {
        compacting = false;
        log.warn({ err: (err as Error).message }, 'heap compaction is off: it failed');
      }
    }
    if (malloc) {
      try {
        const trimmed = checkMallocTrim(malloc, now, opts.trim);
        if (trimmed) log.info(trimmed, 'malloc arenas trimmed');
      } catch (err) {
        malloc = undefined;
        log.warn({ err: (err as Error).message }, 'malloc trims are off: a trim failed');
      }
    }
    if (!compacting && !malloc) clearInterval(timer);
  }, opts.checkMs ?? 10_000);
  const compactIfDue = () => {
    const { live, holes } = oldSpace();
    const quiet = lastLive >= 0 && Math.abs(live - lastLive) < live * 0.05;
    lastLive = live;
    if (!quiet || holes < minHoles || holes < live || live > maxLive || performance.now() - lastRun < minInterval) return;
    lastRun = performance.now();
    compactHeap();
    compactions++;
    const after = oldSpace();
    lastLive = after.live;
    log.info({ ms: Math.round(performance.now() - lastRun), liveMiB: Math.round(after.live / 2 ** 20), freedMiB: Math.round((holes - after.holes) / 2 ** 20) }, 'heap compacted');
  };
  timer.unref();
  return () => clearInterval(timer);
}
