/**
 * Identity allocation in etcd, one number per label set per cluster, shared by
 * every node of the cluster:
 *
 *   state/identities/v1/<cluster>/<id>   {id, labels}   (replicated to other clusters)
 *   identity-index/v1/<cluster>/<sha>    <id>           (label set -> number)
 *   identity-refs/v2/<cluster>/<node>/<id>               (leased: this node uses it)
 *
 * Allocation is one etcd transaction that creates the index and the identity
 * only if neither exists, so two nodes allocating the same labels at once end
 * with one number (the loser retries and finds the winner's). Using an
 * existing identity rewrites its record in the same transaction as the
 * reference: the garbage collector deletes only when the record's revision is
 * the one it saw without references, so it can never delete an identity that
 * a node has just started to use.
 *
 * The index is written by every node of the cluster (RBAC cannot tell one
 * label set's entry from another's), so a node with its own credentials can
 * point a label set's entry at an identity of its choice. An index entry is
 * therefore only a hint: it is taken only when it names an identity of this
 * cluster whose record carries exactly these labels (the same hash); any other
 * entry is refused (counted, with its key) and replaced, in the transaction
 * that allocates a new identity, on the condition that it still holds what was
 * read. A node that keeps rewriting it costs allocation retries, never a pod's
 * identity.
 */
import { isUtf8 } from 'node:buffer';
import { GRPCDeadlineExceededError, Range, type Etcd3 } from 'etcd3';
import { identityIndexKey, identityRefKey, stateKey, statePrefix } from '../controlplane/keys.js';
import { ConfigError, MeshError, RecordError } from '../errors.js';
import type { Logger } from '../log.js';
import { clusterIdentity, DEFAULT_MAX_CLUSTERS, labelsHash, maxLocalId, MIN_LOCAL_ID, type IdentityRecord, type Labels, type MaxClusters } from './identity.js';
import { identityCodec, Rejections, tryDecode } from '../controlplane/records/index.js';
import { refusedInto } from '../controlplane/kvstore.js';
import { textKV } from '../controlplane/etcdwatch.js';
import { DEFAULT_MAX_IDENTITY_REFS_PER_NODE, readRefs, type KeyPage } from './refs.js';

export class IdentityAllocator {
  constructor(
    private readonly etcd: Etcd3,
    private readonly cluster: string,
    private readonly clusterId: number,
    private readonly node: string,
    /** The mesh's cluster-id layout: how many bits the local part has. */
    private readonly maxClusters: MaxClusters = DEFAULT_MAX_CLUSTERS,
    /** Where a refused index entry is counted (type `identity-index`, reason `claim`). */
    private readonly rejections?: Rejections,
  ) {}

  /**
   * Returns the identity of `labels`, allocating it if needed, and records that this node uses it.
   * Throws ConfigError (`labels`) for labels no reader would accept in an identity record (nothing is written), and
   * MeshError WM_IDENTITY_ALLOCATION after 20 attempts (lost races, or an index entry rewritten as fast as it is
   * replaced).
   */
  async allocate(labels: Labels, leaseId: string): Promise<number> {
    this.checkLabels(labels);
    const hash = labelsHash(labels);
    const indexKey = identityIndexKey(this.cluster, hash);
    for (let attempt = 0; attempt < 20; attempt++) {
      const read = await this.etcd.get(indexKey).exec();
      const entry = read.kvs[0];
      if (entry) {
        const found = await this.indexed(indexKey, entry.value.toString('utf8'), hash, read.header.revision);
        if (found) {
          const res = await this.etcd
            .if(found.idKey, 'Value', '==', found.rec)
            .then(this.etcd.put(found.idKey).value(found.rec), this.etcd.put(identityRefKey(this.cluster, found.id, this.node)).value('').lease(leaseId))
            .commit();
          if (res.succeeded) return found.id;
          continue;
        }
      }
      const id = await this.pickFree();
      const idKey = stateKey('identities', this.cluster, String(id));
      const record: IdentityRecord = { id, labels };
      // a refused entry is replaced only if it is still the write that was read (its mod revision: a forged value
      // written again after another agent replaced it is a new write, and this one loses)
      const index = entry ? this.etcd.if(indexKey, 'Mod', '==', entry.mod_revision) : this.etcd.if(indexKey, 'Create', '==', 0);
      const res = await index
        .and(idKey, 'Create', '==', 0)
        .then(
          this.etcd.put(indexKey).value(String(id)),
          this.etcd.put(idKey).value(JSON.stringify(record)),
          this.etcd.put(identityRefKey(this.cluster, id, this.node)).value('').lease(leaseId),
        )
        .commit();
      if (res.succeeded) return id;
    }
    throw new MeshError('WM_IDENTITY_ALLOCATION', `could not allocate an identity for ${JSON.stringify(labels)} after 20 attempts`);
  }

  /** Refuses labels the identity codec would refuse in a record (every reader, ours too, would drop it). */
  private checkLabels(labels: Labels): void {
    const id = clusterIdentity(this.clusterId, MIN_LOCAL_ID, this.maxClusters);
    const r = tryDecode(identityCodec, stateKey('identities', this.cluster, String(id)), JSON.stringify({ id, labels }));
    if (!r.ok) throw new ConfigError('labels', `no identity can carry these labels (${r.error.reason}: ${r.error.detail})`);
  }

  /**
   * The identity the index entry `value` names, with its record's exact text (the allocation's compare), when it
   * is one of this cluster's, in its local range, and its record at `revision` (the revision the entry was read
   * at) decodes and carries the labels hashed to `hash`; otherwise undefined, and the entry is refused (counted).
   * The collector deletes an entry with its identity in one transaction and allocation creates both in one, so an
   * entry whose record is absent at the revision it was read at was never honest.
   */
  private async indexed(indexKey: string, value: string, hash: string, revision: string): Promise<{ id: number; idKey: string; rec: string } | undefined> {
    const lies = (detail: string): undefined => void this.rejections?.add(RecordError.quiet('identity-index', indexKey, 'claim', detail), this.cluster);
    const id = /^[1-9][0-9]{0,9}$/.test(value) ? Number(value) : NaN;
    const local = id - clusterIdentity(this.clusterId, 0, this.maxClusters);
    if (!(local >= MIN_LOCAL_ID && local <= maxLocalId(this.maxClusters))) return lies(`names ${JSON.stringify(value.slice(0, 32))}, not an identity of this cluster`);
    const idKey = stateKey('identities', this.cluster, String(id));
    const rec = await this.etcd.get(idKey).revision(revision).string();
    if (rec === null) return lies(`names identity ${id}, which has no record`);
    const decoded = tryDecode(identityCodec, idKey, rec);
    if (!decoded.ok) return lies(`names identity ${id}, whose record is refused (${decoded.error.reason})`);
    if (labelsHash(decoded.value.labels) !== hash) return lies(`names identity ${id}, whose labels are not this entry's label set`);
    return { id, idKey, rec };
  }

  /** This node stops using `id` (the collector deletes it once no node does). */
  async release(id: number): Promise<void> {
    await this.etcd.delete().key(identityRefKey(this.cluster, id, this.node)).exec();
  }

  /** A random unused number: concurrent allocators of different labels rarely collide. */
  private async pickFree(): Promise<number> {
    const keys = await this.etcd.getAll().prefix(statePrefix('identities', this.cluster)).keys();
    const localMax = maxLocalId(this.maxClusters);
    const used = new Set(keys.map((k) => Number(k.slice(k.lastIndexOf('/') + 1)) & localMax));
    const span = localMax - MIN_LOCAL_ID + 1;
    if (used.size >= span) throw new MeshError('WM_IDENTITY_EXHAUSTED', `cluster ${this.cluster} has used all ${span} identities`);
    for (;;) {
      const local = MIN_LOCAL_ID + Math.floor(Math.random() * span);
      if (!used.has(local)) return clusterIdentity(this.clusterId, local, this.maxClusters);
    }
  }
}

/**
 * How long one etcd call of an identity sweep (its list, its keys, each delete) may take (ms) before the sweep is
 * given up on: a hung call would otherwise hold the collector for good (one sweep at a time: every later one was
 * skipped until the call failed). Per call, not per sweep: a slow etcd that still answers each call in time lets
 * the sweep go on (100 deletes of 1 s each take 100 s, as before the deadline; s9fix2 #1).
 */
export const SWEEP_DEADLINE_MS = 30_000;
/**
 * Sweeps given up on whose etcd call has not settled yet, at most: past it, a due sweep is skipped (counted)
 * until one settled, so a local etcd that hangs every call holds at most this many calls of the collector.
 */
export const MAX_ABANDONED_SWEEPS = 4;

/**
 * The collector's sweeps since it started (kvstoremesh's metrics): done, failed (an etcd call failed), timedOut
 * (given up on: a call past its deadline), skipped (due while one ran, or with MAX_ABANDONED_SWEEPS still
 * unsettled); abandoned: sweeps given up on (or cut off by stop()) whose call is still in flight now.
 */
export interface SweepStats {
  done: number;
  failed: number;
  timedOut: number;
  skipped: number;
  abandoned: number;
}

/** Ends a sweep that was given up on (`timedOut`: a call past its deadline) or cut off by stop(): it acts on nothing more. */
class SweepCutOff extends Error {
  constructor(readonly timedOut: boolean) {
    super(timedOut ? 'an etcd call did not answer within its deadline' : 'stopped');
  }
}

/**
 * Deletes identities no node references (run by the cluster's kvstoremesh).
 * An identity is deleted on the second sweep that finds it unreferenced with
 * the same record revision, so one that was just allocated (reference still
 * being written) or just reused survives.
 */
export class IdentityCollector {
  private candidates = new Map<string, string>(); // identity key -> mod revision seen unreferenced
  /**
   * Identity key -> mod revision of the refused record already counted: each refused record is counted once,
   * not on every sweep (every 60 s) that lists it again, which flushed the remotes' refusals out of the
   * 50-entry status history and made the counter rise forever (review of s7fix, #2). Only the keys the last
   * sweep refused: bounded by the keys listed. Replaced once a sweep has both its list and its keys: a sweep that
   * fails or is given up on before that keeps the previous map and counts nothing (the next sweep that lists them
   * counts them); one that fails or is given up on during its deletes has counted them already.
   */
  private counted = new Map<string, string>();
  /**
   * Nodes the last sweep found over maxRefsPerNode -> the first key refused then: a node is counted (logged, in
   * metrics) once while it stays over, again once it came back under and went over again, or refuses another key
   * first. Bounded by the nodes.
   */
  private overCounted = new Map<string, string>();

  constructor(
    private readonly store: CollectorStore,
    private readonly cluster: string,
    private readonly log: Logger,
    /** Where the records it refuses are counted (logged, metrics): once per record (key and mod revision). */
    private readonly rejections: Rejections = new Rejections(log),
    /** How long each etcd call of a sweep may take (ms) before the sweep is given up on (SWEEP_DEADLINE_MS). */
    private readonly deadlineMs = SWEEP_DEADLINE_MS,
    /** Identity references a node counts for (refs.ts: past them, the rest of its references are refused). */
    private readonly maxRefsPerNode = DEFAULT_MAX_IDENTITY_REFS_PER_NODE,
  ) {}

  /**
   * The sweep that runs now (its token), if one does: one at a time (two against a hung etcd each counted their
   * refusals and acted on them). A sweep given up on or cut off by stop() is no longer it, and sends nothing more.
   */
  private running: object | undefined;
  /** The call the running sweep waits for: its deadline's timer, and how to end the wait at once (stop()). */
  private waiting: { timer: NodeJS.Timeout; cut: () => void } | undefined;
  private stopped = false;
  readonly stats: SweepStats = { done: 0, failed: 0, timedOut: 0, skipped: 0, abandoned: 0 };
  /** Sweeps skipped (stats.skipped). */
  get skipped(): number {
    return this.stats.skipped;
  }

  /**
   * One sweep: resolves to how many identities it deleted, rejects with a failed etcd call's error. A sweep due
   * while the previous one still runs, or while MAX_ABANDONED_SWEEPS given up on are in flight, is skipped:
   * resolves to 0 at once, counted and logged. An etcd call past deadlineMs gives the sweep up: it resolves to the
   * deletes done before (counted, logged); the call itself ends by its own grpc deadline when the store sets one
   * (etcdCollectorStore: the same deadline; it fails with DEADLINE_EXCEEDED, taken as the same give-up), and what it
   * answers is ignored (no refusal counted, no candidate kept, no further call sent: each delete sent is one
   * guarded transaction, whole or not at all). After stop(), resolves to 0 at once.
   */
  async sweep(): Promise<number> {
    if (this.stopped) return 0;
    if (this.running || this.stats.abandoned >= MAX_ABANDONED_SWEEPS) {
      this.stats.skipped++;
      const why = this.running ? 'the previous one still runs' : `${this.stats.abandoned} sweeps given up on still wait for etcd`;
      this.log.warn({ cluster: this.cluster, skipped: this.stats.skipped }, `identity sweep skipped: ${why}`);
      return 0;
    }
    const token = {};
    this.running = token;
    const progress = { deleted: 0 }; // counted as each delete answers: a sweep given up on later still reports them
    try {
      await this.sweepOnce(token, progress);
      this.stats.done++;
      return progress.deleted;
    } catch (err) {
      if (!(err instanceof SweepCutOff)) {
        this.stats.failed++;
        throw err;
      }
      if (err.timedOut) {
        this.stats.timedOut++;
        this.log.warn({ cluster: this.cluster, deadlineMs: this.deadlineMs, timedOut: this.stats.timedOut, deleted: progress.deleted }, 'identity sweep given up on: an etcd call did not answer within its deadline');
      }
      return progress.deleted;
    } finally {
      if (this.running === token) this.running = undefined;
    }
  }

  /**
   * Cuts off the sweep in flight (it sends no further call; the one it waits for is abandoned, its answer ignored)
   * and clears its deadline's timer; no sweep runs after. kvstoremesh's stop().
   */
  stop(): void {
    this.stopped = true;
    this.running = undefined;
    if (this.waiting) {
      clearTimeout(this.waiting.timer);
      this.waiting.cut();
    }
  }

  /**
   * One etcd call of the sweep `token`, sent only while that sweep runs; its answer, or
   * SweepCutOff when it did not answer within deadlineMs (the sweep is given up on) or stop() came first.
   */
  private async call<T>(token: object, send: () => Promise<T>): Promise<T> {
    if (this.running !== token) throw new SweepCutOff(false);
    // the store's own grpc deadline (etcdCollectorStore) may end the call a moment before the timer: the same give-up
    const answer = send().then(
      (value) => ({ value }),
      (err: unknown) => {
        if (err instanceof GRPCDeadlineExceededError) return { late: true as const };
        throw err;
      },
    );
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<'late' | 'stopped'>((r) => {
      timer = setTimeout(() => r('late'), this.deadlineMs);
      timer.unref(); // a hung etcd must not hold the process's exit
      this.waiting = { timer, cut: () => r('stopped') };
    });
    try {
      const r = await Promise.race([answer, ended]);
      if (typeof r === 'object' && 'value' in r) return r.value;
      if (typeof r === 'object') throw new SweepCutOff(true); // ended by its grpc deadline: nothing left in flight
      this.stats.abandoned++;
      const settled = () => void this.stats.abandoned--;
      void answer.then(settled, settled); // its answer or its error
      throw new SweepCutOff(r === 'late'); // the sweep ends here: it sends nothing more, keeps no candidate
    } finally {
      clearTimeout(timer);
      this.waiting = undefined;
    }
  }

  /** Counts the nodes over maxRefsPerNode this sweep found (once while each stays over: overCounted). */
  private countOver(over: Map<string, string>): void {
    for (const [node, key] of over) {
      // Once per node while it stays over: the node chooses its first refused key (one write before each sweep
      // would change it), so the key is only the record named, never part of what makes a refusal new.
      if (this.overCounted.has(node)) continue;
      const detail = `node ${text(node)} references more than ${this.maxRefsPerNode} identities (--max-identity-refs-per-node): this reference and the node's later ones keep no identity`;
      this.rejections.add(RecordError.quiet('identity-ref', text(key), 'budget', detail), this.cluster);
    }
    this.overCounted = over;
  }

  /** One sweep's work; `token`: it sends a call only while it is the running sweep (not given up on or cut off). */
  private async sweepOnce(token: object, progress: { deleted: number }): Promise<void> {
    const refusedRecords: Array<{ key: string; rev: string; count: () => void }> = [];
    const storeRefused = refusedInto(this.rejections, identityCodec.type, this.cluster);
    const onRefused: RefusedAt = (key, reason, rev) => void refusedRecords.push({ key, rev, count: () => storeRefused(key, reason) });
    const ids = await this.call(token, () => this.store.list(statePrefix('identities', this.cluster), onRefused));
    const decodedIds = ids.map(({ key, value, modRevision: rev }) => {
      const r = tryDecode(identityCodec, key, value);
      if (!r.ok) refusedRecords.push({ key, rev, count: () => this.rejections.add(r.error, this.cluster) });
      return { key, rev, rec: r.ok ? r.value : undefined };
    });
    const listed = new Set(decodedIds.flatMap(({ rec }) => (rec ? [String(rec.id)] : [])));
    const page: KeyPage = (prefix, from, limit) => this.call(token, () => this.store.keys(prefix, from, limit));
    const { referenced, over } = await readRefs(page, this.cluster, listed, this.maxRefsPerNode);
    this.countOver(over);
    // counted once both answers came in time: a sweep given up on before that counts nothing
    const refused = new Map<string, string>();
    for (const { key, rev, count } of refusedRecords) {
      refused.set(key, rev);
      if (this.counted.get(key) !== rev) count();
    }
    this.counted = refused;
    const next = new Map<string, string>();
    for (const { key, rev, rec } of decodedIds) {
      if (!rec || referenced.has(String(rec.id))) continue;
      if (this.candidates.get(key) !== rev) {
        next.set(key, rev);
        continue;
      }
      // one call at a time, each under its deadline: a give-up throws here and keeps the candidates as they were
      // the label set's index entry goes with it only if it names this identity: a node of the cluster may have
      // pointed it at another one since (an honest allocation's, which must keep it)
      const index = { key: identityIndexKey(this.cluster, labelsHash(rec.labels)), value: String(rec.id) };
      if (await this.call(token, () => this.store.release(key, rev, index))) {
        progress.deleted++;
        this.log.info({ identity: rec.id }, 'identity released: no node uses it');
      }
    }
    this.candidates = next;
  }
}

/** A byte string (one char per byte) as text: UTF-8, or hex when it is not valid UTF-8 (as refused keys are shown). */
function text(bytes: string): string {
  const b = Buffer.from(bytes, 'latin1');
  return isUtf8(b) ? b.toString() : b.toString('hex');
}

/** A record a CollectorStore refused alone: its key (hex when not valid UTF-8), why, and its mod revision. */
export type RefusedAt = (key: string, reason: string, modRevision: string) => void;

/**
 * What the collector does to its cluster's store (declared here for it; etcdCollectorStore is etcd3 behind it).
 * A store may end a call at the collector's deadline itself (a grpc deadline: GRPCDeadlineExceededError); the
 * collector's own deadline and MAX_ABANDONED_SWEEPS bound what a store that does not holds.
 */
export interface CollectorStore {
  /**
   * Keys, values and mod revisions (etcd's int64, in decimal) under prefix; `rejected`: records refused alone
   * (not valid UTF-8), left out, with the store's reason and their mod revision.
   */
  list(prefix: string, rejected?: RefusedAt): Promise<Array<{ key: string; value: string; modRevision: string }>>;
  /** A page of the keys under prefix (values are not fetched): refs.ts KeyPage (byte strings, from `from`, ≤ limit). */
  keys: KeyPage;
  /**
   * Deletes the identity record `guard` if its mod revision is still `modRevision` and, in the same transaction,
   * `index.key` (its label set's identity-index entry) only if its value is still `index.value` (names that
   * identity); returns whether the record was deleted.
   */
  release(guard: string, modRevision: string, index: { key: string; value: string }): Promise<boolean>;
}

/**
 * The collector's store on etcd. Every call carries a grpc deadline of deadlineMs (the collector's,
 * SWEEP_DEADLINE_MS), so a call the collector gives up on is cancelled too instead of running on against a hung
 * etcd (holding one of MAX_ABANDONED_SWEEPS). Such a failure is not the host's: connectEtcd's isHostFailure
 * neither retries it nor counts it in the circuit breaker (a client made otherwise: etcd3 retries it three times,
 * each within the same deadline, and three open its breaker).
 */
export function etcdCollectorStore(etcd: Etcd3, deadlineMs = SWEEP_DEADLINE_MS): CollectorStore {
  const within = () => ({ deadline: Date.now() + deadlineMs });
  return {
    list: async (prefix, rejected) =>
      (await etcd.getAll().prefix(prefix).options(within()).exec()).kvs.flatMap((kv) => {
        // not turned into U+FFFD text: refused, as the lists and watches do
        const t = textKV(kv, rejected && ((key, reason) => rejected(key, reason, String(kv.mod_revision))));
        return t ? [{ key: t.key, value: t.value, modRevision: String(kv.mod_revision) }] : [];
      }),
    keys: async (prefix, from, limit) => {
      const range = { start: Buffer.from(from, 'latin1'), end: Range.prefix(prefix).end };
      return (await etcd.getAll().inRange(range).limit(limit).options(within()).keyBuffers()).map((k) => k.toString('latin1'));
    },
    // a transaction nested in the success branch (etcd >= 3.3): the builder has none
    release: async (guard, modRevision, index) => {
      const key = Buffer.from(index.key);
      const ifNamed = { compare: [{ key, target: 'Value' as const, result: 'Equal' as const, value: Buffer.from(index.value) }], success: [{ request_delete_range: { key } }], failure: [] };
      const compare = [{ key: Buffer.from(guard), target: 'Mod' as const, result: 'Equal' as const, mod_revision: modRevision }];
      return (await etcd.kv.txn({ compare, success: [{ request_delete_range: { key: Buffer.from(guard) } }, { request_txn: ifNamed }], failure: [] }, within())).succeeded;
    },
  };
}
