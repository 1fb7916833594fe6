/**
 * What a process has used so far, read from /proc without touching it: CPU seconds (utime + stime) of the whole
 * process and of its main thread, and its wakes (context switches of all its threads: a thread that blocked and
 * was woken again counts one voluntary switch; an idle process's CPU is mostly the cost of its wakes), and how long
 * its threads waited for a core (schedstat's run-queue wait: runnable, not running; the CPU queueing a latency
 * figure cannot tell from the process's own work).
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcUse {
  /** CPU seconds, all threads (utime + stime). */
  cpu: number;
  /** CPU seconds of the main thread (tid = pid; a Node process's JavaScript thread). */
  mainCpu: number;
  /** Context switches of all threads (voluntary + involuntary). */
  wakes: number;
  /** Seconds its threads spent runnable on a run queue, waiting for a core (all threads; /proc/.../schedstat). */
  runqWait: number;
  /** The same for the main thread alone. */
  mainRunqWait: number;
  /**
   * Seconds on a CPU by schedstat (field 1, ns) of the threads alive now, and of the main thread: finer than `cpu`'s
   * clock ticks, for per-second readings; a thread that ended takes its time out of the sum.
   */
  onCpu: number;
  mainOnCpu: number;
}

/** Fields 1 and 2 of a schedstat text, in seconds: time on a CPU, and time waiting on a run queue. */
const schedSeconds = (schedstat: string): [onCpu: number, runq: number] => {
  const f = schedstat.split(' ');
  return [Number(f[0]) / 1e9 || 0, Number(f[1]) / 1e9 || 0];
};

/** utime + stime in seconds from a /proc/.../stat text (the command name, field 2, may hold spaces). */
function statCpu(stat: string, tick: number): number {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / tick;
}

/** What `pid` has used (zeros once it is gone); `tick` is CLK_TCK. */
export function procUse(pid: number, tick: number): ProcUse {
  try {
    const cpu = statCpu(readFileSync(`/proc/${pid}/stat`, 'utf8'), tick);
    const mainCpu = statCpu(readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8'), tick);
    let wakes = 0;
    let runqWait = 0;
    let mainRunqWait = 0;
    let onCpu = 0;
    let mainOnCpu = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
        for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) wakes += Number(m[1]);
        const [on, w] = schedSeconds(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8'));
        runqWait += w;
        onCpu += on;
        if (tid === String(pid)) [mainRunqWait, mainOnCpu] = [w, on];
      } catch {
        /* the thread ended meanwhile */
      }
    }
    return { cpu, mainCpu, wakes, runqWait, mainRunqWait, onCpu, mainOnCpu };
  } catch {
    return { cpu: 0, mainCpu: 0, wakes: 0, runqWait: 0, mainRunqWait: 0, onCpu: 0, mainOnCpu: 0 };
  }
}

/** Per process over a window: mean and max millicores, main thread's mean millicores, mean wakes/s. */
export interface PerProcess {
  mcores: number;
  maxMcores: number;
  mainMcores: number;
  wakesPerS: number;
  /** Mean milliseconds per second its threads waited for a core (all threads / the main thread). */
  runqMsPerS: number;
  mainRunqMsPerS: number;
}

/** Per-process figures of a set of processes between two readings `seconds` apart. */
export function perProcess(before: ProcUse[], after: ProcUse[], seconds: number): PerProcess {
  const n = Math.max(1, before.length);
  const d = after.map((a, i) => ({
    cpu: a.cpu - before[i]!.cpu,
    main: a.mainCpu - before[i]!.mainCpu,
    wakes: a.wakes - before[i]!.wakes,
    runq: a.runqWait - before[i]!.runqWait,
    mainRunq: a.mainRunqWait - before[i]!.mainRunqWait,
  }));
  const sum = (f: (x: (typeof d)[number]) => number) => d.reduce((s, x) => s + f(x), 0);
  return {
    mcores: (1000 * sum((x) => x.cpu)) / seconds / n,
    maxMcores: d.length ? (1000 * Math.max(...d.map((x) => x.cpu))) / seconds : 0,
    mainMcores: (1000 * sum((x) => x.main)) / seconds / n,
    wakesPerS: sum((x) => x.wakes) / seconds / n,
    runqMsPerS: (1000 * sum((x) => x.runq)) / seconds / n,
    mainRunqMsPerS: (1000 * sum((x) => x.mainRunq)) / seconds / n,
  };
}

/** One group of processes over one period: cores on a CPU and seconds per second waiting for a core, all threads and main threads. */
export interface GroupPeriod {
  cores: number;
  mainCores: number;
  waitS: number;
  mainWaitS: number;
}

/** One process read at `at` (seconds on a monotonic clock: each process is read at its own moment). */
export interface TimedUse {
  at: number;
  use: ProcUse;
}

/** One period of groupPeriods: its start (s after the first reading), its length (s) and each group's figures. */
export interface Period {
  fromS: number;
  seconds: number;
  groups: Record<string, GroupPeriod>;
}

/**
 * Each group's use per period, from readings of its processes (readings[i][group][process]): each process's
 * difference between two readings over its own interval (on-CPU and run-queue seconds from schedstat), summed
 * over the group. A difference below 0 (a thread ended and took its time out of the sum; a process that ended
 * reads zeros) counts 0. The kernel adds a wait to run_delay when it ends, so a period's wait can include time
 * waited in the period before. A period's start and length are its first process's.
 */
export function groupPeriods(readings: TimedUse[][][], groups: string[]): Period[] {
  const out: Period[] = [];
  const first = readings[0]?.[0]?.[0]?.at ?? 0;
  for (let i = 1; i < readings.length; i++) {
    const row: Record<string, GroupPeriod> = {};
    groups.forEach((g, gi) => {
      const sum = (f: (u: ProcUse) => number) =>
        readings[i]![gi]!.reduce((a, r, p) => {
          const b = readings[i - 1]![gi]![p]!;
          return a + Math.max(0, f(r.use) - f(b.use)) / Math.max(1e-3, r.at - b.at);
        }, 0);
      row[g] = { cores: sum((u) => u.onCpu), mainCores: sum((u) => u.mainOnCpu), waitS: sum((u) => u.runqWait), mainWaitS: sum((u) => u.mainRunqWait) };
    });
    const at0 = readings[i - 1]![0]?.[0]?.at ?? first;
    const at1 = readings[i]![0]?.[0]?.at ?? at0;
    out.push({ fromS: at0 - first, seconds: at1 - at0, groups: row });
  }
  return out;
}
