/**
 * glibc's malloc arenas given back to the kernel after a change (issue 16, the agent's memory per remote
 * endpoint). The heap check's tick (heapcompaction.ts, every 10 s) calls `checkMallocTrim`.
 *
 * Why: once V8 has collected a sync's Buffers (gRPC frames) and native tables have grown and rehashed, the main
 * malloc arena holds free chunks between live ones, and glibc returns only an arena's top on its own.
 * malloc_trim(0) releases every whole free page inside every arena (bench:controlplane 4 x 1000 x 10: the main
 * arena's growth ~590 -> ~220 B per remote endpoint; docs/benchmarks.md "s17trim").
 *
 * When: a trim is due when the arenas hold ≥ `minFreeBytes` (2 MiB) free and, since the last trim, either that
 * much more became free (counted from the least free bytes seen since: trimmed pages stay "free" to mallinfo2)
 * or the process's resident bytes outside V8's heap (RSS − V8's committed heap: V8's own swings with its GCs
 * cancel out) grew by that much (from their least since): freed pages that were reused and freed again between
 * two checks leave the free figure where it was but are resident again. An agent at rest trims once after a
 * change, then not again; under churn that mallocs and frees (gRPC frames), up to one trim per interval.
 *
 * Bounds: one mallinfo2 read and one RSS read per check; at most one trim per `minIntervalMs` (9 s: one per check
 * at the default cadence) per MallocControl, so every Agent in a process shares the bound. mallinfo2 and the trim
 * walk the arenas' free chunks with each arena locked in turn: measured 0.3–46 ms (read) and 4–59 ms (trim) for
 * 28–207 MiB free in ~70k chunks. An addon thread that mallocs meanwhile in the arena being walked waits that
 * long. The agent is meant to be started with two arenas (README, "Running the agent"; it warns when not), which its
 * threads then share, the JavaScript thread's main arena too; the TX thread keeps its per-batch vectors between
 * batches (tx_scratch.h lists what it still mallocs per batch), and a thread's tcache serves small allocations
 * without the arena's lock.
 */

/** What the check needs of the C library's malloc (the addon implements it for glibc ≥ 2.33: src/native/binding.ts). */
export interface MallocControl {
  /** Free bytes inside the arenas; null when not known (another C library, glibc < 2.33): no trims then. */
  mallocInfo(): { freeBytes: number } | null;
  /** Gives whole free pages back to the kernel. */
  mallocTrim(): boolean;
}

export interface MallocTrimOptions {
  /** ms between two trims at least; default 9,000. */
  minIntervalMs?: number;
  /** Free bytes below which no trim is done, and the growth (free bytes or RSS) since the last that makes one due; default 2 MiB. */
  minFreeBytes?: number;
  /** The process's resident bytes outside V8's heap; default RSS − V8's heapTotal (tests pass their own). */
  rss?: () => number;
}

/** What a trim did, for the caller's log. */
export interface MallocTrimmed {
  ms: number;
  freeMiB: number;
  releasedMiB: number;
}

/** Malloc trims done in this process (benchmarks print it). */
export let mallocTrims = 0;

interface TrimState {
  lastAt: number;
  freeLow: number;
  rssLow: number;
}
const states = new WeakMap<MallocControl, TrimState>();

/** Resident bytes outside V8's heap (its committed pages counted as resident: an estimate, for growth only). */
function outsideV8(): number {
  const m = process.memoryUsage();
  return m.rss - m.heapTotal;
}

/** One check at `now` (performance.now() of the tick's start): trims when due (header), else does nothing. */
export function checkMallocTrim(malloc: MallocControl, now: number, opts: MallocTrimOptions = {}): MallocTrimmed | undefined {
  const minFree = opts.minFreeBytes ?? 2 * 2 ** 20;
  const rssOf = opts.rss ?? outsideV8;
  let s = states.get(malloc);
  if (!s) states.set(malloc, (s = { lastAt: -Infinity, freeLow: 0, rssLow: Infinity }));
  const free = malloc.mallocInfo()?.freeBytes;
  if (free === undefined) return undefined;
  const rss = rssOf();
  s.freeLow = Math.min(s.freeLow, free);
  s.rssLow = Math.min(s.rssLow, rss);
  if (now - s.lastAt < (opts.minIntervalMs ?? 9_000) || free < minFree) return undefined;
  if (free - s.freeLow < minFree && rss - s.rssLow < minFree) return undefined;
  const t0 = performance.now();
  malloc.mallocTrim();
  mallocTrims++;
  const after = rssOf();
  s.lastAt = now;
  s.freeLow = free; // trimmed pages stay counted as free: only bytes freed from now on are new
  s.rssLow = after;
  return { ms: Math.round(performance.now() - t0), freeMiB: Math.round(free / 2 ** 20), releasedMiB: Math.round((rss - after) / 2 ** 20) };
}
