/**
 * The native service tables of the local ports: health, the per-cluster
 * bound and affinity applied to a port's candidate backends, installed with
 * serviceUpsert only when the result changed (signature), with each port's
 * status for list() and the gateway. Shared by the incremental recompute
 * (datapath.ts) and the full recompute the tests and bench/services.ts
 * compare it with.
 *
 * The bound: a cluster speaks only for itself, but a global service takes
 * every shared cluster's backends, so one cluster (a hostile one, or a node
 * of it writing endpoints up to its budget) could put ~250,000 backends (a
 * remote's record budget) in a port's table: every agent sharing the service
 * would hash its rows, install them and compute their Maglev permutations on
 * each change, and hold them natively. At most maxBackendsPerCluster of a
 * cluster's healthy backends per port are used: the first in the port's
 * order (address text, port, then who: the same on every node with the same
 * bound and the same view of liveness); the rest are "over-limit" (status,
 * `wiremesh service list`, the gauge of the first port) and logged, and take
 * places as kept ones die or go. A kept backend that a new one earlier in
 * the order displaces leaves the table as a dead one does (its flows are
 * reset). What the bound does not bound: a cluster's share of new flows
 * (its backends' count and weight decide it, as in Cilium; only affinity
 * local keeps new flows off remote backends while a local one is healthy),
 * and the candidates before it: every change of a service's members still
 * sorts all of them, and status lists all of them.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../log.js';
import type { NativeDevice } from '../native/binding.js';
import { backendRows, frontendRow } from '../native/rows.js';
import { selectBackends, type Backend, type Selection, type ServicePortView } from './service.js';
import type { BackendStatus, ServicePortStatus } from './status.js';

/**
 * Backends per cluster and port in a service table by default: 16× Kubernetes' threshold of 250 endpoints per
 * service (sig-scalability thresholds); at most a quarter of M (maxBackendsPerClusterDefault), so a cluster alone
 * at its bound with equal weights keeps ≥ 4 slots per backend.
 */
export const MAX_BACKENDS_PER_CLUSTER = 4096;
/** The default bound for a table size M: MAX_BACKENDS_PER_CLUSTER, or M/4 when that is smaller (node.yaml). */
export const maxBackendsPerClusterDefault = (m: number): number => Math.min(MAX_BACKENDS_PER_CLUSTER, Math.floor(m / 4));

/**
 * healthy: a port's healthy backends in the port's order; the first `max` of each cluster kept, in that order, and
 * how many were left out per cluster (undefined when none, the common case). One pass that allocates only what it
 * keeps (the left-out ones are healthy minus kept: status derives them on read); a cluster's counter is looked up
 * only when the cluster differs from the last backend's (runs of one cluster: the hostile case).
 */
export function boundPerCluster(healthy: Backend[], max: number): { kept: Backend[]; overBy: Map<string, number> | undefined } {
  if (healthy.length <= max) return { kept: healthy, overBy: undefined };
  const counts = new Map<string, { n: number }>();
  const kept: Backend[] = [];
  let last: string | undefined;
  let count = { n: 0 };
  for (const b of healthy) {
    if (b.cluster !== last) {
      last = b.cluster;
      const c = counts.get(last);
      if (c) count = c;
      else counts.set(last, (count = { n: 0 }));
    }
    if (++count.n <= max) kept.push(b);
  }
  if (kept.length === healthy.length) return { kept: healthy, overBy: undefined };
  const overBy = new Map<string, number>();
  for (const [cluster, c] of counts) if (c.n > max) overBy.set(cluster, c.n - max);
  return { kept, overBy };
}

interface Installed {
  id: number;
  signature: string;
  view: ServicePortView;
  sel: Selection;
  /** With backends past the per-cluster bound: the healthy ones (those not selected or standby are over-limit), and how many per cluster. */
  healthy: Backend[] | undefined;
  overBy: Map<string, number> | undefined;
  /** Built on first read (list(), the gateway), not per recompute: a port can have thousands of backends. */
  status?: ServicePortStatus;
}

export class PortTables {
  private readonly installed = new Map<string, Installed>(); // by port key
  private readonly ids = new Map<string, number>();
  private nextId = 1;
  /** Port key -> the cluster "nearest" chose last (kept unless another is clearly closer). */
  private readonly nearest = new Map<string, string>();

  /** Per cluster, the minute its going over was last logged: ≤ one line a minute per cluster (clusters ≤ 511). */
  private readonly loggedAt = new Map<string, number>();

  /**
   * cluster: the local cluster; maglevTableSize: M of every table (prime); maxBackendsPerCluster: healthy backends
   * a cluster may have in one port's table (above).
   */
  constructor(
    private readonly dev: Pick<NativeDevice, 'serviceUpsert' | 'serviceRemove'>,
    private readonly cluster: string,
    private readonly maglevTableSize: number,
    private readonly log: Logger,
    private readonly maxBackendsPerCluster = maxBackendsPerClusterDefault(maglevTableSize),
  ) {}

  /**
   * Bounds each cluster's count of the port's healthy candidates, selects among them (rtt: ms per cluster, for
   * "nearest") and installs the table if it changed.
   */
  install(v: ServicePortView, healthy: Backend[], rtt: Map<string, number>): void {
    const { kept, overBy } = boundPerCluster(healthy, this.maxBackendsPerCluster);
    this.noteOverLimit(v, overBy);
    const sel = selectBackends(this.cluster, v.service.affinity, kept, rtt, this.nearest.get(v.key));
    if (sel.nearest) this.nearest.set(v.key, sel.nearest);
    const vip = v.service.vip;
    const rows = [...sel.selected.map((b) => [b, b.weight] as const), ...sel.standby.map((b) => [b, 0] as const)];
    // a digest, not the text: a port's rows can be thousands long and the signature is kept per port
    const signature = createHash('sha256').update(JSON.stringify([vip, v.port, this.maglevTableSize, rows.map(([b, w]) => `${b.ip}:${b.port}:${w}`)])).digest('base64');
    let id = this.ids.get(v.key);
    if (id === undefined) this.ids.set(v.key, (id = this.nextId++));
    if (this.installed.get(v.key)?.signature !== signature) {
      if (vip) this.dev.serviceUpsert(id, this.maglevTableSize, frontendRow(vip, v.port.port, v.port.protocol), backendRows(rows));
      else this.dev.serviceRemove(id);
      this.log.debug({ service: v.key, selected: sel.selected.length, standby: sel.standby.length, nearest: sel.nearest }, 'service table');
    }
    this.installed.set(v.key, { id, signature, view: v, sel, healthy: overBy && healthy, overBy });
  }

  /** The port is gone: its table is removed. */
  uninstall(key: string): void {
    const inst = this.installed.get(key);
    if (inst) this.dev.serviceRemove(inst.id);
    this.installed.delete(key);
    this.nearest.delete(key);
  }

  /**
   * Logs a cluster whose healthy backends go over the bound on a port with a table (overBy: left out per cluster),
   * once while it stays over, at most one line a minute per cluster (so one cluster going over and back cannot
   * silence another's lines); the backends left out now are always in status.
   */
  private noteOverLimit(v: ServicePortView, overBy: Map<string, number> | undefined): void {
    if (!overBy || !v.service.vip) return;
    const before = this.installed.get(v.key)?.overBy;
    const minute = Math.floor(Date.now() / 60_000);
    for (const [cluster, leftOut] of overBy) {
      if (before?.has(cluster) || this.loggedAt.get(cluster) === minute) continue;
      this.loggedAt.set(cluster, minute);
      this.log.warn({ service: v.key, cluster, leftOut, limit: this.maxBackendsPerCluster }, 'a cluster has more healthy backends for a service port than the bound (services.maxBackendsPerCluster): the first are used, the rest left out (at most one such line a minute per cluster; status lists every backend left out)');
    }
  }

  keys(): IterableIterator<string> {
    return this.installed.keys();
  }

  status(key: string): ServicePortStatus | undefined {
    const inst = this.installed.get(key);
    if (!inst || inst.status) return inst?.status;
    const { view: v, sel, healthy } = inst;
    const state = new Map<Backend, BackendStatus['state']>();
    for (const b of sel.selected) state.set(b, 'selected');
    for (const b of sel.standby) state.set(b, 'standby');
    // selected and standby are the kept ones (affinity splits them): the other healthy ones were left out
    for (const b of healthy ?? []) if (!state.has(b)) state.set(b, 'over-limit');
    return (inst.status = {
      name: v.port.name,
      port: v.port.port,
      protocol: v.port.protocol,
      tableSize: this.maglevTableSize,
      maxBackendsPerCluster: this.maxBackendsPerCluster,
      ...(sel.nearest ? { nearest: sel.nearest } : {}),
      backends: v.backends.map((b) => ({ ...b, state: state.get(b) ?? 'dead' })),
    });
  }

  /** A backend address some local port still counts as alive (selected or standby). */
  backendAlive(ip: string, port: number): boolean {
    for (const inst of this.installed.values()) for (const l of [inst.sel.selected, inst.sel.standby]) for (const b of l) if (b.ip === ip && b.port === port) return true;
    return false;
  }
}
