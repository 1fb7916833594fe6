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
 * (cgroup v1, cpu.shares 1024 each, as a session's group weighs), so that the clusters share the host evenly as
 * their own machines would, and leaves the agent alone in the benchmark's session, as on a node of its own. s43
 * measured it and kept it an option: a cluster's etcd then waits behind its own kvstoremesh, and in two of its four
 * runs at the issue point etcd's commits slowed (WAL fsync p99 256-512 ms) and propagation with them.
 *
 * The groups are made by the parent outside the namespace (`ip netns exec` mounts a /sys without the cgroup
 * filesystems): the process inside asks over its IPC channel (placeInGroup), the parent creates
 * /sys/fs/cgroup/cpu/wiremesh-bench-<its pid>/<name>, moves the processes in and answers; it removes the groups once
 * it has killed every process of the namespace (a parent killed by SIGKILL leaves the empty groups behind). Without
 * a writable cgroup v1 `cpu` hierarchy (a cgroup v2 host, a container without it), placeInGroup answers why and
 * the run prints that the layout fell back to the kernel's.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The cgroup v1 `cpu` hierarchy where the groups are made. */
export const CPU_CGROUP_ROOT = '/sys/fs/cgroup/cpu';

/** A request from the benchmark inside the namespace to its parent, and the answer (error: why not placed). */
export interface PlaceRequest {
  op: 'sched-place';
  id: number;
  name: string;
  pids: number[];
}
export interface PlaceAnswer {
  op: 'sched-placed';
  id: number;
  error?: string;
}

/** The parent's side: one directory of groups for this run, made on first use, removed by remove(). */
export class SchedGroups {
  private readonly dir: string;
  constructor(
    tag: string,
    private readonly root = CPU_CGROUP_ROOT,
  ) {
    this.dir = join(root, tag);
  }

  /** Moves `pids` (whole processes, every thread) into group `name` (a single path segment); throws why not. */
  place(name: string, pids: readonly number[]): void {
    if (!/^[a-z0-9-]{1,32}$/.test(name)) throw new Error(`bad group name ${JSON.stringify(name)}`);
    if (!existsSync(join(this.root, 'cpu.shares'))) throw new Error(`no cgroup v1 cpu hierarchy at ${this.root}`);
    const group = join(this.dir, name);
    mkdirSync(group, { recursive: true });
    for (const pid of pids) writeFileSync(join(group, 'cgroup.procs'), String(pid));
  }

  /** Removes every group (each must be empty: its processes exited); what cannot be removed is returned. */
  remove(): string[] {
    if (!existsSync(this.dir)) return [];
    const left: string[] = [];
    for (const e of readdirSync(this.dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      try {
        rmdirSync(join(this.dir, e.name));
      } catch (err) {
        left.push(`${e.name}: ${(err as Error).message}`);
      }
    }
    try {
      rmdirSync(this.dir);
    } catch (err) {
      left.push(`${this.dir}: ${(err as Error).message}`);
    }
    return left;
  }
}

/** The parent's answer to one request (never throws: a failure is the answer's error). */
export function answerPlace(groups: SchedGroups, req: PlaceRequest): PlaceAnswer {
  try {
    groups.place(req.name, req.pids);
    return { op: 'sched-placed', id: req.id };
  } catch (err) {
    return { op: 'sched-placed', id: req.id, error: (err as Error).message };
  }
}

/** The process's side of its IPC channel, as placeInGroup uses it (a test passes its own). */
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
 * Inside the namespace: asks the parent to put `pids` in group `name`. Resolves with undefined once placed, or with
 * why not (no channel to the parent, the parent's failure, no answer within `timeoutMs`).
 */
export function placeInGroup(name: string, pids: number[], channel: Channel | null = parentChannel(), timeoutMs = 5000): Promise<string | undefined> {
  if (!channel?.connected) return Promise.resolve('no channel to the parent outside the namespace');
  const id = nextId++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => (channel.off('message', onMessage), resolve(`the parent did not answer within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m: PlaceAnswer) => {
      if (m?.op !== 'sched-placed' || m.id !== id) return;
      clearTimeout(timer);
      channel.off('message', onMessage);
      resolve(m.error);
    };
    channel.on('message', onMessage);
    channel.send({ op: 'sched-place', id, name, pids });
  });
}
