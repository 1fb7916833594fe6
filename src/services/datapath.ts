/**
 * The agent's side of the native load balancer: turns service definitions
 * (own cluster + cached remote ones), endpoints and node liveness into one
 * Maglev-backed native service per frontend port.
 *
 *   Service records ──▶ per namespace/name, every cluster's definition
 *   endpoints (all clusters) ──▶ index by cluster/namespace and selector (endpoints.ts)
 *     ──▶ candidate backends per port (service.ts portViews)
 *   node liveness (health.ts, tunnel probes) ──▶ healthy backends
 *   affinity ──▶ selected (weight > 0) and standby (weight 0: established flows only)
 *   ──▶ serviceUpsert(id, M, frontends = local VIP:port, backends)  (only when the result changed)
 *
 * A backend that is neither selected nor standby is dead: the data path
 * resets its established flows on their next packet. VIPs of the local
 * definitions are routed into the TUN.
 *
 * Every change costs what it changes: an endpoint or definition change marks
 * only the services whose members it changes (their candidates are rebuilt);
 * a node's liveness or peer change marks only the services with backends on
 * it (selected again from cached candidates); RTT changes re-select only the
 * "nearest" services. Recomputation is debounced (10 ms); the result equals a
 * full recompute (test/unit/services-incremental.test.ts checks it on random
 * sequences).
 */
import { execFileSync } from 'node:child_process';
import type { EndpointRecord } from '../controlplane/types.js';
import type { EndpointRecords } from '../controlplane/endpointrecords.js';
import type { Logger } from '../log.js';
import type { NativeDevice } from '../native/binding.js';
import { frontendRow } from '../native/rows.js';
import { formatIP, parseIP } from '../net/ip.js';
import { unmappedIPv4 } from '../gateway/proxyproto.js';
import { serviceName, ServiceEndpoints } from './endpoints.js';
import { NodeHealth } from './health.js';
import { contributingDefinitions, localDefinition, portViews, serviceFromManifest, type ClusterService, type ServiceEndpoint, type ServicePortView } from './service.js';
import { serviceList, type ServiceStatus } from './status.js';
import { PortTables } from './tables.js';
import type { Manifest } from '../manifests/validate.js';

export type { BackendStatus, ServicePortStatus, ServiceStatus } from './status.js';

export interface ServiceDatapathOptions {
  maglevTableSize: number;
  /** Healthy backends one cluster may have in one port's table (tables.ts); default min(4096, ⌊M/4⌋). */
  maxBackendsPerCluster?: number;
  /**
   * Every endpoint's latest record by key, kept by the caller (the agent's: the policy data path's endpoint
   * map): the index reads its records there rather than keeping a map of its own (issue 16). The caller sets a
   * key's record there before upsertEndpoint returns and passes the one it replaced (endpoints.ts). Readable node
   * by node: the index keeps per scope the nodes its endpoints are on, not their keys.
   */
  endpoints: EndpointRecords;
  /** Routes (add) or unroutes a VIP into the TUN; true when it is routed. Default: `ip route` on the TUN (tests replace it). */
  routeVip?: (vip: string, add: boolean) => boolean;
}

/** What one service ("namespace/name") contributes, cached between recomputes. */
interface ServiceState {
  /** Its ports with their candidate backends (recomputed only when its definitions or members change). */
  views: ServicePortView[];
  /** Backends per node id ("cluster/node") over its ports: which node events touch it, and the RTT weights. */
  nodes: Map<string, number>;
  vip: string | undefined;
  nearest: boolean;
}

export class ServiceDatapath {
  /** Definitions by etcd key. */
  private readonly records = new Map<string, ClusterService>();
  /** Every cluster's definitions by service ("namespace/name"). */
  private readonly byName = new Map<string, ClusterService[]>();
  private readonly index: ServiceEndpoints;
  /** The definitions in the index, by service: its contributing ones (reindex). */
  private readonly indexed = new Map<string, Set<ClusterService>>();
  private readonly services = new Map<string, ServiceState>();
  /** Services whose candidate backends must be rebuilt / whose selection must be redone. */
  private readonly dirtyBackends = new Set<string>();
  private readonly dirtySelection = new Set<string>();
  /** node id -> the services with backends there, its backend count over all ports, its last liveness seen. */
  private readonly nodeServices = new Map<string, Set<string>>();
  private readonly nodeBackends = new Map<string, number>();
  private readonly nodeAlive = new Map<string, boolean>();
  private readonly nearestServices = new Set<string>();
  private watchDirty = false;
  private rttDirty = false;
  private readonly nodeDelta = new Map<string, number>(); // net backend count change per node in this compute
  private healthSeen = -1; // health.version of the last compute
  private timerHealth = -1; // and of the last timer round
  private rtt = new Map<string, number>();
  private readonly vipRefs = new Map<string, number>();
  private readonly tables: PortTables;
  private readonly routedVips = new Set<string>();
  readonly health: NodeHealth;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  lastComputeMs = 0;
  /**
   * Bumped by every change list() reads (records, a recompute, RTTs): list()
   * is built once per generation and shared by its readers (status, metrics,
   * health, the API), instead of rebuilt per reader.
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
    /** WireGuard peer id of a node ("cluster/node"), if it is a peer now. */
    private readonly peerOf: (nodeId: string) => number | undefined,
  ) {
    this.index = new ServiceEndpoints(
      opts.endpoints,
      (svc) => this.markBackends(svc),
      // a caller's mistake, repaired (endpoints.ts); logged the first time and every 1024th after (bounded)
      (key) => {
        if ((this.index.misses & 1023) === 1) log.warn({ key, misses: this.index.misses }, 'services index: an endpoint change named the wrong old record, or a member no longer qualified; repaired');
      },
    );
    this.tables = new PortTables(dev, cluster, opts.maglevTableSize, log, opts.maxBackendsPerCluster);
    this.health = new NodeHealth(dev, (changed) => {
      this.refreshAlive(changed);
      this.schedule();
    });
  }

  start(): void {
    this.health.start();
    // Once a second: RTTs moved, so "nearest" is re-evaluated, for the ports that use it only, from their cached candidates.
    this.timer = setInterval(() => {
      if (this.health.version === this.timerHealth) return;
      this.timerHealth = this.health.version;
      this.generation++; // list() shows the new RTTs
      if (this.nearestServices.size) this.schedule();
    }, 1000);
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
    const def = serviceFromManifest(cluster, manifest);
    const was = this.dropDefinition(key);
    this.records.set(key, def);
    const name = serviceName(def);
    let list = this.byName.get(name);
    if (!list) this.byName.set(name, (list = []));
    list.push(def);
    this.reindex(name);
    if (was !== undefined && was !== name) this.reindex(was);
    this.generation++;
    this.schedule();
  }

  removeRecord(key: string): void {
    const was = this.dropDefinition(key);
    if (was === undefined) return;
    this.reindex(was);
    this.generation++;
    this.schedule();
  }

  /** Forgets the definition under key; the name of its service, undefined when there was none. */
  private dropDefinition(key: string): string | undefined {
    const def = this.records.get(key);
    if (!def) return undefined;
    this.records.delete(key);
    const name = serviceName(def);
    const list = this.byName.get(name)!.filter((d) => d !== def);
    if (list.length) this.byName.set(name, list);
    else this.byName.delete(name);
    return name;
  }

  /**
   * Indexes the definitions of service `name` a rebuild reads (contributingDefinitions), and only those: another
   * cluster's definitions of a service this cluster does not define, or does not share, hold no members (a hostile
   * cluster's definitions, each picking all its endpoints, grew memory as definitions x endpoints: review of s26svc).
   */
  private reindex(name: string): void {
    const want = new Set(contributingDefinitions(this.cluster, this.byName.get(name) ?? []));
    const had = this.indexed.get(name);
    for (const d of had ?? []) if (!want.has(d)) this.index.removeDefinition(d);
    for (const d of want) if (!had?.has(d)) this.index.addDefinition(d);
    if (want.size) this.indexed.set(name, want);
    else this.indexed.delete(name);
  }

  /**
   * An endpoint record (any cluster) was admitted or replaced: only the services whose selectors pick it (old or
   * new) are recomputed. old: the record opts.endpoints held for key before rec (undefined: none).
   */
  upsertEndpoint(key: string, rec: EndpointRecord, old: EndpointRecord | undefined): void {
    this.index.upsert(key, rec, old);
  }

  /** An endpoint went; old: the record opts.endpoints held for key (undefined: none). */
  removeEndpoint(key: string, old: EndpointRecord | undefined): void {
    this.index.remove(key, old);
  }

  /** Endpoint changes found naming the wrong old record, and members found not to qualify (repaired; 0 unless a caller is wrong). */
  get indexMisses(): number {
    return this.index.misses;
  }

  /** Peers changed: backends' liveness depends on their node being a peer. */
  peersChanged(): void {
    this.watchDirty = true;
    this.schedule();
  }

  /** Recompute soon (batched): the services marked since the last recompute. */
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

  private markBackends(svc: string): void {
    this.dirtyBackends.add(svc);
    this.schedule();
  }

  private aliveNode(id: string): boolean {
    return id === `${this.cluster}/${this.node}` || (this.peerOf(id) !== undefined && this.health.get(id).alive);
  }

  /** Nodes whose liveness may have changed: the services with backends on those that did are selected again. */
  private refreshAlive(ids: Iterable<string>): void {
    for (const id of ids) {
      if (!this.nodeBackends.has(id)) continue;
      const alive = this.aliveNode(id);
      if (this.nodeAlive.get(id) === alive) continue;
      this.nodeAlive.set(id, alive);
      for (const svc of this.nodeServices.get(id)!) this.dirtySelection.add(svc);
    }
  }

  /**
   * Median probe RTT per cluster over the backends' nodes, each node counted
   * once per backend it hosts (this node: 0). O(nodes hosting backends).
   */
  rttByCluster(): Map<string, number> {
    const self = `${this.cluster}/${this.node}`;
    const samples = new Map<string, Array<[number, number]>>();
    for (const [id, count] of this.nodeBackends) {
      const rtt = id === self ? 0 : this.health.get(id).rttMs;
      if (rtt === undefined) continue;
      const c = id.slice(0, id.indexOf('/'));
      let l = samples.get(c);
      if (!l) samples.set(c, (l = []));
      l.push([rtt, count]);
    }
    const out = new Map<string, number>();
    for (const [c, l] of samples) {
      l.sort((a, b) => a[0] - b[0]);
      let at = l.reduce((n, [, w]) => n + w, 0) >> 1; // the middle sample of the list expanded by weight
      for (const [rtt, w] of l) {
        if (at < w) {
          out.set(c, rtt);
          break;
        }
        at -= w;
      }
    }
    return out;
  }

  /** Installs what changed since the last call: the marked services only. */
  compute(): void {
    const t0 = performance.now();
    for (const svc of this.dirtyBackends) this.rebuild(svc);
    this.dirtyBackends.clear();
    // RTT medians weigh nodes by backends: only a net change of some node's count moves them (not a pod moving between services)
    for (const d of this.nodeDelta.values()) if (d !== 0) this.rttDirty = true;
    this.nodeDelta.clear();
    if (this.watchDirty) {
      // probe every other node that hosts a candidate backend
      const watch = new Map<string, number>();
      for (const id of this.nodeBackends.keys()) {
        if (id === `${this.cluster}/${this.node}`) continue;
        const peer = this.peerOf(id);
        if (peer !== undefined) watch.set(id, peer);
      }
      this.health.watch(watch);
      this.refreshAlive(this.nodeBackends.keys());
      this.watchDirty = false;
    }
    if (this.nearestServices.size && (this.rttDirty || this.health.version !== this.healthSeen)) {
      const rtt = this.rttByCluster();
      if (rtt.size !== this.rtt.size || [...rtt].some(([c, v]) => this.rtt.get(c) !== v)) for (const svc of this.nearestServices) this.dirtySelection.add(svc);
      this.rtt = rtt;
    }
    this.rttDirty = false;
    this.healthSeen = this.health.version;
    const touched = this.dirtySelection.size; // every rebuilt service is selected again too
    for (const svc of this.dirtySelection) this.select(svc);
    this.dirtySelection.clear();
    this.lastComputeMs = performance.now() - t0;
    if (touched === 0) return;
    this.generation++;
    this.onComputed?.();
  }

  /** A service's candidate backends from its definitions' members; its node, VIP and nearest bookkeeping follows. */
  private rebuild(svc: string): void {
    const defs = this.byName.get(svc) ?? [];
    const read = new Map<ClusterService, ServiceEndpoint[]>(); // each definition's members read once, whatever its ports
    const views = portViews(this.cluster, defs, (d) => read.get(d) ?? read.set(d, [...this.index.membersOf(d)]).get(d)!);
    const prev = this.services.get(svc);
    const nodes = new Map<string, number>();
    for (const v of views) for (const b of v.backends) nodes.set(`${b.cluster}/${b.node}`, (nodes.get(`${b.cluster}/${b.node}`) ?? 0) + 1);
    for (const [id, n] of nodes) {
      const was = prev?.nodes.get(id) ?? 0;
      if (n !== was) this.countNode(id, svc, n - was);
    }
    for (const [id, was] of prev?.nodes ?? []) if (!nodes.has(id)) this.countNode(id, svc, -was);
    const vip = views.length ? views[0]!.service.vip : undefined;
    if (vip !== prev?.vip) {
      if (prev?.vip) this.vipRef(prev.vip, -1);
      if (vip) this.vipRef(vip, 1);
    }
    const nearest = views.length > 0 && views[0]!.service.affinity === 'nearest';
    if (nearest) this.nearestServices.add(svc);
    else this.nearestServices.delete(svc);
    for (const v of prev?.views ?? []) if (!views.some((x) => x.key === v.key)) this.tables.uninstall(v.key);
    if (views.length) this.services.set(svc, { views, nodes, vip, nearest });
    else this.services.delete(svc);
    this.dirtySelection.add(svc);
  }

  /** svc's backend count on node id moved by delta (from 0: svc joins the node; to 0: it leaves). */
  private countNode(id: string, svc: string, delta: number): void {
    const mine = (this.services.get(svc)?.nodes.get(id) ?? 0) + delta; // (services still holds the previous state)
    const total = (this.nodeBackends.get(id) ?? 0) + delta;
    this.nodeDelta.set(id, (this.nodeDelta.get(id) ?? 0) + delta);
    let s = this.nodeServices.get(id);
    if (!s) (this.nodeServices.set(id, (s = new Set())), (this.watchDirty = true)); // a new node: watch it
    if (mine > 0) s.add(svc);
    else s.delete(svc);
    if (total > 0) return void this.nodeBackends.set(id, total);
    this.nodeBackends.delete(id);
    this.nodeServices.delete(id);
    this.nodeAlive.delete(id);
    this.watchDirty = true;
  }

  private vipRef(vip: string, n: number): void {
    const refs = (this.vipRefs.get(vip) ?? 0) + n;
    if (refs > 0) this.vipRefs.set(vip, refs);
    else this.vipRefs.delete(vip);
    if (refs > 0 && !this.routedVips.has(vip)) this.route(vip, true);
    if (refs === 0 && this.routedVips.has(vip)) this.route(vip, false);
  }

  /** Health and affinity over a service's cached candidates; installs each port whose table changed. */
  private select(svc: string): void {
    // nodeAlive is current for every node with backends (refreshAlive on each liveness, peer or watch change)
    for (const v of this.services.get(svc)?.views ?? []) this.tables.install(v, v.backends.filter((b) => this.nodeAlive.get(`${b.cluster}/${b.node}`)), this.rtt);
  }

  /** A backend address some local service still counts as alive (selected or standby). */
  backendAlive(ip: string, port: number): boolean {
    return this.tables.backendAlive(ip, port);
  }

  private route(vip: string, add: boolean): void {
    const routed = this.opts.routeVip ? this.opts.routeVip(vip, add) : this.ipRoute(vip, add);
    if (routed) this.routedVips.add(vip);
    else this.routedVips.delete(vip);
  }

  private ipRoute(vip: string, add: boolean): boolean {
    const v6 = vip.includes(':');
    try {
      execFileSync('ip', [...(v6 ? ['-6'] : []), 'route', add ? 'replace' : 'del', `${vip}/${v6 ? 128 : 32}`, 'dev', this.tunName], { stdio: 'ignore' });
      return add;
    } catch (err) {
      if (add) this.log.warn({ vip, err: (err as Error).message }, 'cannot route service VIP into the TUN');
      return false;
    }
  }

  /**
   * Every local service with its ports, backends and their state (and each
   * cluster's round-trip time), as of the last change: cached until the
   * records change or the tables are recomputed (at least every second).
   */
  list(): readonly ServiceStatus[] {
    if (this.listed?.generation !== this.generation) this.listed = { generation: this.generation, list: serviceList(this.cluster, this.byName.values(), (key) => this.tables.status(key), this.rttByCluster()) };
    return this.listed.list;
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
    const plain = unmappedIPv4(client);
    // the hash input must be of the VIP's family; another family's client hashes by port alone
    const src = parseIP(plain.includes(':') === v6 ? plain : v6 ? '::' : '0.0.0.0')!;
    const b = this.dev.servicePick(frontendRow(def.vip, port, 'TCP'), src, clientPort);
    return b ? { ip: formatIP(b.address), port: b.port } : undefined;
  }

  /**
   * The local definition of namespace/name (DNS): the one whose VIP and ports the service's tables are built from
   * (portViews' first local definition), found among that service's definitions only, not by a walk of every
   * cluster's (a DNS query cost O(definitions held) before).
   */
  lookup(namespace: string, name: string): ClusterService | undefined {
    return localDefinition(this.cluster, this.byName.get(`${namespace}/${name}`) ?? []);
  }
}
