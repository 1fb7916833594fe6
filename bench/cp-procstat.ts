/**
 * What a process has used so far, read from /proc without touching it: CPU seconds (utime + stime) of the whole
 * process and of its main thread, and its wakes (context switches of all its threads: a thread that blocked and
 * was woken again counts one voluntary switch; an idle process's CPU is mostly the cost of its wakes).
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcUse {
  /** CPU seconds, all threads (utime + stime). */
  cpu: number;
  /** CPU seconds of the main thread (tid = pid; a Node process's JavaScript thread). */
  mainCpu: number;
  /** Context switches of all threads (voluntary + involuntary). */
  wakes: number;
}

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
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
        for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) wakes += Number(m[1]);
      } catch {
        /* the thread ended meanwhile */
      }
    }
    return { cpu, mainCpu, wakes };
  } catch {
    return { cpu: 0, mainCpu: 0, wakes: 0 };
  }
}

/** Per process over a window: mean and max millicores, main thread's mean millicores, mean wakes/s. */
export interface PerProcess {
  mcores: number;
  maxMcores: number;
  mainMcores: number;
  wakesPerS: number;
}

/** Per-process figures of a set of processes between two readings `seconds` apart. */
export function perProcess(before: ProcUse[], after: ProcUse[], seconds: number): PerProcess {
  const n = Math.max(1, before.length);
  const d = after.map((a, i) => ({ cpu: a.cpu - before[i]!.cpu, main: a.mainCpu - before[i]!.mainCpu, wakes: a.wakes - before[i]!.wakes }));
  const sum = (f: (x: (typeof d)[number]) => number) => d.reduce((s, x) => s + f(x), 0);
  return {
    mcores: (1000 * sum((x) => x.cpu)) / seconds / n,
    maxMcores: d.length ? (1000 * Math.max(...d.map((x) => x.cpu))) / seconds : 0,
    mainMcores: (1000 * sum((x) => x.main)) / seconds / n,
    wakesPerS: sum((x) => x.wakes) / seconds / n,
  };
}
