/**
 * bench:controlplane's scheduling layout: how the host's 2 cores are shared between the simulated clusters, the
 * measured agent and the load generator (docs/benchmarks.md, s43).
 *
 * The benchmark compresses K clusters, each of which has machines of its own in a deployment, onto one host.
 * Left to the kernel (`sched_autogroup_enabled = 1`), CFS shares the CPU between sessions first: each etcd ran in a
 * session of its own (src/testbed/etcd.ts detaches it) while the K kvstoremesh processes and the agent shared the
 * benchmark's one session, so under the churn one etcd weighed as much as all kvstoremesh processes and the agent
 * together, and the agent waited behind 16 runnable kvstoremesh threads (s42). That is the `session` layout, the
 * default. The `cluster` layout puts each cluster's etcd and kvstoremesh in one group of the `cpu` controller
 * (cgroup v1, made at the hierarchy's root with the kernel's default cpu.shares, 1024, what a session's group
 * weighs), so that the clusters share the host evenly as their own machines would, and leaves the agent in the
 * benchmark's session with only the load generator (alone when that runs in the real-time class), as on a node of
 * its own. s43 measured it and kept it an option: a cluster's etcd then waits behind its own kvstoremesh, and in two
 * of its four runs at the issue point etcd's commits slowed (WAL fsync p99 256-512 ms) and propagation with them.
 *
 * Both descriptions hold where the processes start in the root of the `cpu` hierarchy, as here; where an init
 * system already puts each session in a `cpu` group of its own, the kernel's autogroups do not apply, and neither
 * layout is what is written here.
 *
 * The groups are made by the parent outside the namespace (`ip netns exec` mounts a /sys without the cgroup
 * filesystems): the process inside asks over its IPC channel (placeInGroups, every group in one request), the
 * parent creates /sys/fs/cgroup/cpu/wiremesh-bench-<its pid>/<name>, moves the processes in (all or none) and
 * answers; it removes the groups once it has killed every process of the namespace (a parent killed by SIGKILL
 * leaves the empty groups behind). Without
 * a writable cgroup v1 `cpu` hierarchy (a cgroup v2 host, a container without it), placeInGroups answers why and
 * the run prints that the layout fell back to the kernel's.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The cgroup v1 `cpu` hierarchy where the groups are made. */
export const CPU_CGROUP_ROOT = '/sys/fs/cgroup/cpu';

/**
 * A request from the benchmark inside the namespace to its parent: every group of the run at once (group name →
 * processes), placed all or none; the answer's error says why not.
 */
export interface PlaceRequest {
  op: 'sched-place';
  id: number;
  groups: Record<string, number[]>;
}
export interface PlaceAnswer {
  op: 'sched-placed';
  id: number;
  error?: string;
}

/** How the parent writes a control file and removes a group (a test passes its own, to see every write). */
export interface CgroupFs {
  write(file: string, data: string): void;
  rmdir(dir: string): void;
}
const REAL_FS: CgroupFs = { write: (file, data) => writeFileSync(file, data), rmdir: (dir) => rmdirSync(dir) };

/**
 * The parent's side: one directory of groups for this run, made on first use, removed by remove(). Bounds: a name
 * is one path segment of [a-z0-9-], at most 32 characters; a process must be a positive integer that `allowed`
 * holds (the namespace's own processes: the parent runs as root outside it, and a write of 0 would move the
 * writer itself).
 */
export class SchedGroups {
  private readonly dir: string;
  constructor(
    tag: string,
    private readonly allowed: () => ReadonlySet<number>,
    private readonly root = CPU_CGROUP_ROOT,
    private readonly fs: CgroupFs = REAL_FS,
  ) {
    this.dir = join(root, tag);
  }

  /**
   * Moves each group's processes (whole processes: in cgroup v1 a pid written to cgroup.procs brings all its
   * threads, and threads made later follow) into that group; all or none: on a failure the ones already moved go
   * back to the hierarchy's root (where the kernel's autogroups apply again; where the benchmark runs the processes
   * start there, so that is where they came from) and the error is thrown.
   */
  place(groups: Readonly<Record<string, readonly number[]>>): void {
    if (!existsSync(join(this.root, 'cpu.shares'))) throw new Error(`no cgroup v1 cpu hierarchy at ${this.root}`);
    const allowed = this.allowed();
    for (const [name, pids] of Object.entries(groups)) {
      if (!/^[a-z0-9-]{1,32}$/.test(name)) throw new Error(`bad group name ${JSON.stringify(name)}`);
      for (const pid of pids) if (!Number.isInteger(pid) || pid <= 0 || !allowed.has(pid)) throw new Error(`process ${JSON.stringify(pid)} is not one of the namespace's`);
    }
    const moved: number[] = [];
    try {
      for (const [name, pids] of Object.entries(groups)) {
        const group = join(this.dir, name);
        mkdirSync(group, { recursive: true });
        for (const pid of pids) {
          this.fs.write(join(group, 'cgroup.procs'), String(pid));
          moved.push(pid);
        }
      }
    } catch (err) {
      for (const pid of moved) {
        try {
          this.fs.write(join(this.root, 'cgroup.procs'), String(pid));
        } catch {
          /* gone: nothing to move back */
        }
      }
      throw err;
    }
  }

  /**
   * Removes every group, each once its processes are gone: a process that was just killed can still be leaving its
   * group (EBUSY), so removals are retried every 50 ms until `waitMs` after the call (one deadline for all; the
   * parent runs this after killing the namespace's processes, just before it exits). What could not be removed is
   * returned.
   */
  remove(waitMs = 1000): string[] {
    if (!existsSync(this.dir)) return [];
    const left: string[] = [];
    const until = Date.now() + waitMs;
    const rm = (path: string, label: string) => {
      for (;;) {
        try {
          return this.fs.rmdir(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() >= until) return void left.push(`${label}: ${(err as Error).message}`);
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
        }
      }
    };
    for (const e of readdirSync(this.dir, { withFileTypes: true })) if (e.isDirectory()) rm(join(this.dir, e.name), e.name);
    rm(this.dir, this.dir);
    return left;
  }
}

/** The parent's answer to one request (never throws: a failure is the answer's error). */
export function answerPlace(groups: SchedGroups, req: PlaceRequest): PlaceAnswer {
  try {
    groups.place(req.groups);
    return { op: 'sched-placed', id: req.id };
  } catch (err) {
    return { op: 'sched-placed', id: req.id, error: (err as Error).message };
  }
}

/** The process's side of its IPC channel, as placeInGroups uses it (a test passes its own). */
export interface Channel {
  connected: boolean;
  send(m: PlaceRequest): void;
  on(ev: 'message', fn: (m: PlaceAnswer) => void): void;
  off(ev: 'message', fn: (m: PlaceAnswer) => void): void;
}

/** This process's channel to its parent, if it has one. */
function parentChannel(): Channel | null {
  if (!process.send) return null;
  return {
    get connected() {
      return process.connected;
    },
    send: (m) => void process.send!(m),
    on: (ev, fn) => void process.on(ev, fn),
    off: (ev, fn) => void process.off(ev, fn),
  };
}

let nextId = 1;
/**
 * Inside the namespace: asks the parent to place every group (name → processes), all or none. Resolves with
 * undefined once placed, or with why not (no channel to the parent, the parent's failure, no answer within
 * `timeoutMs`).
 */
export function placeInGroups(groups: Record<string, number[]>, channel: Channel | null = parentChannel(), timeoutMs = 5000): Promise<string | undefined> {
  if (!channel?.connected) return Promise.resolve('no channel to the parent outside the namespace');
  const id = nextId++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => (channel.off('message', onMessage), resolve(`the parent did not answer within ${timeoutMs} ms (it may still place them)`)), timeoutMs);
    const onMessage = (m: PlaceAnswer) => {
      if (m?.op !== 'sched-placed' || m.id !== id) return;
      clearTimeout(timer);
      channel.off('message', onMessage);
      resolve(m.error);
    };
    channel.on('message', onMessage);
    channel.send({ op: 'sched-place', id, groups });
  });
}
