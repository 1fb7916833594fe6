import { existsSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { answerPlace, placeInGroups, SchedGroups, type CgroupFs, type Channel, type PlaceAnswer, type PlaceRequest } from '../../bench/cp-sched.js';

// a directory standing in for the cgroup v1 cpu hierarchy, and a writer that records every write to a control file
// (the kernel's move of a process is not what is tested; the groups made, the writes, the refusals and the removal are)
const roots: string[] = [];
const fakeRoot = (withCpu = true) => {
  const r = mkdtempSync(join(tmpdir(), 'cp-sched-'));
  if (withCpu) writeFileSync(join(r, 'cpu.shares'), '1024\n');
  roots.push(r);
  return r;
};
afterEach(() => roots.splice(0).forEach((r) => rmSync(r, { recursive: true, force: true })));
const ns = (...pids: number[]) => () => new Set(pids);
function recording(root: string, failOn?: number) {
  const writes: Array<[string, string]> = [];
  const fs: CgroupFs = {
    write: (file, data) => {
      if (Number(data) === failOn) throw new Error(`ESRCH: ${data}`);
      writes.push([relative(root, file), data]);
    },
    rmdir: (dir) => rmdirSync(dir),
  };
  return { writes, fs };
}

describe('SchedGroups', () => {
  it('makes one group per name under the run tag and writes each pid to its cgroup.procs', () => {
    const root = fakeRoot();
    const w = recording(root);
    new SchedGroups('wiremesh-bench-1', ns(10, 11, 12), root, w.fs).place({ c1: [10, 11], c2: [12] });
    expect(w.writes).toEqual([
      [join('wiremesh-bench-1', 'c1', 'cgroup.procs'), '10'],
      [join('wiremesh-bench-1', 'c1', 'cgroup.procs'), '11'],
      [join('wiremesh-bench-1', 'c2', 'cgroup.procs'), '12'],
    ]);
    expect(existsSync(join(root, 'wiremesh-bench-1', 'c2'))).toBe(true);
  });

  it('refuses, before any write: a name that is not one plain segment, a pid not of the namespace, no cpu controller', () => {
    const root = fakeRoot();
    const w = recording(root);
    const g = new SchedGroups('t', ns(1, 2), root, w.fs);
    for (const bad of ['', '../x', 'a/b', 'C1', 'x'.repeat(33)]) expect(() => g.place({ ok: [1], [bad]: [2] })).toThrow(/bad group name/);
    for (const pid of [0, -1, 1.5, 3, Number.NaN]) expect(() => g.place({ c1: [1, pid] })).toThrow(/not one of the namespace's/);
    expect(w.writes).toEqual([]);
    expect(() => new SchedGroups('t', ns(1), fakeRoot(false)).place({ c1: [1] })).toThrow(/no cgroup v1 cpu hierarchy/);
  });

  it('all or none: a failed move puts the ones already moved back in the root, and throws', () => {
    const root = fakeRoot();
    const w = recording(root, 12);
    expect(() => new SchedGroups('t', ns(10, 11, 12), root, w.fs).place({ c1: [10, 11], c2: [12] })).toThrow(/ESRCH: 12/);
    expect(w.writes.slice(2)).toEqual([
      ['cgroup.procs', '10'],
      ['cgroup.procs', '11'],
    ]);
  });

  it('answers a failure as the answer\'s error, never a throw', () => {
    const g = new SchedGroups('t', ns(1), fakeRoot(false));
    expect(answerPlace(g, { op: 'sched-place', id: 7, groups: { c1: [1] } })).toEqual({ op: 'sched-placed', id: 7, error: expect.stringMatching(/no cgroup v1/) });
    expect(answerPlace(new SchedGroups('t', ns(), fakeRoot()), { op: 'sched-place', id: 8, groups: { c1: [] } })).toEqual({ op: 'sched-placed', id: 8 });
  });

  it('remove() removes empty groups and the run directory, and reports what it could not remove', () => {
    const root = fakeRoot();
    const g = new SchedGroups('run', ns(5), root);
    expect(g.remove()).toEqual([]); // nothing made yet
    g.place({ c1: [], c2: [5] }); // c2 holds a file here (a plain write): not empty, an error other than EBUSY
    const left = g.remove();
    expect(existsSync(join(root, 'run', 'c1'))).toBe(false);
    expect(left.some((l) => l.startsWith('c2:'))).toBe(true);
    expect(left.some((l) => l.includes(join(root, 'run')))).toBe(true);
  });

  it('remove() retries a group its processes are still leaving (EBUSY) until it goes, within one deadline', () => {
    const root = fakeRoot();
    let busy = 2;
    const tries: string[] = [];
    const fs: CgroupFs = {
      write: () => undefined,
      rmdir: (dir) => {
        tries.push(relative(root, dir));
        if (dir.endsWith('c1') && busy-- > 0) throw Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' });
        rmdirSync(dir);
      },
    };
    const g = new SchedGroups('run', ns(5), root, fs);
    g.place({ c1: [5] });
    expect(g.remove(5000)).toEqual([]);
    expect(tries).toEqual([join('run', 'c1'), join('run', 'c1'), join('run', 'c1'), 'run']);
    // past the deadline an EBUSY group is reported, not waited for
    const stuck = new SchedGroups('run2', ns(5), root, { write: () => undefined, rmdir: () => { throw Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' }); } });
    stuck.place({ c1: [5] });
    expect(stuck.remove(0)).toEqual([expect.stringMatching(/^c1: EBUSY/), expect.stringMatching(/run2: EBUSY/)]);
  });
});

describe('placeInGroups', () => {
  /** A channel whose parent answers with `answer` (undefined: never answers). */
  const channel = (answer?: (req: PlaceRequest) => PlaceAnswer, connected = true) => {
    const handlers = new Set<(m: PlaceAnswer) => void>();
    const sent: PlaceRequest[] = [];
    const ch: Channel = {
      connected,
      send: (m) => {
        sent.push(m);
        // another request's answer first: it must not settle this one
        if (answer) queueMicrotask(() => [...handlers].forEach((h) => (h({ op: 'sched-placed', id: m.id + 1000, error: 'not yours' }), h(answer(m)))));
      },
      on: (_, fn) => void handlers.add(fn),
      off: (_, fn) => void handlers.delete(fn),
    };
    return { ch, sent, handlers };
  };

  it('resolves undefined once the parent placed them, with the parent\'s error otherwise, and stops listening', async () => {
    const ok = channel((req) => ({ op: 'sched-placed', id: req.id }));
    await expect(placeInGroups({ c1: [1, 2] }, ok.ch)).resolves.toBeUndefined();
    expect(ok.sent).toEqual([{ op: 'sched-place', id: expect.any(Number), groups: { c1: [1, 2] } }]);
    expect(ok.handlers.size).toBe(0);
    const refused = channel((req) => ({ op: 'sched-placed', id: req.id, error: 'no cgroup v1 cpu hierarchy at /x' }));
    await expect(placeInGroups({ c2: [3] }, refused.ch)).resolves.toBe('no cgroup v1 cpu hierarchy at /x');
  });

  it('without a connected channel, or without an answer in time, answers why', async () => {
    await expect(placeInGroups({ c1: [1] }, null)).resolves.toMatch(/no channel/);
    await expect(placeInGroups({ c1: [1] }, channel(undefined, false).ch)).resolves.toMatch(/no channel/);
    const silent = channel();
    await expect(placeInGroups({ c1: [1] }, silent.ch, 20)).resolves.toMatch(/did not answer within 20 ms \(it may still place them\)/);
    expect(silent.handlers.size).toBe(0);
  });
});
