import { describe, expect, it } from 'vitest';
import { groupPeriods, perProcess, procUse } from '../../bench/cp-procstat.js';

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

  it('groups by period: sums over each group per second, a process that ended (zeros) counts 0, not negative', () => {
    const u = (cpu: number, mainCpu: number, runqWait: number, mainRunqWait: number) => ({ cpu, mainCpu, wakes: 0, runqWait, mainRunqWait });
    // readings[i][group][process]; group "a" has two processes, "b" one, which ends before the third reading
    const readings = [
      [[u(1, 0.5, 2, 1), u(3, 1, 0, 0)], [u(5, 4, 1, 1)]],
      [[u(1.5, 0.8, 2.5, 1.2), u(3.5, 1.1, 0.3, 0.1)], [u(5.4, 4.1, 1.2, 1.1)]],
      [[u(2, 1, 3, 1.5), u(3.5, 1.1, 0.3, 0.1)], [u(0, 0, 0, 0)]],
    ];
    const rows = groupPeriods(readings, [0.5, 2], ['a', 'b']);
    expect(rows).toHaveLength(2);
    // first period, 0.5 s: a used 0.5 + 0.5 s of CPU (main 0.3 + 0.1), waited 0.5 + 0.3 (main 0.2 + 0.1)
    expect(rows[0]!.a!.cores).toBeCloseTo(2);
    expect(rows[0]!.a!.mainCores).toBeCloseTo(0.8);
    expect(rows[0]!.a!.waitS).toBeCloseTo(1.6);
    expect(rows[0]!.a!.mainWaitS).toBeCloseTo(0.6);
    expect(rows[0]!.b).toEqual({ cores: expect.closeTo(0.8) as number, mainCores: expect.closeTo(0.2) as number, waitS: expect.closeTo(0.4) as number, mainWaitS: expect.closeTo(0.2) as number });
    // second period, 2 s: a's first process 0.5 s CPU (main 0.2), waited 0.5 (main 0.3), its second idle; b ended
    expect(rows[1]!.a!.cores).toBeCloseTo(0.25);
    expect(rows[1]!.a!.mainCores).toBeCloseTo(0.1);
    expect(rows[1]!.a!.waitS).toBeCloseTo(0.25);
    expect(rows[1]!.a!.mainWaitS).toBeCloseTo(0.15);
    expect(rows[1]!.b).toEqual({ cores: 0, mainCores: 0, waitS: 0, mainWaitS: 0 });
    expect(groupPeriods([readings[0]!], [], ['a', 'b'])).toEqual([]);
  });
});
