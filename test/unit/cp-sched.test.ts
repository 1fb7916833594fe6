import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { answerPlace, placeInGroup, SchedGroups, type Channel, type PlaceAnswer, type PlaceRequest } from '../../bench/cp-sched.js';

// a directory standing in for the cgroup v1 cpu hierarchy: its cgroup.procs are plain files here (the kernel's
// move of a process is not what is tested; the layout of groups, the refusals and the removal are)
const roots: string[] = [];
const fakeRoot = (withCpu = true) => {
  const r = mkdtempSync(join(tmpdir(), 'cp-sched-'));
  if (withCpu) writeFileSync(join(r, 'cpu.shares'), '1024\n');
  roots.push(r);
  return r;
};
afterEach(() => roots.splice(0).forEach((r) => rmSync(r, { recursive: true, force: true })));

describe('SchedGroups', () => {
  it('makes one group per name under the run tag and writes each pid to it', () => {
    const root = fakeRoot();
    const g = new SchedGroups('wiremesh-bench-1', root);
    g.place('c1', [10, 11]);
    g.place('c2', [12]);
    expect(readFileSync(join(root, 'wiremesh-bench-1', 'c1', 'cgroup.procs'), 'utf8')).toBe('11'); // one write per pid
    expect(existsSync(join(root, 'wiremesh-bench-1', 'c2'))).toBe(true);
  });

  it('refuses a name that is not one plain path segment, and a root without the cpu controller', () => {
    const g = new SchedGroups('t', fakeRoot());
    for (const bad of ['', '../x', 'a/b', 'C1', 'x'.repeat(33)]) expect(() => g.place(bad, [1])).toThrow(/bad group name/);
    expect(() => new SchedGroups('t', fakeRoot(false)).place('c1', [1])).toThrow(/no cgroup v1 cpu hierarchy/);
  });

  it('answers a failure as the answer\'s error, never a throw', () => {
    const g = new SchedGroups('t', fakeRoot(false));
    expect(answerPlace(g, { op: 'sched-place', id: 7, name: 'c1', pids: [1] })).toEqual({ op: 'sched-placed', id: 7, error: expect.stringMatching(/no cgroup v1/) });
    expect(answerPlace(new SchedGroups('t', fakeRoot()), { op: 'sched-place', id: 8, name: 'c1', pids: [] })).toEqual({ op: 'sched-placed', id: 8 });
  });

  it('remove() removes empty groups and the run directory, and reports what it could not remove', () => {
    const root = fakeRoot();
    const g = new SchedGroups('run', root);
    expect(g.remove()).toEqual([]); // nothing made yet
    g.place('c1', []);
    g.place('c2', [5]); // c2 holds a file here, as a group holding a process cannot be removed
    const left = g.remove();
    expect(existsSync(join(root, 'run', 'c1'))).toBe(false);
    expect(left.some((l) => l.startsWith('c2:'))).toBe(true);
    expect(left.some((l) => l.includes(join(root, 'run')))).toBe(true);
  });
});

describe('placeInGroup', () => {
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
    await expect(placeInGroup('c1', [1, 2], ok.ch)).resolves.toBeUndefined();
    expect(ok.sent).toEqual([{ op: 'sched-place', id: expect.any(Number), name: 'c1', pids: [1, 2] }]);
    expect(ok.handlers.size).toBe(0);
    const refused = channel((req) => ({ op: 'sched-placed', id: req.id, error: 'no cgroup v1 cpu hierarchy at /x' }));
    await expect(placeInGroup('c2', [3], refused.ch)).resolves.toBe('no cgroup v1 cpu hierarchy at /x');
  });

  it('without a connected channel, or without an answer in time, answers why', async () => {
    await expect(placeInGroup('c1', [1], null)).resolves.toMatch(/no channel/);
    await expect(placeInGroup('c1', [1], channel(undefined, false).ch)).resolves.toMatch(/no channel/);
    const silent = channel();
    await expect(placeInGroup('c1', [1], silent.ch, 20)).resolves.toMatch(/did not answer within 20 ms/);
    expect(silent.handlers.size).toBe(0);
  });
});
