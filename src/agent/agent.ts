/**
 * The node agent: one WireGuard device (TUN + UDP port) plus the control loop
 * that keeps it in step with etcd.
 *
 *   etcd (local only) ──ListWatcher──▶ nodes (own cluster, and cached remote
 *   clusters once kvstoremesh marked them synced) ──reconcile()──▶ WireGuard
 *   peers (allowed IPs = the node's pod CIDRs) and routes into the TUN.
 *
 * With policy enabled (the default) the agent also allocates its endpoints'
 * security identities in etcd and drives the native policy engine through
 * PolicyDatapath (src/policy/datapath.ts): ipcache, policy maps, peers' tag settings.
 *
 * Services (src/services) ride on the same native engine: ServiceDatapath
 * programs the Maglev load balancer from service records, endpoints and
 * tunnel liveness, and a DnsServer answers service names on the node.
 *
 * The agent registers its node record and its local endpoints under a lease;
 * endpoints are also persisted next to the key so that a restarted agent
 * (even after kill -9) re-registers them before the old lease expires.
 *
 * This class wires the owners together and holds no logic of theirs:
 *   peers.ts         peer reconciliation and relay planning
 *   routetable.ts    TUN routes to peers' CIDRs (written off the thread)
 *   hostroutes.ts    hairpin policy routing, the router address
 *   registration.ts  key, lease, node record, local endpoints and their identities
 *   sinks.ts         what is watched in etcd and where each prefix's records go
 *   status.ts        the typed status, and the health record made from it
 */
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { clusterConfigKey, healthKey, stateKey } from '../controlplane/keys.js';
import { connectEtcd, EtcdStore, ListWatcher } from '../controlplane/kvstore.js';
import { nodeHealthCodec, Rejections, Trust, type EndpointRecord, type NodeRecord } from '../controlplane/records/index.js';
import type { EndpointRecords } from '../controlplane/endpointrecords.js';
import { Admission } from './admission.js';
import type { Logger } from '../log.js';
import { formatIP, parseIP } from '../net/ip.js';
import { WireGuardDevice } from '../wireguard/device.js';
import { withRoamRefusals } from '../wireguard/roaming.js';
import { IdentityAllocator } from '../identity/allocator.js';
import type { AgentConfig } from './config.js';
import { PolicyDatapath } from '../policy/datapath.js';
import { SpoofWatch } from './spoofwatch.js';
import { ServiceDatapath, type ServiceStatus } from '../services/datapath.js';
import { handOverEndpoint } from './endpointhandoff.js';
import { answer, DnsServer } from '../services/dns.js';
import { IngressGateway } from '../gateway/gateway.js';
import { L7Proxy } from '../proxy/proxy.js';
import { AgentMetrics, type MetricsSnapshot } from './metrics.js';
import { ConfigError } from '../errors.js';
import { HairpinRouting, ip, setupRouterAddress } from './hostroutes.js';
import { ipBatch, RouteTable } from './routetable.js';
import { PeerReconciler } from './peers.js';
import { loadOrCreateKey, Registration, type LocalEndpoint } from './registration.js';
import { stateWatches, trustWatches, type Watch } from './sinks.js';
import { startHeapCompaction } from './heapcompaction.js';
import { memorySettings } from './memorysettings.js';
import { native } from '../native/binding.js';
import { healthOfPeers, peerStatuses, type AgentStatus } from './status.js';

export type { LocalEndpoint } from './registration.js';
export type { AgentStatus } from './status.js';

export class Agent extends EventEmitter {
  dev!: WireGuardDevice;
  /** Identity and policy state of the data path (absent with policy.enabled: false). */
  datapath: PolicyDatapath | undefined;
  private spoofWatch: SpoofWatch | undefined;
  /** Global services (absent with policy.enabled: false). */
  services: ServiceDatapath | undefined;
  dns: DnsServer | undefined;
  private dnsAddressAdded = false;
  /** Ingress gateway (node.yaml gateway section). */
  gateway: IngressGateway | undefined;
  /** The L7 proxy for flows HTTP rules cover (mesh mode). */
  proxy: L7Proxy | undefined;
  /** The node's router address (first address of its IPv4 pod CIDR, on the TUN): the gateway's source. */
  private routerAddress: string | undefined;
  private etcd: Etcd3 | undefined;
  private readonly watchers: ListWatcher[] = [];
  private peerSet!: PeerReconciler;
  private registration!: Registration;
  private hairpin: HairpinRouting | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private stopHeapCompaction: (() => void) | undefined;
  /** Prometheus metrics (GET /metrics; node.yaml metrics for a TCP listener). */
  readonly metrics: AgentMetrics;
  private metricsServer: import('node:net').Server | undefined;
  /** Remote clusters' kvstoremesh heartbeats: replication lag and arrival (metrics). */
  private readonly syncLag = new Map<string, { lagMs: number; receivedAtMs: number }>();
  /** Our kvstoremesh's view of each remote (wiremesh/mesh/v1/status/). */
  private readonly remoteStatus = new Map<string, MetricsSnapshot['remotes'][number]>();
  private stopped = false;
  /** The TUN's routes to peers' CIDRs (written by `ip -batch` off the thread). */
  private routes: RouteTable | undefined;
  readonly startedAt = Date.now();

  /** What this side pinned about each cluster: the measure of every record's claims. */
  readonly trust: Trust;
  /** Records refused (metrics, status). */
  readonly rejections: Rejections;
  /** Records let into the data path, checked against their origin and each other (admission.ts). */
  private readonly admission: Admission;

  constructor(readonly cfg: AgentConfig, readonly log: Logger) {
    super();
    this.metrics = new AgentMetrics({ cluster: cfg.cluster.name, node: cfg.node.name }, () => this.metricsSnapshot());
    this.trust = new Trust(cfg.cluster.name, cfg.cluster.id, [], cfg.cluster.maxConnectedClusters ?? 255);
    this.rejections = new Rejections(log);
    // (records reach admission only from the watchers start() makes, after the owners below exist)
    this.admission = new Admission(this.trust, this.rejections, {
      node: (k, rec) => this.peerSet.setNodeRecord(k, rec),
      endpoint: (k, rec, old) => {
        if (this.datapath) handOverEndpoint(this.datapath, this.services, k, rec, old); // (and to the services' index)
      },
      identity: (k, rec) => {
        if (rec) this.datapath?.upsertIdentity(rec);
        else this.datapath?.removeIdentity(Number(k.slice(k.lastIndexOf('/') + 1)));
      },
      relay: (k, rec) => this.peerSet.setRelay(k, rec),
    }, {
      key: stateKey('nodes', cfg.cluster.name, cfg.node.name),
      podCIDRs: cfg.node.podCIDRs,
      addresses: cfg.node.addresses.map((a) => formatIP(parseIP(a)!)),
      publicKey: () => this.dev?.identity?.publicKey.toString('base64'),
    }, cfg.admission?.maxEndpointsPerNode);
  }

  /**
   * Endpoint records (own cluster and cached, admitted), by their etcd key's form (Admission.endpointKeys: a
   * compact form for an endpoint key, `full` gives its text): admission's table, the agent's one table of them
   * (issue 16: the policy data path and the services' index read it and keep none of their own, one Map entry
   * per endpoint fewer). Its order is by node (the policy universe reads its facts in it).
   */
  get endpoints(): EndpointRecords {
    return this.admission.endpointRecords;
  }

  /** The records naming `ip` (registration's address conflicts): the data path's, by the ipcache; policy off, a walk of the table. */
  private endpointsAt(ip: string): Iterable<EndpointRecord> {
    return this.datapath ? this.datapath.byAddress.all(ip) : recordsAt(this.endpoints.values(), ip);
  }

  get id(): string {
    return `${this.cfg.cluster.name}/${this.cfg.node.name}`;
  }

  async start(): Promise<void> {
    const { cfg, log } = this;
    const key = loadOrCreateKey(cfg.wireguard.privateKeyFile);
    this.dev = new WireGuardDevice({ tunName: cfg.wireguard.interface, listenPort: cfg.wireguard.port, mtu: cfg.wireguard.mtu, logger: log });
    this.dev.setPrivateKey(key);
    execFileSync('ip', ['link', 'set', this.dev.tunName, 'up']);
    const etcd = (this.etcd = connectEtcd({ endpoints: cfg.etcd.endpoints, caFile: cfg.etcd.caFile, certFile: cfg.etcd.certFile, keyFile: cfg.etcd.keyFile }));
    const store = new EtcdStore(etcd);
    let allocator: IdentityAllocator | undefined;
    if (cfg.policy.enabled) {
      this.dev.native.setMaxClusters(cfg.cluster.maxConnectedClusters ?? 255); // before any peer's cluster list
      const dp = (this.datapath = new PolicyDatapath(this.dev.native, cfg.cluster.name, cfg.node.name, { defaultLocalCluster: cfg.policy.defaultLocalCluster, enforcesPoliciesOf: (c) => this.trust.enforcesPoliciesOf(c), conntrack: cfg.policy.conntrack, hostFirewall: cfg.policy.hostFirewall, maxClusters: cfg.cluster.maxConnectedClusters ?? 255, records: this.endpoints }, log));
      dp.setNode(this.id, cfg.node.addresses);
      dp.start();
      // the pod guard's drops happen before the data path: their flow records come from its nftables sets
      this.spoofWatch = new SpoofWatch((t) => dp.addSpoofedFlows(t), (message) => log.warn({ err: message }, 'pod guard sets unreadable: no flow records for source-spoofed drops'));
      this.spoofWatch.start();
      // identity allocation is transactional (compare-and-swap over several keys): it keeps its own etcd client calls
      allocator = new IdentityAllocator(etcd, cfg.cluster.name, cfg.cluster.id, cfg.node.name, cfg.cluster.maxConnectedClusters ?? 255, this.rejections);
      this.hairpin = new HairpinRouting(cfg, this.dev.tunName, log);
      this.hairpin.install();
      this.services = new ServiceDatapath(
        this.dev.native,
        this.dev.tunName,
        cfg.cluster.name,
        cfg.node.name,
        { maglevTableSize: cfg.services.maglevTableSize, maxBackendsPerCluster: cfg.services.maxBackendsPerCluster, endpoints: dp.endpoints },
        log,
        (id) => this.peerSet.peers.get(id)?.peer.id,
      );
    }
    this.registration = new Registration(
      { cfg, store, ...(allocator && this.datapath ? { identities: { allocator, datapath: this.datapath } } : {}), endpointsAt: (ip) => this.endpointsAt(ip), rejections: this.rejections, log },
      this.nodeRecord(),
    );
    const reg = this.registration;
    this.peerSet = new PeerReconciler({
      me: { cluster: cfg.cluster.name, node: cfg.node.name, addresses: cfg.node.addresses, podCIDRs: cfg.node.podCIDRs },
      dev: this.dev,
      routes: (this.routes = new RouteTable(this.dev.tunName, ipBatch(), log)),
      ...(this.datapath ? { policy: this.datapath } : {}),
      podSpace: () => [...this.trust.pinned().flatMap((c) => c.podCIDRs), ...(this.trust.facts(cfg.cluster.name)?.podCIDRs ?? [])],
      peersChanged: () => this.services?.peersChanged(),
      publishRelay: (value) => reg.publishRelay(value),
      programmed: (changed) => this.emit('peers-programmed', changed),
      log,
      nodes: this.admission.admittedNodes, // (admission's table: the reconciler keeps none of its own)
    });
    reg.loadLocalEndpoints();
    // namespace labels before the first registration: a pod's first identity already carries them
    if (this.datapath) await reg.loadNamespaces();
    await reg.register();
    const dp = this.datapath;
    const svc = this.services;
    const targets = {
      cluster: cfg.cluster,
      trust: this.trust,
      rejections: this.rejections,
      admission: this.admission,
      peers: this.peerSet,
      syncLag: this.syncLag,
      remoteStatus: this.remoteStatus,
      ...(dp ? { policy: { upsertPolicy: dp.upsertPolicy.bind(dp), removePolicy: dp.removePolicy.bind(dp), policyTrustChanged: () => dp.policyTrustChanged(), setNamespace: reg.setNamespace.bind(reg) } } : {}),
      ...(svc ? { services: svc } : {}),
      log,
    };
    const watch = (w: Watch) => new ListWatcher(store, w.prefix, w.sink, log);
    // What we pinned about each remote, and our own cluster-config: read first, so
    // records never meet a trust that is still empty (later changes re-check records).
    const trusted = trustWatches(targets).map(watch);
    for (const w of trusted) void w.start();
    await Promise.race([Promise.all(trusted.map((w) => w.firstSync())), new Promise((r) => setTimeout(r, 5000).unref())]);
    // Without it (slow, or none in etcd) records still flow, but every node, relay and local endpoint waits in
    // admission until it is read (Trust's WAIT): only this node's own record, as node.yaml says it, comes up.
    if (!this.trust.localKnown) log.warn({ key: clusterConfigKey(cfg.cluster.name) }, 'cluster-config not read yet: node, relay and local endpoint records wait for it (clustermesh enable writes it)');
    this.watchers.push(...trusted, ...stateWatches(targets).map(watch));
    if (svc) {
      svc.start();
      this.routerAddress = setupRouterAddress(cfg.node.podCIDRs, this.dev.tunName, log);
      // this node's own addresses are `host` to its pods (they reach them through the TUN): the DNS address too
      const dns = cfg.services.dns;
      dp?.setNode(this.id, [...new Set([...cfg.node.addresses, this.routerAddress, ...(dns.enabled ? [dns.address] : [])])]);
      this.proxy = new L7Proxy(this.dev.native, this.routerAddress, cfg.policy.proxyPort, dp!, log, cfg.policy.proxyWorkers);
      this.proxy.start();
      if (cfg.gateway) await this.startGateway(svc);
      // A node without service DNS still translates services: report and go on.
      if (cfg.services.dns.enabled)
        await this.startDns(svc).catch((err: Error) =>
          log.error({ err: err.message, address: cfg.services.dns.address, port: cfg.services.dns.port }, 'service DNS is off: cannot listen there (another DNS server? set services.dns.address / port, or services.dns.enabled: false)'),
        );
    }
    for (const w of this.watchers) void w.start();
    const at = cfg.metrics;
    if (at)
      this.metricsServer = await this.metrics.listen(at.address, at.port).catch(async (err: Error) => {
        // an agent without the metrics asked for does not run on headless: undone, and the caller exits non-zero
        await this.stop().catch(() => undefined);
        throw new ConfigError('metrics', `cannot listen on ${at.address}:${at.port}: ${err.message}`);
      });
    const publish = () => void this.publishHealth().catch((err: Error) => log.warn({ err: err.message }, 'health publish failed'));
    this.healthTimer = setInterval(publish, 5000);
    this.healthTimer.unref();
    publish();
    this.stopHeapCompaction = startHeapCompaction(log, { malloc: native });
    const memory = memorySettings(process.execArgv, process.env);
    log.info({ node: this.id, tun: this.dev.tunName, port: this.dev.listenPort, ...memory }, 'agent started');
    if (memory.maxSemiSpaceMiB === undefined || memory.mallocArenaMax === undefined)
      log.warn(memory, 'started without the memory settings of README\'s "Running the agent": more RSS per remote endpoint');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    // First: a lease lost while the rest shuts down must not register the node again.
    // Leave the records to expire with the lease: a restarting agent takes them over.
    this.registration?.stop();
    this.peerSet?.stop();
    // the routes' batch in flight ends before the TUN goes (its routes go with it)
    await this.routes?.close();
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.stopHeapCompaction?.();
    this.metricsServer?.close();
    await Promise.all(this.watchers.map((w) => w.stop()));
    this.dns?.close();
    this.gateway?.stop();
    await this.proxy?.stop();
    if (this.routerAddress) ip(['addr', 'del', `${this.routerAddress}/32`, 'dev', this.dev.tunName], this.log);
    if (this.dnsAddressAdded) ip(['addr', 'del', `${this.cfg.services.dns.address}/${this.cfg.services.dns.address.includes(':') ? 128 : 32}`, 'dev', 'lo'], this.log);
    this.services?.stop();
    this.datapath?.stop();
    this.spoofWatch?.stop();
    this.hairpin?.remove();
    this.etcd?.close();
    this.dev?.close();
  }

  /**
   * Binds the DNS server on the configured address (the pods' resolver); an
   * address the node does not have yet goes on lo, and comes off at stop.
   */
  private async startDns(svc: ServiceDatapath): Promise<void> {
    const { address, port } = this.cfg.services.dns;
    const dns = new DnsServer((q) => answer(svc, q), this.log);
    try {
      await dns.listen(address, port);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRNOTAVAIL') throw err;
      ip(['addr', 'add', `${address}/${address.includes(':') ? 128 : 32}`, 'dev', 'lo'], this.log);
      this.dnsAddressAdded = true;
      await dns.listen(address, port);
    }
    this.dns = dns;
    this.log.info({ address, port }, 'service DNS listening');
  }

  /**
   * The gateway connects to VIPs from the router address: replies to it are
   * routed to this node through the tunnels (it is in our pod CIDR), where
   * reverse NAT turns them back into the VIP's.
   */
  private async startGateway(svc: ServiceDatapath): Promise<void> {
    const g = this.cfg.gateway!;
    if (!this.routerAddress) throw new ConfigError('gateway', 'needs an IPv4 pod CIDR on this node (its first address is the gateway\'s source)');
    this.gateway = new IngressGateway(g.address, this.routerAddress, g.listeners, svc, this.log);
    await this.gateway.start();
    const gw = this.gateway;
    svc.onComputed = () => {
      const n = gw.resetDead();
      if (n) this.log.info({ connections: n }, 'gateway reset connections to dead backends');
    };
  }

  private nodeRecord(): NodeRecord {
    return {
      cluster: this.cfg.cluster.name,
      clusterId: this.cfg.cluster.id,
      name: this.cfg.node.name,
      addresses: this.cfg.node.addresses.map((a) => formatIP(parseIP(a)!)), // canonical: readers compare them as text
      port: this.dev.listenPort,
      publicKey: this.dev.identity!.publicKey.toString('base64'),
      podCIDRs: this.cfg.node.podCIDRs,
      bootId: String(this.startedAt),
    };
  }

  // ---- local endpoints (the agent API; registration.ts) ---------------------------

  /** Adds or updates a local endpoint (Registration.addEndpoint). Throws EndpointConflictError / ConfigError. */
  addEndpoint(ep: LocalEndpoint, opts: { replace?: boolean } = {}): Promise<void> {
    return this.registration.addEndpoint(ep, opts);
  }

  /** Changes a local endpoint from what it is when its turn comes (Registration.updateEndpoint). */
  updateEndpoint(namespace: string, name: string, change: (cur: LocalEndpoint) => LocalEndpoint): Promise<LocalEndpoint | undefined> {
    return this.registration.updateEndpoint(namespace, name, change);
  }

  removeEndpoint(namespace: string, name: string): Promise<boolean> {
    return this.registration.removeEndpoint(namespace, name);
  }

  localEndpoints(): LocalEndpoint[] {
    return this.registration.localEndpoints();
  }

  // ---- peers (peers.ts) ---------------------------------------------------------------

  /** The nodes we should have a tunnel to: our cluster's and synced remotes'. */
  desiredNodes(): Map<string, NodeRecord> {
    return this.peerSet.desiredNodes();
  }

  /** How many peers (tunnels) the agent holds: O(1), unlike status(). */
  get peerCount(): number {
    return this.peerSet.peers.size;
  }

  reconcile(): void {
    this.peerSet.reconcile();
  }

  // ---- status -------------------------------------------------------------------

  /** Publishes this node's tunnels for `wiremesh clustermesh status`. */
  private async publishHealth(): Promise<void> {
    if (this.stopped) return;
    // not status(): that reads every peer's counters (healthOfPeers)
    const active = new Map(this.dev.native.peerStats(true).map((s) => [s.id, s]));
    const health = healthOfPeers([...this.peerSet.syncedClusters].sort(), this.peerSet.peers, active, Date.now(), this.dev.now(), this.serviceList(), new Date());
    await this.registration.putLeased(healthKey(this.cfg.cluster.name, this.cfg.node.name), nodeHealthCodec.encode(health))?.catch(() => undefined);
  }

  /** The services list, computed once per services change (ServiceDatapath.list caches it) and shared by every reader. */
  private serviceList(): readonly ServiceStatus[] {
    return this.services?.list() ?? [];
  }

  status(): AgentStatus {
    const peers = peerStatuses(this.peerSet.peers, this.dev.peerStats(), Date.now(), this.dev.now());
    const dp = this.datapath;
    const h = this.dev.stats;
    return {
      cluster: this.cfg.cluster.name,
      clusterId: this.cfg.cluster.id,
      node: this.cfg.node.name,
      publicKey: this.dev.identity?.publicKey.toString('base64'),
      listenPort: this.dev.listenPort,
      etcdConnected: this.watchers.every((w) => w.connected),
      syncedClusters: [...this.peerSet.syncedClusters].sort(),
      handshakes: { initiated: h.handshakesInitiated, completed: h.handshakesCompleted, rejected: h.handshakesRejected, crossed: h.initiationsCrossed },
      endpoints: this.endpoints.size,
      localEndpoints: this.registration.localCount,
      registration: this.registration.status(),
      peers,
      counters: {
        ...withRoamRefusals(this.dev.native.counters(), h.endpointRoamsRefused),
        ...(dp && this.spoofWatch ? { source_spoofed_records: dp.spoofedRecords, source_spoofed_watch_errors: this.spoofWatch.errors } : {}),
      },
      rejections: { total: this.rejections.total, recent: this.rejections.recent.slice(-20) },
      admission: this.admission.quota.status(),
      awaitingClusterConfig: this.admission.awaitingClusterConfig,
      pinnedClusters: this.trust.pinned().map((f) => ({ name: f.name, id: f.id, relay: f.relay, acceptPolicies: f.acceptPolicies })),
      ...(this.proxy ? { proxy: this.proxy.stats } : {}),
      ...(this.gateway ? { gateway: { address: this.cfg.gateway!.address, routerAddress: this.routerAddress, listeners: this.gateway.stats } } : {}),
      ...(this.services ? { services: { count: this.serviceList().length, lastComputeMs: this.services.lastComputeMs, ...(this.dns ? { dns: this.dns.counters } : {}) } } : {}),
      ...(dp ? { policy: { identities: dp.universe.identities.size, localEndpoints: this.registration.identities.size, lastCompileMs: dp.lastCompileMs, warnings: dp.warnings.length, flowsNotSent: dp.flowsNotSent } } : {}),
    };
  }

  /** One scrape's data: status() (peers, counters, proxy, policy) plus services and control-plane state. */
  metricsSnapshot(): MetricsSnapshot {
    const st = this.status();
    return {
      peers: st.peers,
      counters: st.counters,
      handshakes: st.handshakes,
      services: this.serviceList(),
      ...(st.proxy ? { proxy: st.proxy } : {}),
      etcdConnected: st.etcdConnected,
      registration: st.registration,
      syncedClusters: st.syncedClusters,
      syncLag: this.syncLag,
      remotes: [...this.remoteStatus.values()],
      rejections: this.rejections.rows(),
      endpointsHeldBack: st.admission?.heldBack,
      awaitingClusterConfig: st.awaitingClusterConfig,
      ...(st.policy ? { policy: st.policy } : {}),
      ...(this.routes ? { routes: this.routes.stats } : {}),
      ...(this.dns ? { dns: this.dns.counters } : {}),
    };
  }
}

/** The records among `records` naming `ip`, read as the walk goes (no copy of the table first). */
function* recordsAt(records: Iterable<EndpointRecord>, ip: string): Iterable<EndpointRecord> {
  for (const r of records) if (r.ip === ip) yield r;
}
