/**
 * bench:controlplane --cpu-by-second: a process of its own (not the agent's event loop, which the benchmark
 * measures; in a session of its own, so that it is not queued behind the processes it reads) that reads /proc
 * (cp-procstat.ts procUse) for named groups of processes once a second until told to stop, then answers with
 * each period's figures per group (groupPeriods). Protocol over the IPC channel: the parent sends
 * `{ groups: { name: pids[] }, tick }` to start and `'stop'` to get `Period` rows back. A last period shorter
 * than half a second is not read (its figures would be mostly rounding). It exits when the parent goes away.
 * Its own CPU is outside every group.
 */
import { groupPeriods, procUse, type TimedUse } from './cp-procstat.js';

const PERIOD_MS = 1000;

if (process.send) {
  let timer: NodeJS.Timeout | undefined;
  let names: string[] = [];
  let pids: number[][] = [];
  let tick = 100;
  const readings: TimedUse[][][] = [];
  let last = -Infinity;
  const read = () => {
    last = performance.now();
    readings.push(pids.map((ps) => ps.map((p) => ({ use: procUse(p, tick), at: performance.now() / 1000 }))));
  };
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: 'stop' | { groups: Record<string, number[]>; tick: number }) => {
    if (m === 'stop') {
      clearInterval(timer);
      if (performance.now() - last >= PERIOD_MS / 2) read();
      process.send!(groupPeriods(readings, names), () => process.exit(0));
      return;
    }
    names = Object.keys(m.groups);
    pids = names.map((n) => m.groups[n]!);
    tick = m.tick;
    read();
    timer = setInterval(read, PERIOD_MS);
  });
}
