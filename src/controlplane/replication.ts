/**
 * One remote cluster's mirror (RemoteReplication) and what it needs: the
 * replicated types and their codecs, the per-remote budget, how a remote's
 * store is opened (the purge of what it left: purges.ts). KVStoreMesh (kvstoremesh.ts)
 * runs one per connected remote.
 */
import type { Logger } from '../log.js';
import { cacheKey, cachePrefix, epochKey, splitClusterName, statePrefix, syncedKey, syncedPrefix, type StateType } from './keys.js';
import { connectEtcd, EtcdStore, ListWatcher, refusedInto, valueDigest, type KVStore } from './kvstore.js';
import { cachedCopies } from './cachedcopies.js';
import { BatchedWriter, type MirrorOps, type MirrorTarget } from './mirrorwriter.js';
import { markerValue, markerWatermark, sameIncarnation } from './watermark.js';
import { isPermissionDenied, UNFENCED_HINT, type UnfencedSink } from './unfenced.js';
import { within } from './within.js';
import { NodePlaces } from './nodeplaces.js';
import {
  endpointCheckCodec,
  gatewayCodec,
  heartbeatCodec,
  namespaceCodec,
  identityCodec,
  nodeCheckCodec,
  policyCodec,
  RecordError,
  Rejections,
  relayCodec,
  STATUS_REJECTION_BYTES,
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

/**
 * The codec of each replicated type: kvstoremesh refuses what does not decode. Nodes and endpoints without the
 * readers' compaction (their check codecs): the decoded record is only checked here, the value text is copied.
 */
const CODECS: Record<StateType, Codec<unknown>> = {
  nodes: nodeCheckCodec,
  ip: endpointCheckCodec,
  identities: identityCodec,
  services: serviceCodec,
  policies: policyCodec,
  relays: relayCodec,
  gateways: gatewayCodec,
  heartbeat: heartbeatCodec,
  namespaces: namespaceCodec, // not replicated (REPLICATED_TYPES): namespace labels travel inside identities
};

/**
 * Per-remote budget (kvstoremesh --max-records-per-remote / --max-bytes-per-remote / --max-nodes-per-remote): the
 * bound on a remote cluster as a whole in this cluster, for every agent at once (agents read remotes only from
 * this cache). Nodes apart: each admitted node is a tunnel, routes and a peer in every agent. Endpoints per node
 * are the agents' own bound (src/agent/endpointquota.ts: it holds for the local cluster's nodes too).
 */
export interface Budget {
  maxRecords: number;
  maxBytes: number;
  maxNodes: number;
}
/** 16 clusters x 1000 nodes x 10 endpoints fit one remote many times over; 1 MiB per 4 records on average; Kubernetes' largest supported cluster, 5,000 nodes. */
export const DEFAULT_BUDGET: Budget = { maxRecords: 250_000, maxBytes: 256 << 20, maxNodes: 5000 };

/** Opens a remote's store (connectRemote: its etcd; unit tests: an in-memory store). */
export type RemoteConnector = (spec: RemoteSpec) => { store: KVStore; close(): void };

/** A change received and not yet written locally for this long makes a mirror "behind" (its usual hop is milliseconds). */
export const LAG_GRACE_MS = 1000;

/**
 * A remote etcd whose packets are dropped (a blackhole: no reset, no FIN) leaves a watch open and silent for as
 * long as TCP keeps the connection (hours): its status would say connected while nothing arrives. A ping every
 * 15 s while a watch is open (grpc-js pings on a timer, not after silence), answered within 20 s, bounds that
 * to ≤ 35 s (a remote etcd must allow it: --grpc-keepalive-min-time ≤ 15 s, default 5 s); the timeout is far above any synchronous pass of
 * kvstoremesh's thread (a page of 5,000 records), so its own load is not taken for an outage. The cache keeps
 * the remote's last good state meanwhile, as for any outage.
 */
export const REMOTE_KEEPALIVE = { timeMs: 15_000, timeoutMs: 20_000 };

export const connectRemote: RemoteConnector = (spec) => {
  const client = connectEtcd({ ...spec, dialTimeoutMs: 3000, keepalive: REMOTE_KEEPALIVE });
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
  private readonly startedAt = Date.now();
  /** When the watches were first seen down (status ticks), while they are. */
  private downSince: number | undefined;
  /** Bytes (key + value) of every record copied, by source key: the budget's measure. */
  private readonly held = new Map<string, number>();
  private heldBytes = 0;
  /** How many of `held` are node records (the budget's maxNodes), and the first list's places kept for cached ones. */
  private readonly nodes: NodePlaces;
  /** Why the last start failed, until one succeeds (status: lastError); since when starts fail in a row (ms). */
  private startError: string | undefined;
  private startFailingSince: number | undefined;
  /** The start's read of the cache while in flight; whether stop() was called (a late read then starts nothing). */
  private starting: Promise<void> | undefined;
  private stopped = false;
  /** Set when a write failed its fence (fence.ts): the remote was purged after this replication began. */
  private fenced = false;
  /** Set when this replication began without a fence: the role lacks the epochs grant (unfenced.ts). */
  private unfenced = false;
  /** Per synced type: when its first list was mirrored (its marker's `at`), the watermark last written (watermark.ts). */
  private readonly marks = new Map<StateType, { at: string; written?: string }>();
  /**
   * Per type (REPLICATED_TYPES' order): the highest create revision handed over. A watermark moves only past a key
   * created since the last one written: updates and deletes alone change no key's create revision, so their
   * transactions carry no marker (an agent sees a marker event only with a new key).
   */
  private readonly newest: number[] = REPLICATED_TYPES.map(() => 0);
  /** The watermarks of the transaction about to leave, by marker key (WriterProgress: at most one per type). */
  private readonly offered = new Map<string, { type: StateType; revision: string }>();
  /**
   * Relay offers copied with CIDRs dropped: key -> the drop's text counted. Counted once per (key, text), as
   * Admission.report does, not on every copy of the offer (each change of it); a key deleted, or copied with
   * nothing dropped, is counted anew. Bounded by the remote's relay keys held.
   */
  private readonly relayDrops = new Map<string, string>();

  constructor(
    readonly spec: RemoteSpec,
    readonly pinned: PinnedCluster,
    private readonly trust: Trust,
    private readonly local: MirrorTarget,
    private readonly log: Logger,
    private readonly rejections: Rejections,
    private readonly budget: Budget,
    connect: RemoteConnector = connectRemote,
    /** Told once when a write failed its fence: this replication's writes stopped; it must start again (KVStoreMesh). */
    private readonly onFenced: () => void = () => undefined,
    /** Told when this replication begins without a fence for want of the epochs grant (unfenced.ts). */
    private readonly onUnfenced: UnfencedSink = () => undefined,
  ) {
    this.source = connect(spec);
    this.nodes = new NodePlaces(spec.name, budget.maxNodes);
    this.writer = new BatchedWriter(local, log, spec.name, undefined, undefined, { ops: () => this.progressOps(), written: (ops) => this.progressWritten(ops) });
    // the status of a replication not started yet (or whose start failed) names every type, none synced
    for (const type of REPLICATED_TYPES) {
      this.synced[type] = false;
      this.counts[type] = 0;
    }
  }

  /** Each synced type's marker with its watcher's revision, where it moved since last written (watermark.ts). */
  private progressOps(): MirrorOps {
    this.offered.clear();
    const ops: Array<[string, string]> = [];
    for (const [i, type] of REPLICATED_TYPES.entries()) {
      const mark = this.marks.get(type);
      const revision = this.watchers[i]?.revision;
      if (!mark || revision === undefined || revision === mark.written) continue;
      if (mark.written !== undefined && this.newest[i]! <= Number(mark.written)) continue; // every key created is at or below it
      const key = syncedKey(this.spec.name, type);
      this.offered.set(key, { type, revision });
      ops.push([key, markerValue(mark.at, revision)]);
    }
    return ops;
  }

  private progressWritten(ops: MirrorOps): void {
    for (const [key] of ops) {
      const o = this.offered.get(key);
      const mark = o && this.marks.get(o.type);
      if (mark) mark.written = o.revision;
    }
  }

  /**
   * Why the remote may not have this record (located at `loc`, `size` bytes of key and value) copied, or undefined.
   * `reserved`: node places kept for cached node copies the first list has not reached yet (0 otherwise).
   */
  private admit(type: StateType, key: string, value: string, loc: { cluster: string } | null, size: number, reserved = 0): RecordError | undefined {
    const remote = this.spec.name;
    if (!loc || loc.cluster !== remote) return new RecordError(CODECS[type].type, key, 'key', `not under ${remote}'s prefix`);
    const r = tryDecode(CODECS[type], key, value);
    if (!r.ok) return r.error;
    const claim = this.claim(type, key, r.value);
    if (claim) return new RecordError(CODECS[type].type, key, 'claim', claim);
    const prev = this.held.get(key);
    if (prev === undefined && this.held.size >= this.budget.maxRecords) return new RecordError(CODECS[type].type, key, 'budget', `${remote} holds ${this.held.size} records (limit ${this.budget.maxRecords})`);
    if (this.heldBytes - (prev ?? 0) + size > this.budget.maxBytes) return new RecordError(CODECS[type].type, key, 'budget', `${remote} would hold ${this.heldBytes - (prev ?? 0) + size} bytes (limit ${this.budget.maxBytes})`);
    return prev === undefined && type === 'nodes' ? this.nodes.refuse(key, reserved) : undefined;
  }

  private claim(type: StateType, key: string, v: unknown): string | undefined {
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
        // copied with what it may not relay (every agent drops that again): counted here too, for `clustermesh status`
        const r = this.trust.relay(remote, v as Parameters<Trust['relay']>[1]);
        const dropped = typeof r === 'string' ? undefined : r.dropped;
        if (!dropped) this.relayDrops.delete(key);
        else if (this.relayDrops.get(key) !== dropped) {
          this.relayDrops.set(key, dropped);
          this.rejections.add(new RecordError('relay', key, 'claim', dropped), remote);
        }
        return typeof r === 'string' ? r : undefined;
      }
      default:
        return undefined;
    }
  }

  /**
   * Reads what the local cache holds of the remote (the only step that can fail: the local etcd unavailable), then
   * starts the watches. A start that threw started nothing and may be called again (KVStoreMesh retries it); its
   * error is the status's lastError meanwhile. Calling it again after it succeeded, or after stop(), does nothing;
   * while its read is in flight (a caller gave up on it), returns that same start.
   */
  start(): Promise<void> {
    if (this.watchers.length > 0 || this.stopped) return Promise.resolve();
    // one read of the cache at a time: a start given up on (a hung local etcd) and tried again waits for the same one
    return (this.starting ??= this.begin().finally(() => (this.starting = undefined)));
  }

  private async begin(): Promise<void> {
    const remote = this.spec.name;
    const store = this.source.store;
    // what the cache holds (key → value digest): stale until the first list copies the key again, and compared
    // with the remote's value then (a new incarnation this new watcher cannot tell otherwise: cachedcopies.ts)
    const stales: Array<Map<string, number>> = [];
    // each type's watermark (watermark.ts): a cached key of the listed incarnation takes an update as one put
    const markers = new Map<string, string | null>();
    try {
      // the epoch first (fence.ts): a purge after this read, even one landing before the cache read, fences every write
      // refused for the role (no epochs grant): unfenced, as before the fence, rather than no replication (unfenced.ts)
      const revision = await this.local.revision(epochKey(remote)).catch((err: unknown) => {
        if (isPermissionDenied(err)) return undefined;
        throw err;
      });
      this.unfenced = revision === undefined;
      if (revision === undefined) this.onUnfenced(remote, 'replication');
      else
        this.writer.fenceWith({ key: epochKey(remote), revision }, () => {
          this.fenced = true;
          this.onFenced();
        });
      for (const type of REPLICATED_TYPES) stales.push(await cachedCopies(this.local, cachePrefix(type, remote)));
      await this.local.entries(syncedPrefix(remote), (kvs) => kvs.forEach(({ key, value }) => markers.set(key, value)));
    } catch (err) {
      this.startFailed((err as Error).message);
      throw err;
    }
    this.startError = undefined;
    this.startFailingSince = undefined;
    // stopped while its read hung (KVStoreMesh gave up on this start): no watchers for a replication no longer current
    if (this.stopped) return;
    for (const [i, type] of REPLICATED_TYPES.entries()) {
      const stale = stales[i]!;
      const watermark = markerWatermark(markers.get(syncedKey(remote, type)));
      this.synced[type] = false;
      this.counts[type] = 0;
      const srcPrefix = statePrefix(type, remote);
      const typePrefix = statePrefix(type);
      const w = new ListWatcher(
        store,
        srcPrefix,
        {
          upsert: (k, v, reborn) => {
            // located and measured once per copied change (the admission and the budget use both)
            const loc = splitClusterName(typePrefix, k);
            const dst = loc ? cacheKey(type, remote, loc.name) : undefined;
            const size = Buffer.byteLength(k) + Buffer.byteLength(v);
            // Over the node budget, the nodes copied before a restart keep their places (their tunnels stay up): in
            // the first list (key order, not the write order that chose them) a node cached already counts first.
            const reserved = type === 'nodes' && dst && !this.synced[type] && !stale.has(dst) ? stale.size : 0;
            const bad = this.admit(type, k, v, loc, size, reserved);
            this.newest[i] = Math.max(this.newest[i]!, w.createRevision(k) ?? 0);
            // in the first list, a cached copy of another value may be of an incarnation since deleted: fail closed,
            // unless the key was created below the type's watermark (then the copy is of its incarnation: an update)
            const cached = dst && !this.synced[type] ? stale.get(dst) : undefined;
            const again = reborn === true || (cached !== undefined && cached !== valueDigest(v) && !sameIncarnation(w.createRevision(k), watermark, w.listRevision));
            // A refused update leaves the cached copy (the key's last good value) in place. In the
            // first list after a (re)start or a pin change the cached copy was made under what may
            // no longer hold, so a key refused then stays stale and is deleted with the rest.
            if (dst && (!bad || this.synced[type])) stale.delete(dst);
            if (bad) {
              // refused only for the places kept for cached nodes: its key waits, listed again at the first list's end
              if (!this.nodes.wait(k, bad, reserved)) this.rejections.add(bad, remote);
              return false; // refused: ListWatcher removes the cached copy if the key was deleted in between
            }
            this.heldBytes += size - (this.held.get(k) ?? 0);
            if (type === 'nodes' && !this.held.has(k)) this.nodes.taken(k);
            this.held.set(k, size);
            // a new incarnation (ListWatcher saw another create revision, or the first list another value than the
            // cached one, of a key not known to be of its incarnation): the cache key is deleted, then put, so that
            // agents see a new incarnation too (their admission lets go of the old one), not an update
            this.writer.put(dst!, v, again);
          },
          remove: (k) => {
            const loc = splitClusterName(typePrefix, k);
            if (!loc) return;
            const size = this.held.get(k);
            this.relayDrops.delete(k);
            if (size !== undefined) {
              this.held.delete(k);
              this.heldBytes -= size;
              if (type === 'nodes') this.nodes.count--;
            }
            this.writer.delete(cacheKey(type, remote, loc.name));
          },
          synced: () => {
            this.counts[type] = w.size;
            if (this.synced[type]) return;
            for (const k of stale.keys()) this.writer.delete(k);
            stale.clear();
            // the places of cached nodes this list did not confirm are free: the nodes refused for them come back in
            // one more list, with their current values, through the same checks; the marker at that list's end
            if (type === 'nodes' && this.nodes.release((keys) => w.forget(keys))) return;
            // The marker goes through the writer behind every record of the first list (batches leave in queue
            // order; a failed one is retried ahead of what came later), so it is written after them, and retried
            // like them: a lone write that failed under load left the remote unsynced for good.
            const at = new Date().toISOString();
            this.marks.set(type, { at });
            this.writer.put(syncedKey(remote, type), markerValue(at));
            this.synced[type] = true;
            this.log.info({ remote, type }, 'initial sync complete');
          },
          // the remote store's own refusals (not valid UTF-8): counted as the remote's, with the refusals above
          refused: refusedInto(this.rejections, CODECS[type].type, remote),
        },
        this.log,
      );
      this.watchers.push(w);
      void w.start();
    }
  }

  /**
   * A start that failed or that its caller gave up on (KVStoreMesh: the read of the local cache past its deadline):
   * the status says why, and since when starts fail in a row, until one succeeds (else it said only "not connected").
   */
  startFailed(reason: string, now = Date.now()): void {
    this.startFailingSince ??= now;
    this.startError = `start failed: ${reason} (failing since ${new Date(this.startFailingSince).toISOString()})`;
  }

  /**
   * Since when (ms since the epoch) this cluster's copy of the remote is not known to be current, or undefined:
   * the start until every type is synced, the first tick that saw a watch down, or the oldest change received
   * and still unwritten once it is LAG_GRACE_MS old.
   */
  behindSince(connected: boolean, now = Date.now()): number | undefined {
    if (connected) this.downSince = undefined;
    else this.downSince ??= now;
    const pending = this.writer.oldestPending();
    const times = [
      REPLICATED_TYPES.every((t) => this.synced[t]) ? undefined : this.startedAt,
      this.downSince,
      pending !== undefined && now - pending > LAG_GRACE_MS ? pending : undefined,
    ].filter((t): t is number => t !== undefined);
    return times.length ? Math.min(...times) : undefined;
  }

  status(): RemoteStatus {
    const fenced = this.fenced ? 'fenced: the remote was purged after this replication began; starting again' : undefined;
    const lastError = fenced ?? this.startError ?? this.watchers.map((w) => w.lastError).find(Boolean) ?? (this.unfenced ? UNFENCED_HINT : undefined);
    // every status interval for every remote: a count, not a copy of 165k keys (16 x 1000 x 10)
    for (const [i, type] of REPLICATED_TYPES.entries()) this.counts[type] = this.watchers[i]?.size ?? 0;
    const rejected = this.rejections.byTypeReason(this.spec.name);
    const recent = this.rejections.recentOf(this.spec.name, STATUS_REJECTION_BYTES).map(({ at, type, key, reason, detail }) => ({ at, type, key, reason, detail }));
    const connected = this.watchers.length > 0 && this.watchers.every((w) => w.connected);
    const behindSince = this.behindSince(connected);
    return {
      cluster: this.spec.name,
      connected,
      ...(behindSince !== undefined ? { behindSince } : {}),
      synced: { ...this.synced },
      entries: { ...this.counts },
      relists: this.watchers.reduce((n, w) => n + w.relists, 0),
      ...(lastError ? { lastError: lastError.slice(0, 2048) } : {}),
      since: this.since,
      ...(Object.keys(rejected).length ? { rejected, recentRejections: recent } : {}),
      budget: { records: this.held.size, bytes: this.heldBytes, maxRecords: this.budget.maxRecords, maxBytes: this.budget.maxBytes, nodes: this.nodes.count, maxNodes: this.budget.maxNodes },
    };
  }

  /**
   * Stops replicating. With purge: what the writer still holds is abandoned at once (the caller purges next, which
   * deletes all of it: a write the local etcd refuses for good, or one that hangs, must not hold the purge).
   * Without: the writer's queue is waited for, at most flushMs (ms), then abandoned the same way. Returns
   * `landing`: the write that was in flight when the queue was abandoned, if one was; it settles when that write
   * did, which may be after the purge (refused then by its fence, fence.ts; the caller's next replication of the
   * remote, which reads the same epoch when there was no purge, starts only once it settled). Never rejects.
   */
  async stop(purge: boolean, flushMs: number): Promise<{ landing?: Promise<void> }> {
    this.stopped = true;
    await Promise.all(this.watchers.map((w) => w.stop()));
    this.source.close();
    if (!purge) return (await within(this.writer.flushed().then(() => true), flushMs, false)) ? {} : { landing: this.writer.abandon() };
    return { landing: this.writer.abandon() };
  }
}
