/**
 * The agent's side of the native load balancer: turns service definitions
 * (own cluster + cached remote ones), endpoints and node liveness into one
 * Maglev-backed native service per frontend port.
 *
 *   Service records ──▶ per namespace/name, every cluster's definition
 *   endpoints (all clusters) ──▶ candidate backends (service.ts servicePorts)
 *   node liveness (health.ts, tunnel probes) ──▶ healthy backends
 *   affinity ──▶ selected (weight > 0) and standby (weight 0: established flows only)
 *   ──▶ serviceUpsert(id, M, frontends = local VIP:port, backends)  (only when the result changed)
 *
 * A backend that is neither selected nor standby is dead: the data path
 * resets its established flows on their next packet. VIPs of the local
 * definitions are routed into the TUN. Recomputation is debounced and runs
 * again every second so "nearest" follows measured round-trip times.
 */
import { execFileSync } from 'node:child_process';
import type { EndpointRecord } from '../controlplane/types.js';
import type { Logger } from '../log.js';
import type { NativeDevice } from '../native/binding.js';
import { backendRows, frontendRow } from '../native/rows.js';
import { formatIP, parseIP } from '../net/ip.js';
import { NodeHealth } from './health.js';
import { indexEndpoints, serviceFromManifest, selectBackends, servicePorts, type Backend, type ClusterService, type ServicePortView } from './service.js';
import type { Manifest } from '../manifests/validate.js';

export interface BackendStatus extends Backend {
  state: 'selected' | 'standby' | 'dead';
}

export interface ServicePortStatus {
  name: string;
  port: number;
  protocol: string;
  tableSize: number;
  nearest?: string;
  backends: BackendStatus[];
}

export interface ServiceStatus {
  namespace: string;
  name: string;
  vip?: string;
  global: boolean;
  shared: boolean;
  affinity: string;
  /** Clusters that define the service, and which of them export backends to us. */
  clusters: Array<{ cluster: string; exported: boolean; rttMs?: number }>;
  ports: ServicePortStatus[];
}

interface Installed {
  id: number;
  signature: string;
  status: ServicePortStatus;
}

export interface ServiceDatapathOptions {
  maglevTableSize: number;
}

export class ServiceDatapath {
  /** Definitions by etcd key. */
  private readonly records = new Map<string, ClusterService>();
  private readonly installed = new Map<string, Installed>(); // by port key
  private readonly ids = new Map<string, number>();
  private nextId = 1;
  private readonly nearest = new Map<string, string>(); // port key -> cluster
  private readonly routedVips = new Set<string>();
  readonly health: NodeHealth;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  lastComputeMs = 0;
  /**
   * Bumped by every change list() reads (records, a recompute): list() is
   * built once per generation and shared by its readers (status, metrics,
   * health, the API), instead of re-indexing every endpoint per reader.
   */
  private generation = 0;
  private listed: { generation: number; list: ServiceStatus[] } | undefined;
  /** Called after every recompute (the ingress gateway resets connections to backends that died). */
  onComputed: (() => void) | undefined;

  constructor(
    private readonly dev: NativeDevice,
    private readonly tunName: string,
    private readonly cluster: string,
    private readonly node: string,
    private readonly opts: ServiceDatapathOptions,
    private readonly log: Logger,
    /** All known endpoints (own cluster and cached). */
    private readonly endpoints: () => Iterable<EndpointRecord>,
    /** WireGuard peer id of a node ("cluster/node"), if it is a peer now. */
    private readonly peerOf: (nodeId: string) => number | undefined,
    now: () => number,
  ) {
    this.health = new NodeHealth(dev, now, () => this.schedule());
  }

  start(): void {
    this.health.start();
    this.timer = setInterval(() => this.schedule(), 1000); // schedule(): one guarded, batched compute
    this.timer.unref();
  }

  stop(): void {
    this.health.stop();
    if (this.timer) clearInterval(this.timer);
    for (const vip of this.routedVips) this.route(vip, false);
    this.routedVips.clear();
  }

  /** A cluster's Service manifest, decoded by records/manifest.ts. */
  upsertRecord(key: string, cluster: string, manifest: Manifest): void {
    this.records.set(key, serviceFromManifest(cluster, manifest));
    this.generation++;
    this.schedule();
  }

  removeRecord(key: string): void {
    if (!this.records.delete(key)) return;
    this.generation++;
    this.schedule();
  }

  /** Endpoints or peers changed: recompute soon (batched). */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      try {
        this.compute();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'service recompute failed; the previous tables stay in force');
      }
    }, 10).unref();
  }

  /** Local definitions by namespace/name with every cluster's definitions. */
  private definitions(): Map<string, ClusterService[]> {
    const byName = new Map<string, ClusterService[]>();
    for (const d of this.records.values()) {
      const k = `${d.namespace}/${d.name}`;
      let list = byName.get(k);
      if (!list) byName.set(k, (list = []));
      list.push(d);
    }
    for (const [k, list] of byName) if (!list.some((d) => d.cluster === this.cluster)) byName.delete(k);
    return byName;
  }

  private alive(b: Backend): boolean {
    if (b.cluster === this.cluster && b.node === this.node) return true;
    const id = `${b.cluster}/${b.node}`;
    return this.peerOf(id) !== undefined && this.health.get(id).alive;
  }

  /** Median probe RTT per cluster over the nodes hosting candidates (this node: 0). */
  rttByCluster(views = this.views()): Map<string, number> {
    const samples = new Map<string, number[]>();
    const add = (c: string, v: number): void => {
      let l = samples.get(c);
      if (!l) samples.set(c, (l = []));
      l.push(v);
    };
    for (const view of views) {
      for (const b of view.backends) {
        if (b.cluster === this.cluster && b.node === this.node) add(b.cluster, 0);
        else {
          const rtt = this.health.get(`${b.cluster}/${b.node}`).rttMs;
          if (rtt !== undefined) add(b.cluster, rtt);
        }
      }
    }
    const out = new Map<string, number>();
    for (const [c, l] of samples) {
      l.sort((a, b) => a - b);
      out.set(c, l[l.length >> 1]!);
    }
    return out;
  }

  private views(): ServicePortView[] {
    const idx = indexEndpoints(this.endpoints());
    return [...this.definitions().values()].flatMap((defs) => servicePorts(this.cluster, defs, idx));
  }

  compute(): void {
    const t0 = performance.now();
    const views = this.views();
    // probe every other node that hosts a candidate backend
    const watch = new Map<string, number>();
    for (const v of views)
      for (const b of v.backends) {
        if (b.cluster === this.cluster && b.node === this.node) continue;
        const id = `${b.cluster}/${b.node}`;
        const peer = this.peerOf(id);
        if (peer !== undefined) watch.set(id, peer);
      }
    this.health.watch(watch);
    const rtt = this.rttByCluster(views);
    const seen = new Set<string>();
    const vips = new Set<string>();
    for (const v of views) {
      seen.add(v.key);
      const healthy = v.backends.filter((b) => this.alive(b));
      const sel = selectBackends(this.cluster, v.service.affinity, healthy, rtt, this.nearest.get(v.key));
      if (sel.nearest) this.nearest.set(v.key, sel.nearest);
      const state = new Map<Backend, BackendStatus['state']>();
      for (const b of sel.selected) state.set(b, 'selected');
      for (const b of sel.standby) state.set(b, 'standby');
      const status: ServicePortStatus = {
        name: v.port.name,
        port: v.port.port,
        protocol: v.port.protocol,
        tableSize: this.opts.maglevTableSize,
        ...(sel.nearest ? { nearest: sel.nearest } : {}),
        backends: v.backends.map((b) => ({ ...b, state: state.get(b) ?? 'dead' })),
      };
      const vip = v.service.vip;
      if (vip) vips.add(vip);
      const rows = [...sel.selected.map((b) => [b, b.weight] as const), ...sel.standby.map((b) => [b, 0] as const)];
      const signature = JSON.stringify([vip, v.port, this.opts.maglevTableSize, rows.map(([b, w]) => `${b.ip}:${b.port}:${w}`)]);
      let id = this.ids.get(v.key);
      if (id === undefined) this.ids.set(v.key, (id = this.nextId++));
      const prev = this.installed.get(v.key);
      if (prev?.signature !== signature) {
        if (vip) {
          this.dev.serviceUpsert(id, this.opts.maglevTableSize, frontendRow(vip, v.port.port, v.port.protocol), backendRows(rows));
        } else {
          this.dev.serviceRemove(id);
        }
        this.log.debug({ service: v.key, selected: sel.selected.length, standby: sel.standby.length, nearest: sel.nearest }, 'service table');
      }
      this.installed.set(v.key, { id, signature, status });
    }
    for (const [key, inst] of this.installed) {
      if (seen.has(key)) continue;
      this.dev.serviceRemove(inst.id);
      this.installed.delete(key);
      this.nearest.delete(key);
    }
    for (const vip of vips) if (!this.routedVips.has(vip)) this.route(vip, true);
    for (const vip of [...this.routedVips]) if (!vips.has(vip)) this.route(vip, false);
    this.generation++;
    this.lastComputeMs = performance.now() - t0;
    this.onComputed?.();
  }

  /** A backend address some local service still counts as alive (selected or standby). */
  backendAlive(ip: string, port: number): boolean {
    for (const inst of this.installed.values()) for (const b of inst.status.backends) if (b.ip === ip && b.port === port && b.state !== 'dead') return true;
    return false;
  }

  private route(vip: string, add: boolean): void {
    const v6 = vip.includes(':');
    try {
      execFileSync('ip', [...(v6 ? ['-6'] : []), 'route', add ? 'replace' : 'del', `${vip}/${v6 ? 128 : 32}`, 'dev', this.tunName], { stdio: 'ignore' });
      if (add) this.routedVips.add(vip);
      else this.routedVips.delete(vip);
    } catch (err) {
      if (add) this.log.warn({ vip, err: (err as Error).message }, 'cannot route service VIP into the TUN');
      else this.routedVips.delete(vip);
    }
  }

  /**
   * Every local service with its ports, backends and their state (and each
   * cluster's round-trip time), as of the last change: cached until the
   * records change or the tables are recomputed (at least every second).
   */
  list(): readonly ServiceStatus[] {
    if (this.listed?.generation !== this.generation) this.listed = { generation: this.generation, list: this.buildList() };
    return this.listed.list;
  }

  private buildList(): ServiceStatus[] {
    const rtt = this.rttByCluster();
    const out: ServiceStatus[] = [];
    for (const defs of this.definitions().values()) {
      const local = defs.find((d) => d.cluster === this.cluster)!;
      const ports = local.ports.map((p) => this.installed.get(`${local.namespace}/${local.name}/${p.name || p.port}`)?.status).filter((s): s is ServicePortStatus => s !== undefined);
      out.push({
        namespace: local.namespace,
        name: local.name,
        ...(local.vip ? { vip: local.vip } : {}),
        global: local.global,
        shared: local.shared,
        affinity: local.affinity,
        clusters: defs
          .map((d) => ({ cluster: d.cluster, exported: d.cluster === this.cluster || (local.global && d.shared), ...(rtt.has(d.cluster) ? { rttMs: Math.round(rtt.get(d.cluster)! * 1000) / 1000 } : {}) }))
          .sort((a, b) => (a.cluster < b.cluster ? -1 : 1)),
        ports,
      });
    }
    return out.sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
  }

  /**
   * The backend the data path's Maglev table gives a new flow from
   * client:clientPort to the local VIP's port (the ingress gateway's
   * connect-time translation); undefined when none is selectable.
   */
  pick(namespace: string, name: string, port: number, client: string, clientPort: number): { ip: string; port: number } | undefined {
    const def = this.lookup(namespace, name);
    const p = def?.ports.find((x) => x.port === port && x.protocol === 'TCP');
    if (!def?.vip || !p) return undefined;
    const v6 = def.vip.includes(':');
    const plain = client.startsWith('::ffff:') ? client.slice(7) : client;
    // the hash input must be of the VIP's family; another family's client hashes by port alone
    const src = parseIP(plain.includes(':') === v6 ? plain : v6 ? '::' : '0.0.0.0')!;
    const b = this.dev.servicePick(frontendRow(def.vip, port, 'TCP'), src, clientPort);
    return b ? { ip: formatIP(b.address), port: b.port } : undefined;
  }

  /** The local definition of namespace/name (DNS). */
  lookup(namespace: string, name: string): ClusterService | undefined {
    for (const d of this.records.values()) if (d.cluster === this.cluster && d.namespace === namespace && d.name === name) return d;
    return undefined;
  }
}
