/**
 * bench:controlplane --cpu-by-second: a process of its own (not the agent's event loop, which the benchmark
 * measures) that reads /proc (cp-procstat.ts procUse) for named groups of processes once a second until told to
 * stop, then answers with each second's figures per group (groupPeriods). Protocol over the IPC channel: the
 * parent sends `{ groups: { name: pids[] }, tick }` to start and `'stop'` to get `GroupPeriod` rows back.
 * Its own cost is outside every group (it reads ~35 processes' threads a second: ~0.01-0.03 cores).
 */
import { groupPeriods, procUse, type ProcUse } from './cp-procstat.js';

if (process.send) {
  let timer: NodeJS.Timeout | undefined;
  let names: string[] = [];
  let pids: number[][] = [];
  let tick = 100;
  const readings: ProcUse[][][] = [];
  const seconds: number[] = [];
  let last = 0;
  const read = () => {
    const now = performance.now();
    if (readings.length) seconds.push((now - last) / 1000);
    last = now;
    readings.push(pids.map((ps) => ps.map((p) => procUse(p, tick))));
  };
  process.on('message', (m: 'stop' | { groups: Record<string, number[]>; tick: number }) => {
    if (m === 'stop') {
      clearInterval(timer);
      read();
      process.send!(groupPeriods(readings, seconds, names), () => process.exit(0));
      return;
    }
    names = Object.keys(m.groups);
    pids = names.map((n) => m.groups[n]!);
    tick = m.tick;
    read();
    timer = setInterval(read, 1000);
  });
}
