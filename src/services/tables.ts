/**
 * The native service tables of the local ports: health and affinity applied
 * to a port's candidate backends, installed with serviceUpsert only when the
 * result changed (signature), with each port's status for list() and the
 * gateway. Shared by the incremental recompute (datapath.ts) and the full
 * recompute the tests and bench/services.ts compare it with.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../log.js';
import type { NativeDevice } from '../native/binding.js';
import { backendRows, frontendRow } from '../native/rows.js';
import { selectBackends, type Backend, type Selection, type ServicePortView } from './service.js';
import type { BackendStatus, ServicePortStatus } from './status.js';

interface Installed {
  id: number;
  signature: string;
  view: ServicePortView;
  sel: Selection;
  /** Built on first read (list(), the gateway), not per recompute: a port can have thousands of backends. */
  status?: ServicePortStatus;
}

export class PortTables {
  private readonly installed = new Map<string, Installed>(); // by port key
  private readonly ids = new Map<string, number>();
  private nextId = 1;
  /** Port key -> the cluster "nearest" chose last (kept unless another is clearly closer). */
  private readonly nearest = new Map<string, string>();

  /** cluster: the local cluster; maglevTableSize: M of every table (prime). */
  constructor(
    private readonly dev: Pick<NativeDevice, 'serviceUpsert' | 'serviceRemove'>,
    private readonly cluster: string,
    private readonly maglevTableSize: number,
    private readonly log: Logger,
  ) {}

  /** Selects among the port's healthy candidates (rtt: ms per cluster, for "nearest") and installs the table if it changed. */
  install(v: ServicePortView, healthy: Backend[], rtt: Map<string, number>): void {
    const sel = selectBackends(this.cluster, v.service.affinity, healthy, rtt, this.nearest.get(v.key));
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
    this.installed.set(v.key, { id, signature, view: v, sel });
  }

  /** The port is gone: its table is removed. */
  uninstall(key: string): void {
    const inst = this.installed.get(key);
    if (inst) this.dev.serviceRemove(inst.id);
    this.installed.delete(key);
    this.nearest.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.installed.keys();
  }

  status(key: string): ServicePortStatus | undefined {
    const inst = this.installed.get(key);
    if (!inst || inst.status) return inst?.status;
    const { view: v, sel } = inst;
    const state = new Map<Backend, BackendStatus['state']>();
    for (const b of sel.selected) state.set(b, 'selected');
    for (const b of sel.standby) state.set(b, 'standby');
    return (inst.status = {
      name: v.port.name,
      port: v.port.port,
      protocol: v.port.protocol,
      tableSize: this.maglevTableSize,
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
