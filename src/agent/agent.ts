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
 * PolicyDatapath (datapath.ts): ipcache, policy maps, peers' tag settings.
 *
 * Services (src/services) ride on the same native engine: ServiceDatapath
 * programs the Maglev load balancer from service records, endpoints and
 * tunnel liveness, and a DnsServer answers service names on the node.
 *
 * The agent registers its node record and its local endpoints under a lease;
 * endpoints are also persisted next to the key so that a restarted agent
 * (even after kill -9) re-registers them before the old lease expires.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import { dirname } from 'node:path';
import type { Etcd3, Lease } from 'etcd3';
import {
  cachePrefix,
  clusterConfigKey,
  endpointName,
  healthKey,
  pinnedKey,
  pinnedPrefix,
  remoteStatusPrefix,
  splitClusterName,
  stateKey,
  statePrefix,
  syncedPrefix,
  type StateType,
} from '../controlplane/keys.js';
import { connectEtcd, decoded, EtcdStore, ListWatcher } from '../controlplane/kvstore.js';
import {
  clusterConfigCodec,
  endpointCodec,
  gatewayCodec,
  heartbeatCodec,
  identityCodec,
  nodeCodec,
  nodeHealthCodec,
  pinnedClusterCodec,
  namespaceCodec,
  policyCodec,
  RecordError,
  Rejections,
  relayCodec,
  remoteStatusCodec,
  serviceCodec,
  stateLocation,
  tryDecode,
  Trust,
  type Codec,
  type EndpointRecord,
  type NodeHealth,
  type PinnedCluster,
  type NodeRecord,
  type RelayRecord,
} from '../controlplane/records/index.js';
import { Admission } from './admission.js';
import type { Logger } from '../log.js';
import { formatPrefix, parseIP, parsePrefix, prefixContains } from '../net/ip.js';
import { validateEndpoint } from './api.js';
import { generatePrivateKey } from '../wireguard/crypto.js';
import { WireGuardDevice } from '../wireguard/device.js';
import type { Peer } from '../wireguard/peer.js';
import { IdentityAllocator } from '../identity/allocator.js';
import { endpointIdentityLabels, type Labels } from '../identity/identity.js';
import type { ContainerPort } from '../policy/ports.js';
import type { AgentConfig } from './config.js';
import { PolicyDatapath } from './datapath.js';
import { SpoofWatch } from './spoofwatch.js';
import { ServiceDatapath } from '../services/datapath.js';
import { answer, DnsServer } from '../services/dns.js';
import { clusterCounts } from '../cli/services.js';
import { IngressGateway } from '../gateway/gateway.js';
import { L7Proxy } from '../proxy/proxy.js';
import { AgentMetrics, type MetricsSnapshot } from './metrics.js';
import { ConfigError, EndpointConflictError, HostError } from '../errors.js';
import { MAX_LABELS } from '../controlplane/records/fields.js';
import type { GatewayRecord } from '../controlplane/types.js';
import { formatIP } from '../net/ip.js';

export interface LocalEndpoint {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  ips: string[];
  /** Named container ports (rules naming a port resolve against them). */
  ports?: ContainerPort[];
}

interface PeerState {
  record: NodeRecord;
  peer: Peer;
  routes: string[];
  /** Pod CIDRs of other clusters reached through this (hub) node. */
  relayed: string[];
}

/** The part of `ip -j addr show` read here (iproute2's JSON), decoded rather than cast. */
const ipAddrAnswer = z.array(z.object({ ifname: z.string(), addr_info: z.array(z.object({ local: z.string().optional() }).passthrough()).optional() }).passthrough());

export class Agent extends EventEmitter {
  dev!: WireGuardDevice;
  /** Identity and policy state of the data path (absent with policy.enabled: false). */
  datapath: PolicyDatapath | undefined;
  private spoofWatch: SpoofWatch | undefined;
  private allocator: IdentityAllocator | undefined;
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
  /** Identity of each local endpoint, by namespace/name. */
  private readonly identities = new Map<string, number>();
  /** Labels of this cluster's v1 Namespace objects (state/namespaces): they enter the identities of their pods. */
  private readonly namespaceLabels = new Map<string, Labels>();
  private etcd!: Etcd3;
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private readonly watchers: ListWatcher[] = [];
  /** Node records by etcd key, local and cached. */
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly syncedClusters = new Set<string>();
  /** Relay offers of hub nodes in connected clusters, by etcd key. */
  private readonly relays = new Map<string, RelayRecord>();
  /** Our own cluster is a hub (cluster-config relay: true). */
  private relayEnabled = false;
  private publishedRelay = '';
  readonly endpoints = new Map<string, EndpointRecord>();
  private readonly peers = new Map<string, PeerState>(); // by "cluster/node"
  private readonly local = new Map<string, LocalEndpoint>(); // by "namespace/name"
  /** The tail of the local endpoint changes queue (serialized()). */
  private endpointOps: Promise<unknown> = Promise.resolve();
  private reconcileQueued = false;
  /** Node keys changed since the last pass, or 'all' (sync state, relays or config changed). */
  private dirty: Set<string> | 'all' = 'all';
  private relayPlanCache = new Map<string, string[]>();
  private healthTimer: NodeJS.Timeout | undefined;
  /** Prometheus metrics (GET /metrics; node.yaml metrics for a TCP listener). */
  readonly metrics: AgentMetrics;
  private metricsServer: import('node:http').Server | undefined;
  /** Remote clusters' kvstoremesh heartbeats: replication lag and arrival (metrics). */
  private readonly syncLag = new Map<string, { lagMs: number; receivedAtMs: number }>();
  /** Our kvstoremesh's view of each remote (wiremesh/mesh/v1/status/). */
  private readonly remoteStatus = new Map<string, MetricsSnapshot['remotes'][number]>();
  private stopped = false;
  readonly startedAt = Date.now();

  /** Pods' IPv4 packets to this node's own addresses cross the TUN (rules 9-13, local rule at 100). */
  private ownNodeV4 = false;
  /** ip_early_demux before we turned it off (restored at stop). */
  private earlyDemuxWas: string | undefined;
  /** Interfaces the world reaches our pods through (rule 2002). */
  private hairpinUnderlay: string[] = [];
  /**
   * Node addresses in peers' allowed IPs (a pod's packets to another node go
   * through that node's tunnel): each address to the first peer that claims it;
   * the others that claim it, in order, take over when it goes.
   */
  private readonly nodeAddressClaims = new Map<string, string[]>();

  /** Routes we installed into the TUN (all peers' CIDRs point at the same device). */
  private readonly installedRoutes = new Set<string>();
  /** How many peers claim each CIDR, and the CIDRs whose count changed since the last flush. */
  private readonly routeRefs = new Map<string, number>();
  private readonly routesTouched = new Set<string>();

  /** What this side pinned about each cluster: the measure of every record's claims. */
  readonly trust: Trust;
  /** Records refused (metrics, status). */
  readonly rejections: Rejections;
  /** Records let into the data path, checked against their origin and each other (admission.ts). */
  private readonly admission: Admission;

  constructor(readonly cfg: AgentConfig, readonly log: Logger) {
    super();
    this.metrics = new AgentMetrics({ cluster: cfg.cluster.name, node: cfg.node.name }, () => this.metricsSnapshot());
    this.trust = new Trust(cfg.cluster.name, cfg.cluster.id);
    this.rejections = new Rejections(log);
    this.admission = new Admission(this.trust, this.rejections, {
      node: (k, rec) => {
        if (rec) this.nodes.set(k, rec);
        else this.nodes.delete(k);
        this.queueReconcile(k);
      },
      endpoint: (k, rec) => {
        const old = this.endpoints.get(k);
        if (rec) {
          this.endpoints.set(k, rec);
          this.datapath?.upsertEndpoint(k, rec);
        } else if (old) {
          this.endpoints.delete(k);
          this.datapath?.removeEndpoint(k);
        }
        this.services?.schedule();
      },
      identity: (k, rec) => {
        if (rec) this.datapath?.upsertIdentity(rec);
        else this.datapath?.removeIdentity(Number(k.slice(k.lastIndexOf('/') + 1)));
      },
      relay: (k, rec) => {
        if (rec) this.relays.set(k, rec);
        else this.relays.delete(k);
        this.queueReconcile();
      },
    });
  }

  get id(): string {
    return `${this.cfg.cluster.name}/${this.cfg.node.name}`;
  }

  /**
   * Next to the key and named after it: nodes of different clusters may share
   * a name and a key directory (the testbed's do), never a key file.
   */
  private get stateFile(): string {
    return `${this.cfg.wireguard.privateKeyFile}.endpoints.json`;
  }

  async start(): Promise<void> {
    const key = this.loadOrCreateKey();
    this.dev = new WireGuardDevice({ tunName: this.cfg.wireguard.interface, listenPort: this.cfg.wireguard.port, mtu: this.cfg.wireguard.mtu, logger: this.log });
    this.dev.setPrivateKey(key);
    execFileSync('ip', ['link', 'set', this.dev.tunName, 'up']);
    this.etcd = connectEtcd({ endpoints: this.cfg.etcd.endpoints, caFile: this.cfg.etcd.caFile, certFile: this.cfg.etcd.certFile, keyFile: this.cfg.etcd.keyFile });
    if (this.cfg.policy.enabled) {
      this.datapath = new PolicyDatapath(this.dev.native, this.cfg.cluster.name, this.cfg.node.name, { defaultLocalCluster: this.cfg.policy.defaultLocalCluster, enforcesPoliciesOf: (c) => this.trust.enforcesPoliciesOf(c), conntrack: this.cfg.policy.conntrack, hostFirewall: this.cfg.policy.hostFirewall }, this.log);
      this.datapath.setNode(this.id, this.cfg.node.addresses);
      this.datapath.start();
      // the pod guard's drops happen before the data path: their flow records come from its nftables sets
      const dp = this.datapath;
      this.spoofWatch = new SpoofWatch((t) => dp.addSpoofedFlows(t), (message) => this.log.warn({ err: message }, 'pod guard sets unreadable: no flow records for source-spoofed drops'));
      this.spoofWatch.start();
      this.allocator = new IdentityAllocator(this.etcd, this.cfg.cluster.name, this.cfg.cluster.id, this.cfg.node.name);
      this.installHairpinRouting();
      this.services = new ServiceDatapath(
        this.dev.native,
        this.dev.tunName,
        this.cfg.cluster.name,
        this.cfg.node.name,
        { maglevTableSize: this.cfg.services.maglevTableSize },
        this.log,
        () => this.endpoints.values(),
        (id) => this.peers.get(id)?.peer.id,
        () => this.dev.now(),
      );
    }
    this.loadLocalEndpoints();
    const own = this.cfg.cluster.name;
    const rej = this.rejections;
    // namespace labels before the first registration: a pod's first identity already carries them
    if (this.datapath) await this.loadNamespaces();
    await this.register();
    const store = new EtcdStore(this.etcd);
    const admission = this.admission;
    const dp = this.datapath;
    const svc = this.services;
    // The cluster each key names: the origin whose claims are checked (records/trust.ts).
    const origin = (type: StateType) => (k: string) => stateLocation(type, k)?.cluster ?? '';
    /** A decoding sink for a state type: a cache/ record naming our own cluster is refused (only we speak for us). */
    const stateSink = <T>(type: StateType, codec: Codec<T>, upsert: (k: string, cluster: string, name: string, v: T) => void, remove: (k: string) => void) =>
      decoded(codec, {
        upsert: (k, v) => {
          const loc = stateLocation(type, k);
          if (!loc) return;
          if (loc.cached && loc.cluster === own) return rej.add(new RecordError(codec.type, k, 'claim', `a cached record names this cluster (${own}): only its own agents speak for it`), loc.cluster);
          upsert(k, loc.cluster, loc.name, v);
        },
        remove,
      }, rej, origin(type));
    const admit = <T>(type: StateType, kind: Parameters<Admission['upsert']>[0], codec: Codec<T>) =>
      stateSink(type, codec, (k, cluster, _n, v) => admission.upsert(kind, k, cluster, v), (k) => admission.remove(kind, k));
    // What we pinned about each remote, and our own cluster-config: read first, so
    // records never meet a trust that is still empty (later changes re-check records).
    // every pin as stored; applied to trust unless its id is taken (then retried when pins change)
    const pins = new Map<string, PinnedCluster>();
    const applyPins = (changed: string) => {
      const touched = new Set([changed]);
      if (!pins.has(changed)) this.trust.unpin(changed);
      for (const [name, p] of pins) {
        const f = this.trust.facts(name);
        if (f && f.id === p.id && f.relay === p.relay && f.acceptPolicies === p.acceptPolicies && f.podCIDRs.map(formatPrefix).join() === p.podCIDRs.map((c) => formatPrefix(parsePrefix(c))).join()) continue;
        if (f) this.trust.unpin(name); // changed: take the old pin out before the new one goes in
        const refused = this.trust.pin(p);
        if (refused) rej.add(new RecordError('pinned-cluster', pinnedKey(name), 'conflict', refused), name);
        touched.add(name);
      }
      for (const name of touched) admission.recheck(name);
      dp?.policyTrustChanged();
      this.queueReconcile();
    };
    const pinned = new ListWatcher(store, pinnedPrefix(), decoded(pinnedClusterCodec, {
      upsert: (_k, p) => {
        pins.set(p.name, p);
        applyPins(p.name);
      },
      remove: (k) => {
        pins.delete(k.slice(pinnedPrefix().length));
        applyPins(k.slice(pinnedPrefix().length));
      },
    }, rej, (k) => k.slice(pinnedPrefix().length)), this.log);
    const config = new ListWatcher(store, clusterConfigKey(own), decoded(clusterConfigCodec, {
      upsert: (k, cfg) => {
        if (k !== clusterConfigKey(own)) return; // the prefix also matches longer names
        if (cfg.id !== this.cfg.cluster.id) this.log.error({ configured: this.cfg.cluster.id, etcd: cfg.id }, 'cluster id in node.yaml differs from the cluster-config in etcd');
        this.relayEnabled = cfg.relay === true;
        this.trust.setLocalCIDRs(cfg.podCIDRs);
        admission.recheck(own);
        this.queueReconcile();
      },
      remove: (k) => {
        if (k !== clusterConfigKey(own)) return;
        this.relayEnabled = false; // CIDRs stay as they were: no reason to trust more
        this.queueReconcile();
      },
    }, rej), this.log);
    void pinned.start();
    void config.start();
    await Promise.race([Promise.all([pinned.firstSync(), config.firstSync()]), new Promise((r) => setTimeout(r, 5000).unref())]);
    this.watchers.push(
      pinned,
      config,
      new ListWatcher(store, statePrefix('nodes', own), admit('nodes', 'node', nodeCodec), this.log),
      new ListWatcher(store, cachePrefix('nodes'), admit('nodes', 'node', nodeCodec), this.log),
      new ListWatcher(store, syncedPrefix(), {
        upsert: (k) => {
          const c = k.slice(syncedPrefix().length).split('/')[0]!;
          this.syncedClusters.add(c);
          this.queueReconcile();
        },
        // A remote's marker goes away when the cluster is disconnected; its
        // cached records are deleted by kvstoremesh at the same time.
        remove: (k) => {
          const c = k.slice(syncedPrefix().length).split('/')[0]!;
          this.syncedClusters.delete(c);
          this.queueReconcile();
        },
      }, this.log),
      new ListWatcher(store, statePrefix('ip', own), admit('ip', 'endpoint', endpointCodec), this.log),
      new ListWatcher(store, cachePrefix('ip'), admit('ip', 'endpoint', endpointCodec), this.log),
      new ListWatcher(store, cachePrefix('relays'), admit('relays', 'relay', relayCodec), this.log),
      new ListWatcher(store, cachePrefix('heartbeat'), stateSink('heartbeat', heartbeatCodec, (_k, c, _n, hb) => this.syncLag.set(c, { lagMs: Math.max(0, Date.now() - hb.at), receivedAtMs: Date.now() }), () => undefined /* the last value stays: its age keeps growing in the metrics */), this.log),
      new ListWatcher(store, remoteStatusPrefix(), decoded(remoteStatusCodec, {
        upsert: (k, st) => this.remoteStatus.set(k.slice(remoteStatusPrefix().length), st),
        remove: (k) => void this.remoteStatus.delete(k.slice(remoteStatusPrefix().length)),
      }, rej, (k) => k.slice(remoteStatusPrefix().length)), this.log),
    );
    if (dp) {
      const policySink = stateSink('policies', policyCodec, (k, c, n, m) => dp.upsertPolicy(k, c, n, m), (k) => dp.removePolicy(k));
      this.watchers.push(
        new ListWatcher(store, statePrefix('identities', own), admit('identities', 'identity', identityCodec), this.log),
        new ListWatcher(store, cachePrefix('identities'), admit('identities', 'identity', identityCodec), this.log),
        new ListWatcher(store, statePrefix('policies', own), policySink, this.log),
        new ListWatcher(store, cachePrefix('policies'), policySink, this.log),
        new ListWatcher(store, statePrefix('namespaces', own), stateSink('namespaces', namespaceCodec, (_k, _c, name, m) => this.setNamespace(name, m.metadata.labels ?? {}), (k) => {
          const loc = stateLocation('namespaces', k);
          if (loc) this.setNamespace(loc.name, null);
        }), this.log),
      );
    }
    if (svc) {
      const serviceSink = stateSink('services', serviceCodec, (k, c, _n, m) => svc.upsertRecord(k, c, m), (k) => svc.removeRecord(k));
      this.watchers.push(
        new ListWatcher(store, statePrefix('services', own), serviceSink, this.log),
        new ListWatcher(store, cachePrefix('services'), serviceSink, this.log),
      );
      svc.start();
      this.setupRouterAddress();
      this.proxy = new L7Proxy(this.dev.native, this.routerAddress!, this.cfg.policy.proxyPort, this.datapath!, this.log, this.cfg.policy.proxyWorkers);
      this.proxy.start();
      if (this.cfg.gateway) await this.startGateway(svc);
      // A node without service DNS still translates services: report and go on.
      if (this.cfg.services.dns.enabled)
        await this.startDns(svc).catch((err: Error) =>
          this.log.error({ err: err.message, address: this.cfg.services.dns.address, port: this.cfg.services.dns.port }, 'service DNS is off: cannot listen there (another DNS server? set services.dns.address / port, or services.dns.enabled: false)'),
        );
    }
    for (const w of this.watchers) void w.start();
    if (this.cfg.metrics) this.metricsServer = await this.metrics.listen(this.cfg.metrics.address, this.cfg.metrics.port);
    this.healthTimer = setInterval(() => void this.publishHealth().catch((err: Error) => this.log.warn({ err: err.message }, 'health publish failed')), 5000);
    this.healthTimer.unref();
    void this.publishHealth().catch((err: Error) => this.log.warn({ err: err.message }, 'health publish failed'));
    this.log.info({ node: this.id, tun: this.dev.tunName, port: this.dev.listenPort }, 'agent started');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.metricsServer?.close();
    await Promise.all(this.watchers.map((w) => w.stop()));
    this.dns?.close();
    this.gateway?.stop();
    await this.proxy?.stop();
    if (this.routerAddress) this.ip(['addr', 'del', `${this.routerAddress}/32`, 'dev', this.dev.tunName]);
    if (this.dnsAddressAdded) this.ip(['addr', 'del', `${this.cfg.services.dns.address}/${this.cfg.services.dns.address.includes(':') ? 128 : 32}`, 'dev', 'lo']);
    this.services?.stop();
    this.datapath?.stop();
    this.spoofWatch?.stop();
    if (this.datapath) this.removeHairpinRouting();
    // Leave the records to expire with the lease: a restarting agent takes them over.
    this.lease?.release();
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
      this.ip(['addr', 'add', `${address}/${address.includes(':') ? 128 : 32}`, 'dev', 'lo']);
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

  /**
   * The node's router address: the first address of its IPv4 pod CIDR, on
   * the TUN (Cilium's cilium_host). The L7 proxy listens on it and the
   * gateway connects from it; packets to it from remote nodes come through
   * the tunnels.
   */
  private setupRouterAddress(): void {
    const v4 = this.cfg.node.podCIDRs.map((c) => parsePrefix(c)).find((p) => p.addr.length === 4);
    if (!v4) throw new ConfigError('node.podCIDRs', 'mesh mode needs an IPv4 pod CIDR (its first address is the node\'s router address)');
    const first = Buffer.from(v4.addr);
    first[3]! += 1;
    this.routerAddress = formatIP(first);
    this.ip(['addr', 'replace', `${this.routerAddress}/32`, 'dev', this.dev.tunName]);
    // our own address comes back out of the TUN: the gateway's SYN to a local backend (hairpin)
    // (In a container /proc/sys is read-only: there the device inherits conf.default, set by the runtime.)
    const knob = `/proc/sys/net/ipv4/conf/${this.dev.tunName}/accept_local`;
    try {
      if (readFileSync(knob, 'utf8').trim() !== '1') execFileSync('sysctl', ['-qw', `net.ipv4.conf.${this.dev.tunName}.accept_local=1`]);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot set accept_local on the TUN (in a container: sysctl net.ipv4.conf.default.accept_local=1): the gateway will not reach backends on this node');
    }
    // this node's own addresses are `host` to its pods (they reach them through the TUN): the DNS address too
    const dns = this.cfg.services.dns;
    this.datapath?.setNode(this.id, [...new Set([...this.cfg.node.addresses, this.routerAddress, ...(dns.enabled ? [dns.address] : [])])]);
  }

  private gatewayRecord(): GatewayRecord | undefined {
    const g = this.cfg.gateway;
    if (!g) return undefined;
    return { cluster: this.cfg.cluster.name, node: this.cfg.node.name, address: g.address, ...(g.region ? { region: g.region } : {}), listeners: g.listeners.map((l) => ({ service: l.service, port: l.port, listenPort: l.listenPort })) };
  }

  private ipOut(args: string[]): string {
    try {
      return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return '';
    }
  }

  private ip(args: string[]): void {
    try {
      execFileSync('ip', args, { stdio: 'ignore' });
    } catch (err) {
      this.log.warn({ args: args.join(' '), err: (err as Error).message }, 'ip command failed');
    }
  }

  // ---- registration ----------------------------------------------------------

  private loadOrCreateKey(): Buffer {
    const file = this.cfg.wireguard.privateKeyFile;
    if (existsSync(file)) {
      const k = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
      if (k.length !== 32) throw new HostError('WM_KEY_INVALID', `${file}: not a base64 WireGuard private key`);
      return k;
    }
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const k = generatePrivateKey();
    writeFileSync(file, k.toString('base64') + '\n', { mode: 0o600 });
    return k;
  }

  /** This node's record of an endpoint address (ip v2: under the node, so RBAC can keep it ours). */
  private endpointKey(ip: string): string {
    return stateKey('ip', this.cfg.cluster.name, endpointName(this.cfg.node.name, ip));
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

  private async register(): Promise<void> {
    const lease = this.etcd.lease(this.cfg.leaseTTL, { autoKeepAlive: true });
    this.lease = lease;
    lease.on('lost', (err) => {
      if (this.stopped) return;
      this.log.warn({ err: err.message }, 'etcd lease lost, registering again');
      setTimeout(() => void this.register().catch((e) => this.log.error({ err: (e as Error).message }, 'registration failed')), 1000);
    });
    await lease.put(stateKey('nodes', this.cfg.cluster.name, this.cfg.node.name)).value(nodeCodec.encode(this.nodeRecord()));
    const gw = this.gatewayRecord();
    if (gw) await lease.put(stateKey('gateways', this.cfg.cluster.name, this.cfg.node.name)).value(gatewayCodec.encode(gw));
    this.leaseId = await lease.grant();
    await this.serialized(async () => {
      for (const ep of [...this.local.values()]) await this.putEndpoint(ep);
    });
  }

  /** This cluster's Namespace objects, read once at start (the watcher keeps them after). */
  private async loadNamespaces(): Promise<void> {
    try {
      for (const [k, v] of Object.entries(await this.etcd.getAll().prefix(statePrefix('namespaces', this.cfg.cluster.name)).strings())) {
        const loc = stateLocation('namespaces', k);
        const r = tryDecode(namespaceCodec, k, v);
        if (!r.ok) this.rejections.add(r.error, this.cfg.cluster.name);
        else if (loc) this.namespaceLabels.set(loc.name, r.value.metadata.labels ?? {});
      }
      this.datapath?.setNamespaces(this.namespaceLabels.keys());
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not read namespaces yet; the watcher will deliver them');
    }
  }

  /**
   * A Namespace object applied (labels) or deleted (null): when its labels
   * changed, its pods here get the identity of their new label set, and
   * policy follows (namespaceSelector, io.cilium.k8s.namespace.labels).
   */
  private setNamespace(name: string, labels: Labels | null): void {
    const old = this.namespaceLabels.get(name);
    if (labels) this.namespaceLabels.set(name, labels);
    else this.namespaceLabels.delete(name);
    this.datapath?.setNamespaces(this.namespaceLabels.keys());
    if (JSON.stringify(old ?? {}) === JSON.stringify(labels ?? {})) return;
    for (const [key, ep] of this.local)
      if (ep.namespace === name && this.leaseId)
        // queued behind any change of the endpoint in flight; it then takes the endpoint as it is by that time
        void this.serialized(async () => {
          const cur = this.local.get(key);
          if (cur) await this.putEndpoint(cur);
        }).catch((err) => this.log.error({ endpoint: key, err: (err as Error).message }, 'could not move the endpoint to its namespace\'s new labels'));
  }

  /**
   * Local endpoint changes run one at a time. Each takes etcd round trips
   * (identity allocation, record writes); run concurrently, a later change
   * (a relabel back) could finish first and the earlier one then leave the
   * data path and the record on a stale identity with its access, or a change
   * in flight re-create an endpoint just removed.
   */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.endpointOps.then(fn, fn);
    this.endpointOps = run.catch(() => undefined);
    return run;
  }

  /** Allocates (or finds) the endpoint's identity and hands it to the data path. */
  private async endpointIdentity(ep: LocalEndpoint): Promise<number | undefined> {
    if (!this.allocator || !this.datapath || !this.leaseId) return undefined;
    const key = `${ep.namespace}/${ep.name}`;
    const labels = endpointIdentityLabels(ep.labels, ep.namespace, this.cfg.cluster.name, this.namespaceLabels.get(ep.namespace));
    // MAX_POD_LABELS keeps this within bounds; an identity past them would be refused by every reader
    if (Object.keys(labels).length > MAX_LABELS) throw new ConfigError('labels', `the identity of ${key} would hold ${Object.keys(labels).length} labels (at most ${MAX_LABELS})`);
    const id = await this.allocator.allocate(labels, this.leaseId);
    const old = this.identities.get(key);
    this.identities.set(key, id);
    if (old !== undefined && old !== id) await this.releaseIdentity(old);
    this.datapath.setLocalEndpoint(key, id, labels, ep.ips, ep.ports ?? []);
    return id;
  }

  private async releaseIdentity(id: number): Promise<void> {
    if ([...this.identities.values()].includes(id)) return; // another endpoint here still uses it
    await this.allocator?.release(id);
  }

  private async putEndpoint(ep: LocalEndpoint): Promise<void> {
    const identity = await this.endpointIdentity(ep);
    for (const ip of ep.ips) {
      const rec: EndpointRecord = { ip, cluster: this.cfg.cluster.name, node: this.cfg.node.name, namespace: ep.namespace, name: ep.name, labels: ep.labels, ...(identity !== undefined ? { identity } : {}), ...(ep.ports?.length ? { ports: ep.ports } : {}) };
      await this.lease!.put(this.endpointKey(ip)).value(endpointCodec.encode(rec));
    }
  }

  // ---- local endpoints (the CNI-facing API calls these) -------------------------

  /**
   * Adds or updates a local endpoint (the agent API, a CNI plugin). A pod
   * speaks only from its own addresses: each must lie in this node's pod
   * CIDRs, and an address another endpoint holds (of this node under another
   * name, or a live record of another node) is refused unless `replace`
   * says to take it over. Throws EndpointConflictError / ConfigError.
   */
  addEndpoint(ep: LocalEndpoint, opts: { replace?: boolean } = {}): Promise<void> {
    return this.serialized(() => this.addEndpointNow(ep, opts));
  }

  /**
   * Changes a local endpoint from what it is when its turn comes (`change`
   * may throw to refuse); undefined when there is no such endpoint. The
   * agent API's PATCH: two label patches never both start from the same labels.
   */
  updateEndpoint(namespace: string, name: string, change: (cur: LocalEndpoint) => LocalEndpoint): Promise<LocalEndpoint | undefined> {
    return this.serialized(async () => {
      const cur = this.local.get(`${namespace}/${name}`);
      if (!cur) return undefined;
      const ep = change(cur);
      await this.addEndpointNow(ep, {});
      return ep;
    });
  }

  removeEndpoint(namespace: string, name: string): Promise<boolean> {
    return this.serialized(() => this.removeEndpointNow(namespace, name));
  }

  private async addEndpointNow(ep: LocalEndpoint, opts: { replace?: boolean }): Promise<void> {
    const key = `${ep.namespace}/${ep.name}`;
    const mine = this.cfg.node.podCIDRs.map((c) => parsePrefix(c));
    ep.ips.forEach((ip, i) => {
      const a = parseIP(ip)!;
      if (!mine.some((p) => prefixContains(p, a))) throw new ConfigError(`ips[${i}]`, `${ip} is outside this node's pod CIDRs (${this.cfg.node.podCIDRs.join(', ')})`);
    });
    const holders = this.addressHolders(ep.ips, key);
    if (holders.length && !opts.replace) throw new EndpointConflictError(holders);
    for (const h of holders) {
      const other = h.node === this.cfg.node.name && h.cluster === this.cfg.cluster.name ? this.local.get(h.endpoint) : undefined;
      if (!other) continue;
      const rest = other.ips.filter((ip) => !ep.ips.includes(ip));
      if (rest.length) await this.addEndpointNow({ ...other, ips: rest }, { replace: true });
      else await this.removeEndpointNow(other.namespace, other.name);
    }
    const old = this.local.get(key);
    this.local.set(key, ep);
    this.saveLocalEndpoints();
    await this.putEndpoint(ep);
    if (old) for (const ip of old.ips) if (!ep.ips.includes(ip)) await this.etcd.delete().key(this.endpointKey(ip));
  }

  private async removeEndpointNow(namespace: string, name: string): Promise<boolean> {
    const ep = this.local.get(`${namespace}/${name}`);
    if (!ep) return false;
    this.local.delete(`${namespace}/${name}`);
    this.saveLocalEndpoints();
    for (const ip of ep.ips) await this.etcd.delete().key(this.endpointKey(ip));
    this.datapath?.removeLocalEndpoint(`${namespace}/${name}`);
    const id = this.identities.get(`${namespace}/${name}`);
    this.identities.delete(`${namespace}/${name}`);
    if (id !== undefined) await this.releaseIdentity(id);
    return true;
  }

  /** Who else holds any of `ips`: local endpoints under another name, endpoints of other nodes. */
  private addressHolders(ips: string[], key: string): Array<{ ip: string; cluster: string; node: string; endpoint: string }> {
    const out: Array<{ ip: string; cluster: string; node: string; endpoint: string }> = [];
    for (const other of this.local.values()) {
      const k = `${other.namespace}/${other.name}`;
      if (k === key) continue;
      for (const ip of other.ips) if (ips.includes(ip)) out.push({ ip, cluster: this.cfg.cluster.name, node: this.cfg.node.name, endpoint: k });
    }
    for (const rec of this.endpoints.values()) {
      if (!ips.includes(rec.ip)) continue;
      if (rec.cluster === this.cfg.cluster.name && rec.node === this.cfg.node.name) continue; // ours: seen above
      out.push({ ip: rec.ip, cluster: rec.cluster, node: rec.node, endpoint: `${rec.namespace}/${rec.name}` });
    }
    return out;
  }

  localEndpoints(): LocalEndpoint[] {
    return [...this.local.values()];
  }

  private loadLocalEndpoints(): void {
    if (!existsSync(this.stateFile)) return;
    try {
      const saved: unknown = JSON.parse(readFileSync(this.stateFile, 'utf8'));
      for (const [i, raw] of (Array.isArray(saved) ? saved : []).entries()) {
        try {
          const ep = validateEndpoint(raw);
          this.local.set(`${ep.namespace}/${ep.name}`, ep);
        } catch (err) {
          this.log.warn({ file: this.stateFile, index: i, err: (err as Error).message }, 'skipping an unreadable saved endpoint');
        }
      }
    } catch (err) {
      this.log.warn({ file: this.stateFile, err: (err as Error).message }, 'ignoring unreadable endpoint state');
    }
  }

  private saveLocalEndpoints(): void {
    writeFileSync(this.stateFile, JSON.stringify([...this.local.values()], null, 1), { mode: 0o600 });
  }

  // ---- reconciliation -----------------------------------------------------------

  /** Schedules a pass; `key` limits it to one node record, none means everything. */
  private queueReconcile(key?: string): void {
    if (key === undefined) this.dirty = 'all';
    else if (this.dirty !== 'all') this.dirty.add(key);
    if (this.reconcileQueued || this.stopped) return;
    this.reconcileQueued = true;
    setImmediate(() => {
      this.reconcileQueued = false;
      try {
        this.reconcile();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'reconcile failed');
      }
    });
  }

  /** The record behind `key` if it is a node we should have a tunnel to, with its id. */
  private desiredAt(key: string): { id: string; rec: NodeRecord | undefined } | null {
    const own = this.cfg.cluster.name;
    const local = key.startsWith(statePrefix('nodes', own));
    const loc = splitClusterName(local ? statePrefix('nodes') : cachePrefix('nodes'), key);
    if (!loc) return null;
    const id = `${loc.cluster}/${loc.name}`;
    const rec = this.nodes.get(key);
    if (!rec) return { id, rec: undefined };
    if (loc.cluster !== rec.cluster || loc.name !== rec.name) return { id, rec: undefined }; // a record must live under its own name
    if (!local && (rec.cluster === own || !this.syncedClusters.has(rec.cluster))) return { id, rec: undefined };
    if (rec.cluster === own && rec.name === this.cfg.node.name) return { id, rec: undefined };
    return { id, rec };
  }

  /** The nodes we should have a tunnel to: our cluster's and synced remotes'. */
  desiredNodes(): Map<string, NodeRecord> {
    const out = new Map<string, NodeRecord>();
    for (const key of this.nodes.keys()) {
      const d = this.desiredAt(key);
      if (d?.rec) out.set(d.id, d.rec);
    }
    return out;
  }

  /**
   * Hub-and-spoke: pod CIDRs we cannot reach directly but a hub node offers to
   * relay, by the hub node's id. Every node picks the same hub node for a
   * remote cluster (the first relay offer by cluster, then node name), so
   * both directions of a relayed flow use the same hub node and pass its
   * cryptokey routing check.
   */
  private relayPlan(desired: Map<string, NodeRecord>): Map<string, string[]> {
    const direct = new Set<string>(this.cfg.node.podCIDRs);
    for (const rec of desired.values()) for (const c of rec.podCIDRs) direct.add(c);
    const offers = [...this.relays.values()]
      .filter((r) => r.cluster !== this.cfg.cluster.name && this.syncedClusters.has(r.cluster) && desired.has(`${r.cluster}/${r.node}`))
      .sort((a, b) => (a.cluster + '/' + a.node < b.cluster + '/' + b.node ? -1 : 1));
    const via = new Map<string, string>();
    for (const r of offers) for (const c of r.podCIDRs) if (!direct.has(c) && !via.has(c)) via.set(c, `${r.cluster}/${r.node}`);
    const plan = new Map<string, string[]>();
    for (const [cidr, hub] of via) plan.set(hub, [...(plan.get(hub) ?? []), cidr].sort());
    return plan;
  }

  /** A hub node offers every remote cluster's pod CIDRs it reaches. */
  private publishRelay(desired: Map<string, NodeRecord>): void {
    const own = this.cfg.cluster.name;
    const key = stateKey('relays', own, this.cfg.node.name);
    const remote = this.relayEnabled ? [...desired.values()].filter((r) => r.cluster !== own) : [];
    const cidrs = remote.flatMap((r) => r.podCIDRs).sort();
    const clusterIds = [...new Set(remote.map((r) => r.clusterId))].sort((a, b) => a - b);
    const value = cidrs.length ? relayCodec.encode({ cluster: own, node: this.cfg.node.name, podCIDRs: cidrs, clusterIds }) : '';
    if (value === this.publishedRelay || !this.lease) return;
    this.publishedRelay = value;
    const op = value ? this.lease.put(key).value(value).exec() : this.etcd.delete().key(key).exec();
    void op.catch((err: Error) => this.log.warn({ err: err.message }, 'could not publish relay offer'));
  }

  reconcile(): void {
    const dirty = this.dirty;
    this.dirty = new Set();
    if (dirty !== 'all' && this.reconcileKeys(dirty)) return;
    const desired = this.desiredNodes();
    for (const [id, st] of this.peers) {
      if (desired.has(id)) continue;
      this.removePeer(id, st);
    }
    const plan = this.relayPlan(desired);
    this.relayPlanCache = plan;
    const changed: NodeRecord[] = [];
    for (const [id, rec] of desired) {
      const st = this.peers.get(id);
      const relayed = plan.get(id) ?? [];
      const sameRelay = st !== undefined && st.relayed.join() === relayed.join();
      if (st && sameRelay && st.record === rec) continue; // records are replaced, never mutated, on every change
      if (st && sameRelay && JSON.stringify(st.record) === JSON.stringify(rec)) {
        st.record = rec;
        continue;
      }
      if (st && st.record.publicKey !== rec.publicKey) this.removePeer(id, st);
      this.upsertPeer(id, rec, relayed);
      changed.push(rec);
    }
    this.flushRoutes();
    this.publishRelay(desired);
    // The data path holds these peers now (the native calls above are synchronous).
    if (changed.length) this.emit('peers-programmed', changed);
  }

  /**
   * The common case under churn: a few node records changed. Handles them in
   * O(changed) and returns true, or returns false when a change can move relay
   * plans (a node came or went, or changed its pod CIDRs, while relays are in
   * use), which needs the full pass.
   */
  private reconcileKeys(keys: Set<string>): boolean {
    const relaysInUse = this.relays.size > 0 || this.relayEnabled;
    const work: Array<{ id: string; rec: NodeRecord | undefined }> = [];
    for (const key of keys) {
      const d = this.desiredAt(key);
      if (!d) continue;
      const st = this.peers.get(d.id);
      if (relaysInUse && (!st || !d.rec || st.record.podCIDRs.join() !== d.rec.podCIDRs.join())) return false;
      work.push(d);
    }
    const changed: NodeRecord[] = [];
    for (const { id, rec } of work) {
      const st = this.peers.get(id);
      if (!rec) {
        // removed here; the same node may still be desired under its other key (state vs cache)
        if (st && !this.desiredNodeById(id)) this.removePeer(id, st);
        continue;
      }
      if (st && st.record === rec) continue;
      if (st && JSON.stringify(st.record) === JSON.stringify(rec)) {
        st.record = rec;
        continue;
      }
      if (st && st.record.publicKey !== rec.publicKey) this.removePeer(id, st);
      this.upsertPeer(id, rec, this.relayPlanCache.get(id) ?? []);
      changed.push(rec);
    }
    this.flushRoutes();
    if (changed.length) this.emit('peers-programmed', changed);
    return true;
  }

  private desiredNodeById(id: string): boolean {
    const [cluster, name] = id.split('/') as [string, string];
    const key = cluster === this.cfg.cluster.name ? stateKey('nodes', cluster, name) : `${cachePrefix('nodes', cluster)}${name}`;
    return this.desiredAt(key)?.rec !== undefined;
  }

  private upsertPeer(id: string, rec: NodeRecord, relayed: string[]): void {
    const pub = Buffer.from(rec.publicKey, 'base64');
    const peer = this.dev.addPeer(pub);
    const mine = parseIP(this.cfg.node.addresses[0]!)!;
    const addr = rec.addresses.find((a) => parseIP(a)!.length === mine.length) ?? rec.addresses[0]!;
    this.dev.setPeerEndpoint(peer, { host: addr, port: rec.port });
    const routes = [...rec.podCIDRs, ...relayed];
    const old = this.peers.get(id);
    if (old) this.releaseRoutes(old.routes);
    this.claimRoutes(routes);
    this.peers.set(id, { record: rec, peer, routes, relayed });
    this.claimNodeAddresses(id, rec.addresses);
    this.programAllowedIPs(id);
    if (this.datapath) {
      this.datapath.setNode(id, rec.addresses);
      this.datapath.peerIdentity(peer.id, [rec.clusterId, ...this.relayedClusterIds(id, relayed)]);
    }
    this.services?.schedule();
    this.log.debug({ peer: id, endpoint: `${addr}:${rec.port}`, podCIDRs: rec.podCIDRs }, 'peer up');
  }

  /**
   * Cluster ids a hub node relays for (from its relay offer: a spoke does not
   * know the other spokes' nodes): its tags may carry those clusters' identities.
   */
  private relayedClusterIds(hubId: string, cidrs: string[]): number[] {
    if (cidrs.length === 0) return [];
    const [cluster, node] = hubId.split('/');
    for (const r of this.relays.values()) if (r.cluster === cluster && r.node === node) return r.clusterIds ?? [];
    return [];
  }

  /**
   * Every packet of a pod crosses the TUN, so the data path is the one place
   * policy is enforced (docs/architecture.md, "One enforcement point"). IPv4:
   *
   *   pref 9     to <pods' gateway, DNS address>     lookup local   ARP for the gateway is answered only if local
   *   pref 10    iif <TUN>                           lookup local   what the data path writes back: ours to deliver,
   *   pref 11    iif <TUN>                           lookup main    or routed normally (never into rule 13 again)
   *   pref 12    iif lo                              lookup local   the host's own packets: as before
   *   pref 13    from <our pod CIDR>                 lookup 2004    everything our pods send, to this node's own
   *                                                                 addresses too (egress policy, identity host)
   *   pref 100   lookup local                                       the kernel's pref 0 rule, moved behind ours
   *   pref 2002  iif <underlay> to <our pod CIDR>    lookup 2004    the world reaching our pods (ingress policy)
   *   table 2004: <our pod CIDR> dev <TUN>, default dev <TUN>
   *
   * IPv6 keeps the local rule at pref 0 (link-local gateways, neighbour
   * discovery): pref 2003 iif <TUN> lookup main, pref 2004 from <pod CIDR>
   * lookup 2004, and pref 2002 as above, so a pod's IPv6 packets to this node's
   * own addresses are delivered without a check.
   */
  private installHairpinRouting(): void {
    const underlay = this.underlayDevices();
    this.hairpinUnderlay = underlay;
    this.ownNodeV4 = this.cfg.node.podCIDRs.some((c) => !c.includes(':')) && this.disableEarlyDemux();
    const ops = [...this.hairpinRemove(), ...this.hairpinInstall()];
    for (const op of ops) {
      try {
        execFileSync('ip', op.split(' '), { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (err) {
        if (!op.includes(' del ')) this.log.warn({ op, err: String((err as { stderr?: Buffer }).stderr ?? err).trim() }, 'hairpin routing step failed');
      }
    }
    if (underlay.length === 0) this.log.warn({ addresses: this.cfg.node.addresses }, 'no interface holds the node addresses: traffic from outside the mesh to pods will not meet ingress policy');
    try {
      execFileSync('sysctl', ['-qw', `net.ipv4.conf.${this.dev.tunName}.rp_filter=0`]);
    } catch {
      /* no IPv4 on this node */
    }
  }

  private hairpinInstall(): string[] {
    const tun = this.dev.tunName;
    const v4 = this.cfg.node.podCIDRs.filter((c) => !c.includes(':'));
    const v6 = this.cfg.node.podCIDRs.filter((c) => c.includes(':'));
    const ops: string[] = [];
    if (v4.length && !this.ownNodeV4) {
      // as IPv6 (below): the pod's packets to this node's own addresses are delivered unchecked
      ops.push(`-4 rule add pref 2003 iif ${tun} lookup main`);
      for (const c of v4) ops.push(`-4 rule add pref 2004 from ${c} lookup 2004`);
    } else if (v4.length) {
      for (const g of this.podGateways()) ops.push(`-4 rule add pref 9 to ${g} lookup local`);
      ops.push(`-4 rule add pref 10 iif ${tun} lookup local`, `-4 rule add pref 11 iif ${tun} lookup main`, '-4 rule add pref 12 iif lo lookup local');
      for (const c of v4) ops.push(`-4 rule add pref 13 from ${c} lookup 2004`);
      // the kernel's local rule moves behind ours: added at 100 first, so there is always one
      ops.push('-4 rule add pref 100 lookup local', '-4 rule del pref 0 lookup local');
    }
    if (v6.length) {
      ops.push(`-6 rule add pref 2003 iif ${tun} lookup main`);
      for (const c of v6) ops.push(`-6 rule add pref 2004 from ${c} lookup 2004`);
    }
    for (const c of [...v4, ...v6]) {
      const fam = c.includes(':') ? '-6' : '-4';
      for (const dev of this.hairpinUnderlay) ops.push(`${fam} rule add pref 2002 iif ${dev} to ${c} lookup 2004`);
      ops.push(`${fam} route replace ${c} dev ${tun} table 2004`, `${fam} route replace ${c.includes(':') ? '::/0' : '0.0.0.0/0'} dev ${tun} table 2004`);
    }
    return ops;
  }

  /** Undoes hairpinInstall (also what a crashed run left): the local rule back at pref 0 first. */
  private hairpinRemove(): string[] {
    const tun = this.dev.tunName;
    const v4 = this.cfg.node.podCIDRs.filter((c) => !c.includes(':'));
    const v6 = this.cfg.node.podCIDRs.filter((c) => c.includes(':'));
    const ops: string[] = [];
    if (v4.length) {
      // (`ip rule add` makes duplicates: the local rule goes back at pref 0 only where it is missing)
      if (!this.ipOut(['-4', 'rule', 'list', 'pref', '0']).includes('lookup local')) ops.push('-4 rule add pref 0 lookup local');
      ops.push('-4 rule del pref 100 lookup local');
      for (const g of this.podGateways()) ops.push(`-4 rule del pref 9 to ${g} lookup local`);
      ops.push(`-4 rule del pref 10 iif ${tun} lookup local`, `-4 rule del pref 11 iif ${tun} lookup main`, '-4 rule del pref 12 iif lo lookup local');
      for (const c of v4) ops.push(`-4 rule del pref 13 from ${c} lookup 2004`, `-4 rule del pref 2004 from ${c} lookup 2004`);
      ops.push(`-4 rule del pref 2003 iif ${tun} lookup main`); // (earlier versions)
    }
    if (v6.length) {
      ops.push(`-6 rule del pref 2003 iif ${tun} lookup main`);
      for (const c of v6) ops.push(`-6 rule del pref 2004 from ${c} lookup 2004`);
    }
    for (const c of [...v4, ...v6]) for (const dev of this.hairpinUnderlay) ops.push(`${c.includes(':') ? '-6' : '-4'} rule del pref 2002 iif ${dev} to ${c} lookup 2004`);
    return ops;
  }

  /**
   * The pods' gateway (169.254.1.1 on every pod veth, src/testbed/pod.ts) and
   * the service DNS address: delivered locally before rule 13, because the
   * kernel answers a pod's ARP for its gateway only if a route lookup (with the
   * pod's source) says local. So a pod's packets to them (DNS) are not checked.
   */
  private podGateways(): string[] {
    const dns = this.cfg.services.dns;
    return [...new Set(['169.254.1.1', ...(dns.enabled && !dns.address.includes(':') ? [dns.address] : [])])];
  }

  /** Interfaces holding the node's (underlay) addresses: where traffic from outside the mesh arrives. */
  private underlayDevices(): string[] {
    try {
      const links = ipAddrAnswer.parse(JSON.parse(execFileSync('ip', ['-j', 'addr', 'show'], { encoding: 'utf8' })));
      const mine = new Set(this.cfg.node.addresses.map((a) => formatIP(parseIP(a)!)));
      return [...new Set(links.filter((l) => l.ifname !== this.dev.tunName && l.ifname !== 'lo' && (l.addr_info ?? []).some((a) => a.local && parseIP(a.local) && mine.has(formatIP(parseIP(a.local)!)))).map((l) => l.ifname))];
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot list interfaces');
      return [];
    }
  }

  private removeHairpinRouting(): void {
    for (const op of this.hairpinRemove())
      try {
        execFileSync('ip', op.split(' '), { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    if (this.earlyDemuxWas !== undefined) {
      try {
        execFileSync('sysctl', ['-qw', `net.ipv4.ip_early_demux=${this.earlyDemuxWas}`]);
      } catch {
        /* as it is */
      }
    }
  }

  /**
   * IPv4 early demux off (this network namespace): with it, the kernel ties a
   * pod's packet to this node's own TCP/UDP socket before routing, and then
   * refuses to forward it into the TUN (ip_forward drops an skb with a socket),
   * so every packet after a SYN from a pod to the node would be lost. Where it
   * cannot be turned off (a read-only /proc/sys in a container), a pod's packets
   * to its own node stay unchecked, as over IPv6.
   */
  private disableEarlyDemux(): boolean {
    const knob = '/proc/sys/net/ipv4/ip_early_demux';
    try {
      const was = readFileSync(knob, 'utf8').trim();
      if (was === '0') return true;
      execFileSync('sysctl', ['-qw', 'net.ipv4.ip_early_demux=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
      this.earlyDemuxWas = was;
      return true;
    } catch (err) {
      this.log.warn({ err: String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim() }, 'cannot turn IPv4 early demux off: pods\' packets to this node\'s own addresses are not checked');
      return false;
    }
  }

  /**
   * A peer's allowed IPs: its pod CIDRs, the CIDRs it relays and (mesh mode)
   * the node addresses it holds, so a pod's packets to another node's address
   * go through that node's tunnel (encrypted, tagged, its reply comes back the
   * same way) instead of leaving in the clear.
   */
  private programAllowedIPs(id: string): void {
    const st = this.peers.get(id);
    if (!st) return;
    const addrs = [...this.nodeAddressClaims].filter(([, ids]) => ids[0] === id).map(([a]) => a);
    this.dev.setPeerAllowedIPs(st.peer, [...st.routes, ...addrs].map((c) => parsePrefix(c)));
  }

  /**
   * Records which node addresses peer `id` claims now. An address goes to the
   * first peer that claims it (a node must not take over another's address, nor
   * a pod address: one inside any pinned cluster's pod CIDRs or any peer's
   * routes is never taken); when the holder lets go, the next claimant gets it.
   */
  private claimNodeAddresses(id: string, addresses: string[]): void {
    if (!this.datapath) return;
    const mine = new Set(this.cfg.node.addresses.map((a) => formatPrefix(parsePrefix(a))));
    const podSpace = [...this.trust.pinned().flatMap((c) => c.podCIDRs), ...(this.trust.facts(this.cfg.cluster.name)?.podCIDRs ?? []), ...this.cfg.node.podCIDRs.map((c) => parsePrefix(c)), ...[...this.routeRefs.keys()].map((c) => parsePrefix(c))];
    const want = new Set(
      addresses
        .map((a) => parsePrefix(a))
        .filter((p) => !mine.has(formatPrefix(p)) && !podSpace.some((c) => c.addr.length === p.addr.length && prefixContains(c, p.addr)))
        .map((p) => formatPrefix(p)),
    );
    const handOver = new Set<string>();
    for (const [a, ids] of this.nodeAddressClaims) {
      const i = ids.indexOf(id);
      if (i < 0 || want.has(a)) continue;
      ids.splice(i, 1);
      if (i === 0 && ids[0]) handOver.add(ids[0]);
      if (ids.length === 0) this.nodeAddressClaims.delete(a);
    }
    for (const a of want) {
      const ids = this.nodeAddressClaims.get(a);
      if (!ids) this.nodeAddressClaims.set(a, [id]);
      else if (!ids.includes(id)) {
        ids.push(id);
        this.log.warn({ address: a, holder: ids[0], claimant: id }, 'two nodes claim one address: it stays with the first');
      }
    }
    for (const other of handOver) if (other !== id) this.programAllowedIPs(other);
  }

  private claimRoutes(routes: string[]): void {
    for (const r of routes) {
      this.routeRefs.set(r, (this.routeRefs.get(r) ?? 0) + 1);
      this.routesTouched.add(r);
    }
  }

  private releaseRoutes(routes: string[]): void {
    for (const r of routes) {
      const n = (this.routeRefs.get(r) ?? 1) - 1;
      if (n > 0) this.routeRefs.set(r, n);
      else this.routeRefs.delete(r);
      this.routesTouched.add(r);
    }
  }

  private removePeer(id: string, st: PeerState): void {
    this.releaseRoutes(st.routes);
    this.dev.removePeer(st.peer.publicKey);
    this.peers.delete(id);
    this.claimNodeAddresses(id, []);
    this.datapath?.setNode(id, null);
    this.services?.schedule();
    this.log.debug({ peer: id }, 'peer removed');
  }

  /**
   * Makes the TUN's routes the CIDRs some peer claims (reference counts), so a
   * CIDR that moved from one peer to another in a pass (a relay handed over)
   * stays installed. Only CIDRs whose count changed are looked at; one
   * `ip -batch` per pass.
   */
  private flushRoutes(): void {
    const ops: string[] = [];
    // (ip -batch takes no per-line options like -6: the prefix tells the family)
    for (const r of this.routesTouched) {
      const want = this.routeRefs.has(r);
      if (want && !this.installedRoutes.has(r)) {
        ops.push(`route replace ${r} dev ${this.dev.tunName}`);
        this.installedRoutes.add(r);
      } else if (!want && this.installedRoutes.has(r)) {
        ops.push(`route del ${r} dev ${this.dev.tunName}`);
        this.installedRoutes.delete(r);
      }
    }
    this.routesTouched.clear();
    if (ops.length === 0) return;
    try {
      // -force: one failing line (a route already gone) must not stop the rest
      execFileSync('ip', ['-force', '-batch', '-'], { input: ops.join('\n') + '\n', stdio: ['pipe', 'ignore', 'pipe'] });
    } catch (err) {
      this.log.warn({ err: String((err as { stderr?: Buffer }).stderr ?? err).trim() }, 'some route changes failed');
    }
  }

  // ---- status -------------------------------------------------------------------

  /** Publishes this node's tunnels for `wiremesh clustermesh status`. */
  private async publishHealth(): Promise<void> {
    if (!this.lease || this.stopped) return;
    const s = this.status() as { peers: Array<{ id: string; cluster: string; lastHandshakeAgeS: number | null; rxBytes: number; txBytes: number; unreachableForS?: number; endpoint?: string }> };
    // Per cluster: tunnels and live tunnels (handshake < 180 s); per tunnel only the
    // active ones, at most 500, so the record stays small with thousands of peers.
    const clusters: Record<string, { peers: number; live: number }> = {};
    for (const p of s.peers) {
      const c = (clusters[p.cluster] ??= { peers: 0, live: 0 });
      c.peers++;
      if (p.lastHandshakeAgeS !== null && p.lastHandshakeAgeS < 180) c.live++;
    }
    const active = s.peers.filter((p) => p.lastHandshakeAgeS !== null).slice(0, 500);
    const unreachable = s.peers.filter((p) => p.unreachableForS !== undefined).slice(0, 100).map((p) => ({ id: p.id, endpoint: p.endpoint, forS: p.unreachableForS }));
    // global services as this node sees them: backends per cluster, healthy, table size (clustermesh status)
    const services = (this.services?.list() ?? []).filter((x) => x.global).slice(0, 200).map((x) => ({
      service: `${x.namespace}/${x.name}`,
      vip: x.vip,
      affinity: x.affinity,
      tableSize: x.ports[0]?.tableSize,
      ...(x.ports[0]?.nearest ? { nearest: x.ports[0].nearest } : {}),
      clusters: Object.fromEntries(clusterCounts(x)),
    }));
    const health = { at: new Date().toISOString(), syncedClusters: [...this.syncedClusters].sort(), clusters, unreachable, services, peers: active.map((p) => ({ id: p.id, cluster: p.cluster, handshakeAgeS: p.lastHandshakeAgeS, rxBytes: p.rxBytes, txBytes: p.txBytes })) };
    await this.lease.put(healthKey(this.cfg.cluster.name, this.cfg.node.name)).value(nodeHealthCodec.encode(health as NodeHealth)).catch(() => undefined);
  }

  status(): Record<string, unknown> {
    const stats = this.dev.peerStats();
    const now = Date.now();
    const mono = this.dev.now();
    return {
      cluster: this.cfg.cluster.name,
      clusterId: this.cfg.cluster.id,
      node: this.cfg.node.name,
      publicKey: this.dev.identity?.publicKey.toString('base64'),
      listenPort: this.dev.listenPort,
      etcdConnected: this.watchers.every((w) => w.connected),
      syncedClusters: [...this.syncedClusters].sort(),
      endpoints: this.endpoints.size,
      localEndpoints: this.local.size,
      peers: [...this.peers.entries()].map(([id, st]) => {
        const s = stats.get(st.peer.id);
        return {
          id,
          cluster: st.record.cluster,
          endpoint: s?.host ? `${s.host}:${s.port}` : undefined,
          podCIDRs: st.record.podCIDRs,
          ...(st.relayed.length ? { relayed: st.relayed } : {}),
          lastHandshakeAgeS: st.peer.lastHandshakeEpochMs ? Math.round((now - st.peer.lastHandshakeEpochMs) / 1000) : null,
          // initiating for more than 15 s (three RekeyTimeouts) without an answer
          unreachableForS: st.peer.initiatingSinceMs && mono - st.peer.initiatingSinceMs > 15_000 ? Math.round((mono - st.peer.initiatingSinceMs) / 1000) : undefined,
          rxBytes: s?.rxBytes ?? 0,
          txBytes: s?.txBytes ?? 0,
          rxPackets: s?.rxPackets ?? 0,
          txPackets: s?.txPackets ?? 0,
        };
      }),
      counters: {
        ...this.dev.native.counters(),
        ...(this.datapath && this.spoofWatch ? { source_spoofed_records: this.datapath.spoofedRecords, source_spoofed_watch_errors: this.spoofWatch.errors } : {}),
      },
      // records refused (docs/security.md): how many, and the latest with key and reason
      rejections: { total: this.rejections.total, recent: this.rejections.recent.slice(-20) },
      pinnedClusters: this.trust.pinned().map((f) => ({ name: f.name, id: f.id, relay: f.relay, acceptPolicies: f.acceptPolicies })),
      ...(this.proxy ? { proxy: this.proxy.stats } : {}),
      ...(this.gateway ? { gateway: { address: this.cfg.gateway!.address, routerAddress: this.routerAddress, listeners: this.gateway.stats } } : {}),
      ...(this.services ? { services: { count: this.services.list().length, lastComputeMs: this.services.lastComputeMs, ...(this.dns ? { dns: this.dns.counters } : {}) } } : {}),
      ...(this.datapath ? { policy: { identities: this.datapath.universe.identities.size, localEndpoints: this.identities.size, lastCompileMs: this.datapath.lastCompileMs, warnings: this.datapath.warnings.length } } : {}),
    };
  }

  /** One scrape's data: status() (peers, counters, proxy, policy) plus services and control-plane state. */
  metricsSnapshot(): MetricsSnapshot {
    const st = this.status() as {
      peers: MetricsSnapshot['peers'];
      counters: Record<string, number>;
      proxy?: MetricsSnapshot['proxy'];
      etcdConnected: boolean;
      syncedClusters: string[];
      policy?: MetricsSnapshot['policy'];
    };
    const h = this.dev.stats;
    return {
      peers: st.peers,
      counters: st.counters,
      handshakes: { initiated: h.handshakesInitiated, completed: h.handshakesCompleted, rejected: h.handshakesRejected },
      services: this.services?.list() ?? [],
      ...(st.proxy ? { proxy: st.proxy } : {}),
      etcdConnected: st.etcdConnected,
      syncedClusters: st.syncedClusters,
      syncLag: this.syncLag,
      remotes: [...this.remoteStatus.values()],
      rejections: this.rejections.rows(),
      ...(st.policy ? { policy: st.policy } : {}),
    };
  }
}
