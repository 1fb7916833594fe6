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
    expect(procUse(2 ** 22 + 1, 100)).toEqual({ cpu: 0, mainCpu: 0, wakes: 0, runqWait: 0, mainRunqWait: 0, onCpu: 0, mainOnCpu: 0 });
    expect(u.onCpu).toBeGreaterThan(0);
    expect(u.onCpu).toBeGreaterThanOrEqual(u.mainOnCpu);
  });

  it('per process: the mean over the processes, the max of one, per second', () => {
    const before = [{ cpu: 1, mainCpu: 0.5, wakes: 100, runqWait: 1, mainRunqWait: 0.5, onCpu: 0, mainOnCpu: 0 }, { cpu: 2, mainCpu: 1, wakes: 0, runqWait: 0, mainRunqWait: 0, onCpu: 0, mainOnCpu: 0 }];
    const after = [{ cpu: 1.2, mainCpu: 0.6, wakes: 300, runqWait: 1.4, mainRunqWait: 0.6, onCpu: 0, mainOnCpu: 0 }, { cpu: 2.6, mainCpu: 1.1, wakes: 200, runqWait: 0.2, mainRunqWait: 0.1, onCpu: 0, mainOnCpu: 0 }];
    const p = perProcess(before, after, 10);
    expect(p.mcores).toBeCloseTo(40); // (0.2 + 0.6) s / 10 s / 2 processes
    expect(p.maxMcores).toBeCloseTo(60);
    expect(p.mainMcores).toBeCloseTo(10);
    expect(p.wakesPerS).toBeCloseTo(20);
    expect(p.runqMsPerS).toBeCloseTo(30); // (0.4 + 0.2) s waiting / 10 s / 2 processes
    expect(p.mainRunqMsPerS).toBeCloseTo(10);
    expect(perProcess([], [], 10)).toEqual({ mcores: 0, maxMcores: 0, mainMcores: 0, wakesPerS: 0, runqMsPerS: 0, mainRunqMsPerS: 0 });
  });

  it('groups by period: each process over its own interval, summed per group; a process that ended (zeros) counts 0, not negative', () => {
    const u = (onCpu: number, mainOnCpu: number, runqWait: number, mainRunqWait: number) => ({ at: 0, use: { cpu: 0, mainCpu: 0, wakes: 0, runqWait, mainRunqWait, onCpu, mainOnCpu } });
    const at = (t: number, r: ReturnType<typeof u>) => ({ ...r, at: t });
    // readings[i][group][process]; group "a" has two processes read at their own moments, "b" one, which ends
    // before the third reading
    const readings = [
      [[at(10, u(1, 0.5, 2, 1)), at(10.2, u(3, 1, 0, 0))], [at(10.3, u(5, 4, 1, 1))]],
      [[at(10.5, u(1.5, 0.8, 2.5, 1.2)), at(11.2, u(3.5, 1.1, 0.3, 0.1))], [at(10.7, u(5.4, 4.1, 1.2, 1.1))]],
      [[at(12.5, u(2, 1, 3, 1.5)), at(12.2, u(3.5, 1.1, 0.3, 0.1))], [at(12.7, u(0, 0, 0, 0))]],
    ];
    const rows = groupPeriods(readings, ['a', 'b']);
    expect(rows).toHaveLength(2);
    // first period (a's first process: 10 -> 10.5 s): a's first process 0.5 s on a CPU over 0.5 s (main 0.3),
    // waited 0.5 (main 0.2); its second 0.5 s over 1 s (main 0.1), waited 0.3 (main 0.1); b 0.4 over 0.4 s
    expect(rows[0]!.fromS).toBeCloseTo(0);
    expect(rows[0]!.seconds).toBeCloseTo(0.5);
    expect(rows[0]!.groups.a!.cores).toBeCloseTo(1.5); // 0.5/0.5 + 0.5/1
    expect(rows[0]!.groups.a!.mainCores).toBeCloseTo(0.7); // 0.3/0.5 + 0.1/1
    expect(rows[0]!.groups.a!.waitS).toBeCloseTo(1.3); // 0.5/0.5 + 0.3/1
    expect(rows[0]!.groups.a!.mainWaitS).toBeCloseTo(0.5); // 0.2/0.5 + 0.1/1
    expect(rows[0]!.groups.b!.cores).toBeCloseTo(1); // 0.4/0.4
    expect(rows[0]!.groups.b!.mainCores).toBeCloseTo(0.25); // 0.1/0.4
    expect(rows[0]!.groups.b!.waitS).toBeCloseTo(0.5); // 0.2/0.4
    expect(rows[0]!.groups.b!.mainWaitS).toBeCloseTo(0.25); // 0.1/0.4
    // second period (10.5 -> 12.5 s): a's first process 0.5 s over 2 s (main 0.2), waited 0.5 (main 0.3); its
    // second idle; b ended (zeros): 0, not negative
    expect(rows[1]!.fromS).toBeCloseTo(0.5);
    expect(rows[1]!.seconds).toBeCloseTo(2);
    expect(rows[1]!.groups.a).toEqual({ cores: expect.closeTo(0.25) as number, mainCores: expect.closeTo(0.1) as number, waitS: expect.closeTo(0.25) as number, mainWaitS: expect.closeTo(0.15) as number });
    expect(rows[1]!.groups.b).toEqual({ cores: 0, mainCores: 0, waitS: 0, mainWaitS: 0 });
    expect(groupPeriods([readings[0]!], ['a', 'b'])).toEqual([]);
  });
});
