/**
 * KVStoreMesh: one per cluster. Reads each connected cluster's etcd (its
 * wiremesh/state/<type>/<v>/<remote>/ prefixes only) and mirrors them into the
 * local etcd under wiremesh/cache/<type>/<v>/<remote>/, so agents read only
 * their own etcd: connections to remote etcds grow with clusters², not with
 * nodes × clusters.
 *
 * - Which remotes: the local keys wiremesh/mesh/v1/remotes/<remote> (written by
 *   `wiremesh clustermesh connect`), watched, so connect/disconnect need no restart.
 * - Sync markers: wiremesh/synced/<remote>/<type> is written once the first full
 *   list of that type is mirrored; agents ignore a remote's cache until then.
 * - Deletions are never lost: a broken watch relists (ListWatcher), and at start
 *   the local cache entries the remote no longer has are deleted after the
 *   first list.
 * - While a remote is unreachable, its cached state stays and the outage is
 *   reported in wiremesh/mesh/v1/status/<remote>.
 */
import type { Logger } from '../log.js';
import {
  cacheKey,
  cachePrefix,
  clusterConfigKey,
  pinnedKey,
  pinnedPrefix,
  remoteStatusKey,
  remotesPrefix,
  splitClusterName,
  stateKey,
  statePrefix,
  syncedKey,
  type StateType,
} from './keys.js';
import { connectEtcd, decoded, EtcdStore, ListWatcher, type KVStore } from './kvstore.js';
import { BatchedWriter, type MeshLease, type MeshLocal, type MirrorTarget } from './mirrorwriter.js';
import { IdentityCollector } from '../identity/allocator.js';
import {
  clusterConfigCodec,
  endpointCodec,
  gatewayCodec,
  heartbeatCodec,
  namespaceCodec,
  identityCodec,
  nodeCodec,
  pinnedClusterCodec,
  policyCodec,
  RecordError,
  Rejections,
  relayCodec,
  remoteSpecCodec,
  serviceCodec,
  tryDecode,
  Trust,
  type Codec,
  type PinnedCluster,
  type RemoteSpec,
  type RemoteStatus,
} from './records/index.js';

/**
 * State replicated between clusters. Policies travel too: agents enforce a
 * remote cluster's policy only when it is marked mesh-wide, and `policy trace`
 * reads the others to explain a verdict on the far side.
 */
export const REPLICATED_TYPES: StateType[] = ['nodes', 'ip', 'identities', 'services', 'relays', 'policies', 'gateways', 'heartbeat'];

export type { RemoteSpec } from './records/index.js';

/** The codec of each replicated type: kvstoremesh refuses what does not decode. */
const CODECS: Record<StateType, Codec<unknown>> = {
  nodes: nodeCodec,
  ip: endpointCodec,
  identities: identityCodec,
  services: serviceCodec,
  policies: policyCodec,
  relays: relayCodec,
  gateways: gatewayCodec,
  heartbeat: heartbeatCodec,
  namespaces: namespaceCodec, // not replicated (REPLICATED_TYPES): namespace labels travel inside identities
};

/** Per-remote budget (kvstoremesh --max-records-per-remote / --max-bytes-per-remote). */
export interface Budget {
  maxRecords: number;
  maxBytes: number;
}
/** 16 clusters x 1000 nodes x 10 endpoints fit one remote many times over; 1 MiB per 4 records on average. */
export const DEFAULT_BUDGET: Budget = { maxRecords: 250_000, maxBytes: 256 << 20 };

/** Opens a remote's store (connectRemote: its etcd; unit tests: an in-memory store). */
export type RemoteConnector = (spec: RemoteSpec) => { store: KVStore; close(): void };

export const connectRemote: RemoteConnector = (spec) => {
  const client = connectEtcd({ ...spec, dialTimeoutMs: 3000 });
  return { store: new EtcdStore(client), close: () => client.close() };
};

/**
 * One remote's mirror. Every record is decoded and its claims checked against
 * what this cluster pinned about the remote (records/trust.ts) before it is
 * copied; a refused record is reported and the cache keeps the key's previous
 * good value. The remote's records and bytes are held to its budget.
 * (Exported for its unit test; KVStoreMesh runs one per remote.)
 */
export class RemoteReplication {
  /** The remote's store. */
  private readonly source: ReturnType<RemoteConnector>;
  private readonly watchers: ListWatcher[] = [];
  private readonly writer: BatchedWriter;
  readonly synced: Record<string, boolean> = {};
  readonly counts: Record<string, number> = {};
  private readonly since = new Date().toISOString();
  /** Bytes (key + value) of every record copied, by source key: the budget's measure. */
  private readonly held = new Map<string, number>();
  private heldBytes = 0;

  constructor(
    readonly spec: RemoteSpec,
    readonly pinned: PinnedCluster,
    private readonly trust: Trust,
    private readonly local: MirrorTarget,
    private readonly log: Logger,
    private readonly rejections: Rejections,
    private readonly budget: Budget,
    connect: RemoteConnector = connectRemote,
  ) {
    this.source = connect(spec);
    this.writer = new BatchedWriter(local, log, spec.name);
  }

  /** Why the remote may not have this record copied, or undefined. */
  private admit(type: StateType, key: string, value: string): RecordError | undefined {
    const remote = this.spec.name;
    const loc = splitClusterName(statePrefix(type), key);
    if (!loc || loc.cluster !== remote) return new RecordError(CODECS[type].type, key, 'key', `not under ${remote}'s prefix`);
    const r = tryDecode(CODECS[type], key, value);
    if (!r.ok) return r.error;
    const claim = this.claim(type, r.value);
    if (claim) return new RecordError(CODECS[type].type, key, 'claim', claim);
    const size = Buffer.byteLength(key) + Buffer.byteLength(value);
    const prev = this.held.get(key);
    if (prev === undefined && this.held.size >= this.budget.maxRecords) return new RecordError(CODECS[type].type, key, 'budget', `${remote} holds ${this.held.size} records (limit ${this.budget.maxRecords})`);
    if (this.heldBytes - (prev ?? 0) + size > this.budget.maxBytes) return new RecordError(CODECS[type].type, key, 'budget', `${remote} would hold ${this.heldBytes - (prev ?? 0) + size} bytes (limit ${this.budget.maxBytes})`);
    return undefined;
  }

  private claim(type: StateType, v: unknown): string | undefined {
    const remote = this.spec.name;
    switch (type) {
      case 'nodes':
        return this.trust.node(remote, v as Parameters<Trust['node']>[1]);
      case 'ip':
        return this.trust.endpoint(remote, v as Parameters<Trust['endpoint']>[1]);
      case 'identities': {
        const r = this.trust.identity(remote, v as Parameters<Trust['identity']>[1]);
        return typeof r === 'string' ? r : undefined;
      }
      case 'relays': {
        const r = this.trust.relay(remote, v as Parameters<Trust['relay']>[1]);
        return typeof r === 'string' ? r : undefined;
      }
      default:
        return undefined;
    }
  }

  async start(): Promise<void> {
    const remote = this.spec.name;
    const store = this.source.store;
    for (const type of REPLICATED_TYPES) {
      const stale = new Set(await this.local.keys(cachePrefix(type, remote)));
      this.synced[type] = false;
      this.counts[type] = 0;
      const srcPrefix = statePrefix(type, remote);
      const w = new ListWatcher(
        store,
        srcPrefix,
        {
          upsert: (k, v) => {
            const loc = splitClusterName(statePrefix(type), k);
            const dst = loc ? cacheKey(type, remote, loc.name) : undefined;
            const bad = this.admit(type, k, v);
            // A refused update leaves the cached copy (the key's last good value) in place. In the
            // first list after a (re)start or a pin change the cached copy was made under what may
            // no longer hold, so a key refused then stays stale and is deleted with the rest.
            if (dst && (!bad || this.synced[type])) stale.delete(dst);
            if (bad) return this.rejections.add(bad, remote);
            const size = Buffer.byteLength(k) + Buffer.byteLength(v);
            this.heldBytes += size - (this.held.get(k) ?? 0);
            this.held.set(k, size);
            this.writer.put(dst!, v);
          },
          remove: (k) => {
            const loc = splitClusterName(statePrefix(type), k);
            if (!loc) return;
            const size = this.held.get(k);
            if (size !== undefined) {
              this.held.delete(k);
              this.heldBytes -= size;
            }
            this.writer.delete(cacheKey(type, remote, loc.name));
          },
          synced: () => {
            this.counts[type] = w.keys().length;
            if (this.synced[type]) return;
            for (const k of stale) this.writer.delete(k);
            stale.clear();
            // the marker goes out only after every record of the first list is written
            void this.writer.flushed().then(() => this.local.write([[syncedKey(remote, type), JSON.stringify({ at: new Date().toISOString() })]]));
            this.synced[type] = true;
            this.log.info({ remote, type }, 'initial sync complete');
          },
        },
        this.log,
      );
      this.watchers.push(w);
      void w.start();
    }
  }

  status(): RemoteStatus {
    const lastError = this.watchers.map((w) => w.lastError).find(Boolean);
    for (const [i, type] of REPLICATED_TYPES.entries()) this.counts[type] = this.watchers[i]?.keys().length ?? 0;
    const rejected = this.rejections.byTypeReason(this.spec.name);
    const recent = this.rejections.recentOf(this.spec.name).map(({ at, type, key, reason, detail }) => ({ at, type, key, reason, detail }));
    return {
      cluster: this.spec.name,
      connected: this.watchers.length > 0 && this.watchers.every((w) => w.connected),
      synced: { ...this.synced },
      entries: { ...this.counts },
      relists: this.watchers.reduce((n, w) => n + w.relists, 0),
      ...(lastError ? { lastError: lastError.slice(0, 2048) } : {}),
      since: this.since,
      ...(Object.keys(rejected).length ? { rejected, recentRejections: recent } : {}),
      budget: { records: this.held.size, bytes: this.heldBytes, maxRecords: this.budget.maxRecords, maxBytes: this.budget.maxBytes },
    };
  }

  /** Stops replicating; with purge, also deletes the cache and the sync markers. */
  async stop(purge: boolean): Promise<void> {
    await Promise.all(this.watchers.map((w) => w.stop()));
    this.source.close();
    await this.writer.flushed();
    if (purge) await purgeRemote(this.local, this.spec.name);
  }
}

/** Deletes a remote's cache, sync markers and status from the local etcd. */
async function purgeRemote(local: MirrorTarget, remote: string): Promise<void> {
  for (const type of REPLICATED_TYPES) {
    await local.write([[syncedKey(remote, type), null]]);
    await local.deletePrefix(cachePrefix(type, remote));
  }
  await local.write([[remoteStatusKey(remote), null]]);
}

/**
 * Inputs, all operator-written in the local etcd: the remotes (credentials),
 * what was pinned about each at connect, and our own cluster-config. A remote
 * is replicated only while both its entry and its pinned record exist.
 */
export class KVStoreMesh {
  private readonly remotes = new Map<string, RemoteReplication>();
  private readonly specs = new Map<string, RemoteSpec>();
  private readonly pins = new Map<string, PinnedCluster>();
  private readonly watchers: ListWatcher[] = [];
  private statusTimer: NodeJS.Timeout | undefined;
  private lease: MeshLease | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private readonly collector: IdentityCollector;
  /** Where the remotes' mirrors write: the local etcd. */
  private readonly mirror: MirrorTarget;
  readonly rejections: Rejections;
  private trust: Trust | undefined;
  /** Serialises remote starts and stops (watch events may arrive back to back). */
  private chain: Promise<void> = Promise.resolve();

  /**
   * local: the cluster's own etcd (etcdMeshLocal) or a stand-in. identityGcMs: how often unreferenced identities
   * are swept (deleted on the second sweep that finds them unused). opts.statusMs: how often the status and the
   * heartbeat are written (2 s); opts.connect: how remotes are opened (connectRemote, their etcds).
   */
  constructor(
    readonly cluster: string,
    private readonly local: MeshLocal,
    private readonly log: Logger,
    private readonly identityGcMs = 60_000,
    private readonly budget: Budget = DEFAULT_BUDGET,
    private readonly opts: { statusMs?: number; connect?: RemoteConnector } = {},
  ) {
    this.mirror = local.mirror;
    this.collector = new IdentityCollector(local.identities, cluster, log);
    this.rejections = new Rejections(log);
  }

  async start(): Promise<void> {
    this.lease = this.local.lease(15);
    const store = this.local.store;
    const nameOf = (prefix: string) => (k: string) => k.slice(prefix.length);
    this.watchers.push(
      new ListWatcher(store, clusterConfigKey(this.cluster), decoded(clusterConfigCodec, {
        upsert: (_k, cfg) => {
          if (cfg.name !== this.cluster) return;
          this.trust ??= new Trust(cfg.name, cfg.id, cfg.podCIDRs, cfg.maxConnectedClusters ?? 255);
          this.trust.setLocalCIDRs(cfg.podCIDRs);
          this.refresh(...this.specs.keys());
        },
        remove: () => undefined, // keep the last config: removing it is no reason to trust more
      }, this.rejections), this.log),
      new ListWatcher(store, pinnedPrefix(), decoded(pinnedClusterCodec, {
        upsert: (k, p) => {
          this.pins.set(nameOf(pinnedPrefix())(k), p);
          this.refresh(p.name);
        },
        remove: (k) => {
          this.pins.delete(nameOf(pinnedPrefix())(k));
          // a pin refused for its id may hold now that this one is gone: every remote is looked at again
          this.refresh(...this.specs.keys());
        },
      }, this.rejections, nameOf(pinnedPrefix())), this.log),
      new ListWatcher(store, remotesPrefix(), decoded(remoteSpecCodec, {
        upsert: (k, spec) => {
          this.specs.set(nameOf(remotesPrefix())(k), spec);
          this.refresh(spec.name);
        },
        remove: (k) => {
          const name = nameOf(remotesPrefix())(k);
          this.specs.delete(name);
          this.chain = this.chain.then(() => this.dropRemote(name, true));
        },
      }, this.rejections, nameOf(remotesPrefix())), this.log),
    );
    for (const w of this.watchers) void w.start();
    this.statusTimer = setInterval(() => void this.publishStatus(), this.opts.statusMs ?? 2000);
    this.statusTimer.unref();
    // The cluster's identity garbage collector lives here: one per cluster.
    this.gcTimer = setInterval(() => void this.collector.sweep().catch((err: Error) => this.log.warn({ err: err.message }, 'identity sweep failed')), this.identityGcMs);
    this.gcTimer.unref();
  }

  /** Brings each named remote's replication in line with its spec and pin. */
  private refresh(...names: string[]): void {
    for (const name of names) this.chain = this.chain.then(() => this.sync(name)).catch((err: Error) => this.log.error({ remote: name, err: err.message }, 'replication change failed'));
  }

  private async sync(name: string): Promise<void> {
    const spec = this.specs.get(name);
    const pin = this.pins.get(name);
    const existing = this.remotes.get(name);
    if (!spec || !pin || !this.trust || name === this.cluster) {
      if (spec && !pin) this.log.error({ remote: name }, 'remote has no pinned record (wiremesh/mesh/v1/clusters/): not replicating; run clustermesh connect again');
      if (name === this.cluster) this.log.error({ remote: name }, 'a cluster cannot connect to itself');
      // without its pin nothing the remote sent may stay: purge its cache
      if (existing) await this.dropRemote(name, !pin);
      return;
    }
    if (existing && JSON.stringify(existing.spec) === JSON.stringify(spec) && JSON.stringify(existing.pinned) === JSON.stringify(pin)) return;
    if (existing) await this.dropRemote(name, false);
    // the trust a replication checks against: our cluster and this remote as pinned
    const refused = this.trust.pin(pin);
    if (refused) {
      this.rejections.add(new RecordError('pinned-cluster', pinnedKey(name), 'conflict', refused), name);
      await purgeRemote(this.mirror, name); // what it sent under an earlier pin may not stay either
      return;
    }
    const r = new RemoteReplication(spec, pin, this.trust, this.mirror, this.log, this.rejections, this.budget, this.opts.connect);
    this.remotes.set(name, r);
    this.log.info({ remote: name, endpoints: spec.endpoints, id: pin.id }, 'replicating remote cluster');
    await r.start().catch((err) => this.log.error({ remote: name, err: (err as Error).message }, 'replication start failed'));
  }

  private async dropRemote(name: string, purge: boolean): Promise<void> {
    const r = this.remotes.get(name);
    if (!r) return;
    this.remotes.delete(name);
    this.trust?.unpin(name);
    this.log.info({ remote: name, purge }, 'stopped replicating remote cluster');
    await r.stop(purge);
  }

  status(): RemoteStatus[] {
    return [...this.remotes.values()].map((r) => r.status());
  }

  private heartbeats = 0;

  private async publishStatus(): Promise<void> {
    if (!this.lease) return;
    // Remote agents see this through their own kvstoremesh: its age on arrival is the replication lag.
    await this.lease.put(stateKey('heartbeat', this.cluster, 'kvstoremesh'), JSON.stringify({ at: Date.now(), seq: ++this.heartbeats })).catch(() => undefined);
    for (const s of this.status()) await this.lease.put(remoteStatusKey(s.cluster), JSON.stringify(s)).catch(() => undefined);
  }

  async stop(): Promise<void> {
    if (this.statusTimer) clearInterval(this.statusTimer);
    if (this.gcTimer) clearInterval(this.gcTimer);
    await Promise.all(this.watchers.map((w) => w.stop()));
    await this.chain;
    await Promise.all([...this.remotes.keys()].map((n) => this.dropRemote(n, false)));
    this.lease?.release();
  }
}
