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
 * - At rest nothing is written (issue 16: periodic per-pair writes made a mesh
 *   of K clusters write O(K^2) at rest). The status of a remote is written when
 *   it changes (at most once per status interval), under this process's lease;
 *   the heartbeat (liveness of this kvstoremesh, replicated to the remotes) is
 *   written at start and about every heartbeat interval (5 min ± 10 %: meshheartbeat.ts), and lives by its
 *   lease's keep-alives (every 20 s: LEASE_TTL_S), which etcd answers on the
 *   leader without a raft commit.
 *   Sync lag is measured here, not by a periodic record: `behindSince` in the
 *   status is when this cluster's copy of the remote last stopped being known
 *   current (not yet synced, watches down, or a change received and not written
 *   locally for over LAG_GRACE_MS); absent when the copy is current.
 */
import type { Logger } from '../log.js';
import { clusterConfigKey, pinnedKey, pinnedPrefix, remoteStatusKey, remotesPrefix, stateKey } from './keys.js';
import { decoded, ListWatcher } from './kvstore.js';
import type { MeshLease, MeshLocal } from './mirrorwriter.js';
import { IdentityCollector, type SweepStats } from '../identity/allocator.js';
import { clusterConfigCodec, pinnedClusterCodec, RecordError, Rejections, remoteSpecCodec, Trust, type PinnedCluster, type RemoteSpec, type RemoteStatus } from './records/index.js';
import { DEFAULT_BUDGET, RemoteReplication, type Budget, type RemoteConnector } from './replication.js';
import { DEFAULT_COALESCER, TxnCoalescer, type CoalescerOptions } from './txncoalescer.js';
import { doublingDelay } from './backoff.js';
import { MeshHeartbeat } from './meshheartbeat.js';
import { cachedRemotes } from './cachedremotes.js';
import { PurgeRetries } from './purgeretries.js';
import { Purges } from './purges.js';
import { within } from './within.js';
import { publishStatuses } from './statusputs.js';
import { checkFenceGrant, UNFENCED_HINT, type UnfencedSink } from './unfenced.js';
import { LEASE_TTL_S, START_READ_DEADLINE_MS, STATUS_PUT_DEADLINE_MS } from './meshdeadlines.js';

export { LEASE_TTL_S, START_READ_DEADLINE_MS, STATUS_PUT_DEADLINE_MS } from './meshdeadlines.js';

export { connectRemote, DEFAULT_BUDGET, LAG_GRACE_MS, REPLICATED_TYPES, RemoteReplication, type Budget, type RemoteConnector } from './replication.js';
export type { RemoteSpec } from './records/index.js';

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
  /** The lease the heartbeat and the statuses live by, and the heartbeat (meshheartbeat.ts). */
  private readonly heartbeat: MeshHeartbeat;
  /** The status last written per remote (JSON): a status is written only when it changed. */
  private readonly written = new Map<string, string>();
  private gcTimer: NodeJS.Timeout | undefined;
  private readonly collector: IdentityCollector;
  /** Where the remotes' mirrors write: the local etcd, every remote's writes of a short window in one transaction. */
  private readonly mirror: TxnCoalescer;
  readonly rejections: Rejections;
  private trust: Trust | undefined;
  /**
   * Per remote replicated, its contested pod CIDRs (Trust.contestedOf) when it started: its ingest refused records
   * there. A pin's (or our config's) pod CIDRs changing them starts it again (recontest), listing its records anew.
   */
  private readonly contestedAt = new Map<string, string>();
  /** Serialises remote starts and stops (watch events may arrive back to back); never rejects (enqueue). */
  private chain: Promise<void> = Promise.resolve();
  /**
   * Status puts in flight, by remote: a remote's drop waits for its own before purging, so that no status put
   * lands after the purge deleted the key (it would resurrect the status of a cluster no longer connected).
   */
  private readonly statusPuts = new Map<string, Promise<void>>();
  private publishing = false;
  /**
   * Failures kept out of the chain of remote starts and stops and out of the status timer: logged and counted
   * (exported by KVStoreMeshMetrics, docs/metrics.md). chain: steps of the chain that threw (failed purges among
   * them); status: status passes that threw; statusPut: status transactions (statusputs.ts) that failed or
   * outran STATUS_PUT_DEADLINE_MS; start: replication starts that failed (each tried again, opts.startRetryMs); lease: leases lost (or never
   * granted: the local etcd down), each taken again after opts.leaseRetryMs; fenced: current replications whose write
   * failed its fence (fence.ts: a purge landed after they began), each started again; unfenced: purges and
   * replication starts run without the fence, the role lacking the epochs grant (unfenced.ts).
   */
  readonly failures = { chain: 0, status: 0, statusPut: 0, start: 0, lease: 0, fenced: 0, unfenced: 0 };
  /** Local mirror transactions given up on past the coalescer's deadline (TxnCoalescer.stats.late), a total. */
  get lateWrites(): number {
    return this.mirror.stats.late;
  }
  /** The identity collector's sweeps: done, failed, given up on at their deadline, skipped (allocator.ts). */
  get identitySweeps(): SweepStats {
    return this.collector.stats;
  }
  /** Remotes whose purge failed, tried again with a backoff (purge(), purgeretries.ts). */
  private readonly unpurged: PurgeRetries;
  /** Replications whose start failed, by remote (bounded by the remotes): the next try's timer, failures in a row. */
  private readonly restarts = new Map<string, { timer: NodeJS.Timeout; failed: number }>();
  /**
   * A dropped replication's mirror write still in flight when it was abandoned, by remote, until it settled: the
   * remote's next replication starts after it (a start reads the cache, so it sees what landed late), else that
   * late write could overwrite the new replication's copy or put back a key the remote deleted meanwhile.
   */
  private readonly landings = new Map<string, Promise<void>>();
  /** Purge attempts, each within statusPutMs; one that outran it is waited for like a landing (purges.ts). */
  private readonly purges: Purges;

  /**
   * local: the cluster's own etcd (etcdMeshLocal) or a stand-in. identityGcMs: how often unreferenced identities
   * are swept (deleted on the second sweep that finds them unused). opts.statusMs: how often each remote's status
   * is looked at, and written if it changed (2 s); opts.heartbeatMs: how often the heartbeat is written (5 min;
   * it lives by its lease meanwhile); opts.connect: how remotes are opened (connectRemote, their etcds);
   * opts.txn: how the remotes' writes are coalesced into local transactions (txncoalescer.ts: window, bounds);
   * opts.purgeRetryMs: how long after a disconnected remote's purge failed it is tried again, doubling per failure
   * in a row up to 60 s (5 s);
   * opts.startRetryMs: the pause before a failed replication start is tried again, doubling per failure in a row
   * up to its max (1 s to 60 s: a remote whose start keeps failing is tried at most once a minute);
   * opts.statusPutMs: how long a status put may take before it counts as failed (STATUS_PUT_DEADLINE_MS);
   * opts.startReadMs: how long a start's read of the cache may take (START_READ_DEADLINE_MS);
   * opts.leaseRetryMs: the pause before a lost lease is taken again, doubling per loss in a row (200 ms to 5 s);
   * opts.leaseTtlS: the lease's TTL in seconds (LEASE_TTL_S); opts.maxIdentityRefsPerNode: identity refs.ts's bound.
   */
  constructor(
    readonly cluster: string,
    private readonly local: MeshLocal,
    private readonly log: Logger,
    private readonly identityGcMs = 60_000,
    private readonly budget: Budget = DEFAULT_BUDGET,
    private readonly opts: { statusMs?: number; heartbeatMs?: number; connect?: RemoteConnector; txn?: Partial<CoalescerOptions>; purgeRetryMs?: number; startRetryMs?: { first: number; max: number }; statusPutMs?: number; startReadMs?: number; leaseRetryMs?: { first: number; max: number }; leaseTtlS?: number; maxIdentityRefsPerNode?: number } = {},
  ) {
    this.mirror = new TxnCoalescer(local.mirror, { ...DEFAULT_COALESCER, ...opts.txn });
    // a late purge may have deleted the status of the remote's next replication: written again on the next tick
    this.purges = new Purges(this.mirror, () => this.statusPutMs, (name) => void this.written.delete(name), this.unfenced);
    this.unpurged = new PurgeRetries({ first: opts.purgeRetryMs ?? 5000, max: 60_000 }, (name) => this.retryPurge(name));
    this.rejections = new Rejections(log);
    this.collector = new IdentityCollector(local.identities, cluster, log, this.rejections, undefined, opts.maxIdentityRefsPerNode);
    const leaseOpts = { ttlS: opts.leaseTtlS ?? LEASE_TTL_S, retryMs: opts.leaseRetryMs ?? { first: 200, max: 5000 }, everyMs: opts.heartbeatMs ?? 300_000 };
    this.heartbeat = new MeshHeartbeat(local, stateKey('heartbeat', cluster, 'kvstoremesh'), log, leaseOpts, {
      taken: () => this.written.clear(), // the statuses went with the old lease: all are written again on the next tick
      lost: () => void this.failures.lease++,
    });
  }

  private stopped = false;

  /** A purge or a replication start that ran without the fence (unfenced.ts): loud, counted. */
  private readonly unfenced: UnfencedSink = (remote, what) => {
    this.failures.unfenced++;
    this.log.error({ remote, what }, UNFENCED_HINT);
  };

  async start(): Promise<void> {
    this.heartbeat.start();
    void checkFenceGrant(this.mirror, this.log); // said at once, not only at the first purge or start
    const store = this.local.store;
    const nameOf = (prefix: string) => (k: string) => k.slice(prefix.length);
    this.watchers.push(
      new ListWatcher(store, clusterConfigKey(this.cluster), decoded(clusterConfigCodec, {
        upsert: (_k, cfg) => {
          if (cfg.name !== this.cluster) return;
          this.trust ??= new Trust(cfg.name, cfg.id, cfg.podCIDRs, cfg.maxConnectedClusters ?? 255);
          this.trust.setLocalCIDRs(cfg.podCIDRs);
          this.trust.setLocalUnderlay(cfg.underlayCIDRs);
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
          this.enqueue(name, 'replication stop', () => this.disconnect(name));
        },
      }, this.rejections, nameOf(remotesPrefix())), this.log),
    );
    for (const w of this.watchers) void w.start();
    // once both the pins and the remotes were listed in full (a partial view must not purge a live remote)
    const [, pins, remotes] = this.watchers;
    void Promise.all([pins!.firstSync(), remotes!.firstSync()]).then(() => this.sweepOrphans());
    this.statusTimer = setInterval(
      () =>
        void this.publishStatus().catch((err: Error) => {
          this.failures.status++;
          this.log.error({ err: err.message }, 'remote status publication failed');
        }),
      this.opts.statusMs ?? 2000,
    );
    this.statusTimer.unref();
    // The cluster's identity garbage collector lives here: one per cluster.
    this.gcTimer = setInterval(() => void this.collector.sweep().catch((err: Error) => this.log.warn({ err: err.message }, 'identity sweep failed')), this.identityGcMs);
    this.gcTimer.unref();
  }

  /** Brings each named remote's replication in line with its spec and pin. */
  private refresh(...names: string[]): void {
    for (const name of names) this.enqueue(name, 'replication change', () => this.sync(name));
  }

  /** Runs `step` after the steps queued before it; a failure is logged and counted, never thrown (an unhandled rejection ends the process). */
  private enqueue(name: string, what: string, step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch(this.failed(name, what));
  }

  private failed(name: string, what: string): (err: Error) => void {
    return (err) => {
      this.failures.chain++;
      this.log.error({ remote: name, err: err.message }, `${what} failed`);
    };
  }

  private async sync(name: string): Promise<void> {
    const spec = this.specs.get(name);
    const pin = this.pins.get(name);
    const existing = this.remotes.get(name);
    if (!spec || !pin || !this.trust || name === this.cluster) {
      if (spec && !pin) this.log.error({ remote: name }, 'remote has no pinned record (wiremesh/mesh/v1/clusters/): not replicating; run clustermesh connect again');
      if (name === this.cluster) this.log.error({ remote: name }, 'a cluster cannot connect to itself');
      // without its pin nothing the remote sent may stay: purge its cache
      if (existing) await (pin ? this.dropRemote(name, false) : this.purge(name, () => this.dropRemote(name, true)));
      return;
    }
    const sameContested = this.contestedAt.get(name) === this.trust.contestedOf(name);
    if (existing && sameContested && JSON.stringify(existing.spec) === JSON.stringify(spec) && JSON.stringify(existing.pinned) === JSON.stringify(pin)) return;
    // pinned while its old replication stops (≥ one txn interval): else its contested ranges are open to others
    if (existing) await this.dropRemote(name, false, true);
    // the trust a replication checks against: our cluster and this remote as pinned
    const refused = this.trust.pin(pin);
    if (refused) {
      this.unpin(name);
      this.rejections.add(new RecordError('pinned-cluster', pinnedKey(name), 'conflict', refused), name);
      await this.purge(name, () => this.purges.run(name)); // what it sent under an earlier pin may not stay either
      return;
    }
    const r: RemoteReplication = new RemoteReplication(spec, pin, this.trust, this.mirror, this.log, this.rejections, this.budget, this.opts.connect, () => this.refence(name, r), this.unfenced);
    this.remotes.set(name, r);
    this.contestedAt.set(name, this.trust.contestedOf(name));
    this.recontest();
    this.log.info({ remote: name, endpoints: spec.endpoints, id: pin.id }, 'replicating remote cluster');
    await this.startReplication(name, r, 0);
  }

  /**
   * Pins changed (one in, one out): every other remote whose contested pod CIDRs moved is looked at again (queued,
   * so it reads the pins once the change is done): its ingest refused against the old ones. Agents re-check alike.
   */
  private recontest(): void {
    if (this.trust && !this.stopped) for (const [n, at] of this.contestedAt) if (at !== this.trust.contestedOf(n)) this.refresh(n);
  }

  /** The remote's pin leaves the trust; others whose contested pod CIDRs it moved are looked at again. */
  private unpin(name: string): void {
    this.trust?.unpin(name);
    this.recontest();
  }

  /**
   * r's writes failed their fence (fence.ts): a purge of the remote landed after r read the epoch (one given up on
   * at its deadline and applied late). What r copied is gone: r is dropped and the remote started again, reading
   * the epoch and the cache anew.
   */
  private refence(name: string, r: RemoteReplication): void {
    this.enqueue(name, 'replication restart after a fenced write', async () => {
      if (this.remotes.get(name) !== r || this.stopped) return;
      this.failures.fenced++;
      await this.dropRemote(name, false, true); // pinned across the restart, as in sync
      await this.sync(name);
      if (!this.remotes.has(name)) this.unpin(name); // not started again
    });
  }

  /**
   * Starts r; when that fails (the local etcd unavailable for its read of the cache), counts it and tries again
   * after a pause (startRetryMs, doubling), through the chain, as long as r is still the remote's replication.
   * Meanwhile the status says so (lastError, not connected, behind).
   */
  private async startReplication(name: string, r: RemoteReplication, failed: number): Promise<void> {
    try {
      const prev = this.landings.get(name);
      // not waited for without a bound (a hung local etcd): a start failure, tried again with the backoff below
      if (prev && !(await within(prev.then(() => true), this.statusPutMs, false))) throw new Error("the previous replication's mirror write is still in flight");
      const purging = this.purges.pending(name); // a purge past its deadline would delete what this one writes
      if (purging && !(await within(purging.then(() => true), this.statusPutMs, false))) throw new Error('a purge of the remote is still in flight');
      // its read of the cache against a hung local etcd: given up on, tried again later (the same read, replication.ts)
      const readMs = this.opts.startReadMs ?? START_READ_DEADLINE_MS;
      if (!(await within(r.start().then(() => true), readMs, false))) throw new Error(`local cache read timed out (no answer within ${readMs} ms)`);
      this.restarts.delete(name);
    } catch (err) {
      this.failures.start++;
      r.startFailed((err as Error).message); // the status says why (a hung read left it at "not connected")
      const delay = doublingDelay(failed, this.opts.startRetryMs ?? { first: 1000, max: 60_000 });
      this.log.error({ remote: name, err: (err as Error).message, retryMs: delay }, 'replication start failed; trying again');
      const timer = setTimeout(() => {
        this.enqueue(name, 'replication start', async () => {
          if (this.remotes.get(name) === r && !this.stopped) await this.startReplication(name, r, failed + 1);
        });
      }, delay);
      timer.unref();
      this.restarts.set(name, { timer, failed: failed + 1 });
    }
  }

  /**
   * After a restart: purges every remote the local etcd holds anything of (cache, markers, status) that is not
   * replicated by this run: no entry or no pin (as sync()), or ourselves. A remote whose pin is refused is purged by
   * sync(). Each through purge(), so a failure is retried like any purge.
   */
  private sweepOrphans(): void {
    if (!this.stopped) this.enqueue('*', 'purge of the remotes no longer connected', () => this.purgeOrphans());
  }

  private async purgeOrphans(): Promise<void> {
    const names = await cachedRemotes(this.mirror).catch((err: Error) => {
      // the local etcd unavailable for the look: looked at again, like a failed purge
      setTimeout(() => this.sweepOrphans(), this.opts.purgeRetryMs ?? 5000).unref();
      throw err;
    });
    for (const name of names) {
      if (this.remotes.has(name) || (this.specs.has(name) && this.pins.has(name) && name !== this.cluster)) continue;
      this.log.info({ remote: name }, 'purging a remote no longer connected (left by an earlier run)');
      await this.purge(name, () => this.purges.run(name)).catch(this.failed(name, 'purge of a remote'));
    }
  }

  /** The operator disconnected the remote: stop and purge (nothing replicated: purge what an earlier failure left). */
  private disconnect(name: string): Promise<void> {
    return this.purge(name, () => (this.remotes.has(name) ? this.dropRemote(name, true) : this.purges.run(name)));
  }

  /**
   * Runs a step that purges the remote's state (cache, markers, status); when it fails, the purge is tried again
   * every purgeRetryMs until it holds or the remote is replicated again (its start deletes what is stale). Every
   * purge goes through here (disconnect, pin removed, pin refused): a failed one never leaves state for good.
   */
  private async purge(name: string, step: () => Promise<void>): Promise<void> {
    try {
      await step();
      this.unpurged.held(name);
    } catch (err) {
      if (!this.stopped) this.unpurged.failed(name);
      throw err;
    }
  }

  /** A queued purge retry (purgeretries.ts); it fails at once while the remote's last attempt is in flight. */
  private retryPurge(name: string): void {
    this.enqueue(name, 'purge of a remote', async () => {
      if (!this.unpurged.dequeued(name) || this.stopped) return;
      if (this.remotes.has(name)) return this.unpurged.held(name);
      await this.purge(name, () => this.purges.run(name, false));
    });
  }

  /** Stops the remote's replication; `restart`: it starts again at once, so its pin stays in the trust. */
  private async dropRemote(name: string, purge: boolean, restart = false): Promise<void> {
    const r = this.remotes.get(name);
    if (!r) return;
    this.remotes.delete(name);
    this.written.delete(name);
    clearTimeout(this.restarts.get(name)?.timer);
    this.restarts.delete(name);
    this.contestedAt.delete(name);
    if (!restart) this.unpin(name);
    this.log.info({ remote: name, purge }, 'stopped replicating remote cluster');
    // removal is final: publishStatus writes nothing for it from here on, and a put already sent lands first;
    // one that outran its deadline (a hung local etcd) does not hold the chain: the purge goes on, and is done
    // again once that put settled, in case it landed after
    const late = this.statusPuts.get(name);
    const settled = late && (await within(late.then(() => true), this.statusPutMs, false));
    // the mirror's writes: with a purge, abandoned (not waited for: a write the local etcd refuses for good would
    // hold the chain); without, waited for at most statusPutMs. A write in flight then reaching etcd after a purge
    // (this one or a later one) fails its fence (fence.ts): it may land only before, where the purge deletes it.
    const { landing } = await r.stop(purge, this.statusPutMs);
    if (landing) {
      this.landings.set(name, landing);
      const done = () => void (this.landings.get(name) === landing && this.landings.delete(name));
      void landing.then(done, done);
    }
    // a late status put may land after the purge, this one or the caller's (a pin refused after a restart): purged
    // again once it settled, at once, when no replication of the remote is current. Not the mirror's landing: its
    // writes compare the remote's epoch, which every purge moves (fence.ts), so none can land after a purge.
    if (late && !settled) void late.then(() => void (!this.remotes.has(name) && !this.stopped && this.unpurged.again(name)));
    if (purge) await this.purges.run(name);
  }

  /** How long a status put may take (ms), and a stop without purge wait for the mirror's writes. */
  get statusPutMs(): number {
    return this.opts.statusPutMs ?? STATUS_PUT_DEADLINE_MS;
  }

  /** For metrics: remotes whose purge is waiting to be tried again, and replications waiting for a start retry. */
  pending(): { unpurged: number; startRetries: number } {
    return { unpurged: this.unpurged.size, startRetries: this.restarts.size };
  }

  status(): RemoteStatus[] {
    return [...this.remotes.values()].map((r) => r.status());
  }

  /** Writes each remote's status that changed since it was last written (statusputs.ts). One pass at a time. */
  private async publishStatus(): Promise<void> {
    const lease = this.heartbeat.lease;
    if (!lease || this.publishing) return;
    this.publishing = true;
    try {
      await publishStatuses(lease, { remotes: this.remotes, written: this.written, inFlight: this.statusPuts, deadlineMs: this.statusPutMs, current: (l) => this.heartbeat.lease === l, failed: () => void this.failures.statusPut++ });
    } finally {
      this.publishing = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.heartbeat.stop();
    if (this.statusTimer) clearInterval(this.statusTimer);
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.collector.stop(); // a sweep in flight sends no further delete, and its deadline holds no exit
    this.unpurged.stop();
    for (const { timer } of this.restarts.values()) clearTimeout(timer);
    await Promise.all(this.watchers.map((w) => w.stop()));
    await this.chain;
    await Promise.all([...this.remotes.keys()].map((n) => this.dropRemote(n, false).catch(this.failed(n, 'replication stop'))));
    this.mirror.stop();
    this.heartbeat.release();
  }
}
