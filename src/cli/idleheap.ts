/**
 * V8's memory reducer in a long-lived, mostly idle process (kvstoremesh). After a burst of work (a remote's initial
 * sync, a churn) has ended, V8's memory reducer gives the burst's garbage back with a full mark-compact
 * ("Mark-Compact (reduce)" in --trace-gc: incremental marking on the JavaScript thread, concurrent marking and
 * sweeping on V8's worker threads), and by default follows it with up to two more, each after its watchdog's
 * ~100 s when the process's trickle of allocation at rest (remote keep-alive pings, the status look every 2 s) does
 * not count as idle. At K = 16 those follow-ups freed < 1 MB each (29 -> 21 MB, then 21.9 -> 21.1 MB) and cost each
 * kvstoremesh tens of ms of CPU on 2-3 threads for minutes after every sync (docs/benchmarks.md, 2026-12-02,
 * s14idle). One collection per burst keeps what the reducer is for (the first gives back the burst's garbage: a
 * large heap after a big sync still shrinks once the process goes idle). Scavenges and the ordinary,
 * allocation-driven mark-compacts are unchanged.
 */
import { setFlagsFromString } from 'node:v8';

/**
 * The V8 flags that ask for one reducer collection per burst, one per V8 generation: Node 20's V8 (11.x) knows
 * `--memory-reducer-single-gc`; Node 22/24's (12.x, 13.x) replaced it with `--memory-reducer-gc-count` (default 2).
 * Each Node knows one of them (its test checks which); V8 prints "Error: unrecognized flag" to stderr for the other,
 * so only this V8's is set (idleHeapFlag).
 */
export const IDLE_HEAP_FLAGS: readonly string[] = ['--memory-reducer-single-gc', '--memory-reducer-gc-count=1'];

/** The one of IDLE_HEAP_FLAGS for a V8 version string such as process.versions.v8 ("11.3.244.8-node.38"). */
export function idleHeapFlag(v8Version: string): string {
  return Number.parseInt(v8Version, 10) >= 12 ? IDLE_HEAP_FLAGS[1]! : IDLE_HEAP_FLAGS[0]!;
}

/** Applies this V8's idle-heap flag (the memory reducer reads it at each step, so it holds after start). */
export function quietIdleHeap(): void {
  setFlagsFromString(idleHeapFlag(process.versions.v8));
}
