import { describe, expect, it } from 'vitest';
import { perProcess, procUse } from '../../bench/cp-procstat.js';

describe('bench cp-procstat', () => {
  it('reads this process: CPU of all threads at least the main thread, wakes counted, and zeros for a process that is gone', () => {
    const u = procUse(process.pid, 100);
    expect(u.cpu).toBeGreaterThan(0);
    expect(u.cpu).toBeGreaterThanOrEqual(u.mainCpu);
    expect(u.wakes).toBeGreaterThan(0);
    expect(u.runqWait).toBeGreaterThanOrEqual(u.mainRunqWait);
    expect(u.mainRunqWait).toBeGreaterThanOrEqual(0);
    expect(procUse(2 ** 22 + 1, 100)).toEqual({ cpu: 0, mainCpu: 0, wakes: 0, runqWait: 0, mainRunqWait: 0 });
  });

  it('per process: the mean over the processes, the max of one, per second', () => {
    const before = [{ cpu: 1, mainCpu: 0.5, wakes: 100, runqWait: 1, mainRunqWait: 0.5 }, { cpu: 2, mainCpu: 1, wakes: 0, runqWait: 0, mainRunqWait: 0 }];
    const after = [{ cpu: 1.2, mainCpu: 0.6, wakes: 300, runqWait: 1.4, mainRunqWait: 0.6 }, { cpu: 2.6, mainCpu: 1.1, wakes: 200, runqWait: 0.2, mainRunqWait: 0.1 }];
    const p = perProcess(before, after, 10);
    expect(p.mcores).toBeCloseTo(40); // (0.2 + 0.6) s / 10 s / 2 processes
    expect(p.maxMcores).toBeCloseTo(60);
    expect(p.mainMcores).toBeCloseTo(10);
    expect(p.wakesPerS).toBeCloseTo(20);
    expect(p.runqMsPerS).toBeCloseTo(30); // (0.4 + 0.2) s waiting / 10 s / 2 processes
    expect(p.mainRunqMsPerS).toBeCloseTo(10);
    expect(perProcess([], [], 10)).toEqual({ mcores: 0, maxMcores: 0, mainMcores: 0, wakesPerS: 0, runqMsPerS: 0, mainRunqMsPerS: 0 });
  });
});
