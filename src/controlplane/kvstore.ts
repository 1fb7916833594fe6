/**
 * The small slice of etcd that wiremesh consumers need, as an interface they
 * define (Cilium style), with the etcd3-backed implementation. Everything that
 * reads state goes through ListWatcher, which implements the list-then-watch
 * pattern once for the agent and the kvstoremesh replicator alike.
 */
import { Range, type Etcd3 } from 'etcd3';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { KEY_NOT_UTF8, leanWatch, textKV, VALUE_NOT_UTF8, type Rejected, type WatchHandlers } from './etcdwatch.js';
import { doublingDelay } from './backoff.js';
import { DigestTable } from './digesttable.js';
import { valueDigest } from './valuedigest.js';
import type { ListWatchSink } from './recordsink.js';

export interface KV {
  key: string;
  value: string;
  /** etcd's create_revision (decimal): the key's incarnation, new after a delete; absent when the store has none. */
  createRevision?: string;
}

export type { Rejected, WatchHandlers } from './etcdwatch.js';
export { connectEtcd, isAuthRevisionRace, type EtcdOptions } from './etcdconnect.js';
export { valueDigest } from './valuedigest.js';
export { refusedInto } from './refusedinto.js';
export { decoded, type ListWatchSink, type RecordSink } from './recordsink.js';

export interface KVStore {
  /** `rejected`: records refused alone (etcd: bytes that are not valid UTF-8), left out of `kvs`. */
  list(prefix: string, rejected?: Rejected): Promise<{ revision: string; kvs: KV[] }>;
  /**
   * The same snapshot as list, handed over a page at a time (every page at the
   * first page's revision, which a store may give with each page); resolves to that revision. Optional: ListWatcher
   * uses it when present, so a 160k-key prefix never sits in memory whole.
   */
  listPages?(prefix: string, page: (kvs: KV[], revision?: string) => void, rejected?: Rejected): Promise<string>;
  watch(prefix: string, fromRevision: string, h: WatchHandlers): Promise<{ cancel(): Promise<void> }>;
}

/** Keys that live as long as their writer: a lease kept alive until released, or lost. */
export interface KVLease {
  /** Writes `key` under the lease (granting it first if it is not yet). */
  put(key: string, value: string): Promise<void>;
  /** Grants the lease if it is not yet; its id, for keys others attach to it (identity references). */
  grant(): Promise<string>;
  /** `fn` runs when the lease is lost (expired, or keep-alives failed): its keys are gone. */
  onLost(fn: (err: Error) => void): void;
  /** Stops the keep-alives without revoking: the keys expire with the lease's TTL. */
  release(): void;
}

/** The writes beside KVStore's reads (the agent's registration); each consumer picks what it uses. */
export interface KVWriter {
  delete(key: string): Promise<void>;
  /** A lease of `ttlSeconds`, kept alive until released. */
  lease(ttlSeconds: number): KVLease;
}

const LIST_PAGE = 5000;

export class EtcdStore implements KVStore, KVWriter {
  constructor(readonly client: Etcd3) {}

  async delete(key: string): Promise<void> {
    await this.client.delete().key(key).exec();
  }

  lease(ttlSeconds: number): KVLease {
    const l = this.client.lease(ttlSeconds, { autoKeepAlive: true });
    return {
      put: async (key, value) => void (await l.put(key).value(value).exec()),
      grant: () => l.grant(),
      onLost: (fn) => void l.on('lost', fn),
      release: () => l.release(),
    };
  }

  /**
   * Lists a prefix in pages of LIST_PAGE keys, every page at the revision of the
   * first: a consistent snapshot without one response holding 150,000 records
   * (which grpc's message limit would refuse, and a relist would retry forever).
   */
  async list(prefix: string, rejected?: Rejected): Promise<{ revision: string; kvs: KV[] }> {
    const kvs: KV[] = [];
    const revision = await this.listPages(prefix, (page) => void kvs.push(...page), rejected);
    return { revision, kvs };
  }

  /** Keys and values that are not valid UTF-8 are refused alone (`rejected`), as the watch does (etcdwatch.ts). */
  async listPages(prefix: string, page: (kvs: KV[], revision: string) => void, rejected?: Rejected): Promise<string> {
    const end = Range.prefix(prefix).end;
    let start: Buffer = Buffer.from(prefix);
    let revision: string | undefined;
    for (;;) {
      const b = this.client.getAll().inRange({ start, end }).limit(LIST_PAGE);
      if (revision) b.revision(revision);
      const res = await b.exec();
      revision ??= res.header.revision;
      page(res.kvs.flatMap((kv) => textKV(kv, rejected) ?? []), revision);
      if (!res.more || res.kvs.length === 0) break;
      start = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.from([0])]);
    }
    return revision;
  }

  /** The lean watch of etcdwatch.ts (etcd3's connection and auth, our decoding). */
  watch(prefix: string, fromRevision: string, h: WatchHandlers): Promise<{ cancel(): Promise<void> }> {
    return leanWatch(this.client, prefix, fromRevision, h);
  }
}

/** A refused key's id in ListWatcher's refused keys: a binary key (named in hex) apart from any text key. */
const refusedId = (key: string, binary: boolean): number => valueDigest(binary ? `\0${key}` : key);

/** ListWatcher's retry pause (ms) after a failed list or watch creation, or a watch that broke unstable. */
const RETRY = { first: 200, max: 5000 };

/** A watch up this long (ms) before it broke counts as stable: the next relist starts at once. */
export const STABLE_WATCH_MS = 10_000;

/** A create revision as a number; 0 when the store gave none (memory stores of old tests). */
function incarnation(createRevision: string | undefined): number {
  return createRevision ? Number(createRevision) : 0;
}

/**
 * Mirrors a prefix into `sink`: list, then watch from revision+1. When the watch
 * breaks (compaction, cancel) it lists again and removes what vanished, so no
 * deletion is lost. While etcd is unreachable the sink keeps what it has.
 */
export class ListWatcher {
  /**
   * Key → digest of its value (valueDigest), not the value, and its create revision (0: unknown): the sink
   * holds what it decoded, and a second copy of every value text cost ~350 B per remote endpoint
   * (bench/memory.ts); both packed in three 32-bit words per key, not heap objects (digesttable.ts).
   */
  private readonly known = new DigestTable();
  private cancelWatch: (() => Promise<void>) | undefined;
  private stopped = false;
  /**
   * Failed lists, failed watch creations and watches broken before staying up STABLE_WATCH_MS, in a row: the
   * next list waits 200 ms doubled per further one, at most 5 s; only a watch up STABLE_WATCH_MS resets it. One
   * backoff for the three, so a remote cannot make us relist in a loop by breaking every new watch (a response
   * over the channel's limit, an event etcd never sends), even after delivering one event first, nor by
   * serving the list and failing every watch creation.
   */
  private failures = 0;
  relists = 0;
  connected = false;
  /**
   * Every change of the prefix at a revision below this one (decimal) has been handed to the sink (a complete
   * list's revision + 1, then each watched event's revision as it arrives); undefined before the first list.
   */
  revision: string | undefined;
  /** The revision of the list being handed to the sink, or of the last one (decimal); undefined before the first. */
  listRevision: string | undefined;
  lastError: string | undefined;

  constructor(
    private readonly store: KVStore,
    private readonly prefix: string,
    private readonly sink: ListWatchSink,
    private readonly log: Logger = silentLogger,
  ) {}

  private running: Promise<void> | undefined;
  private firstSynced!: () => void;
  private readonly firstSyncP = new Promise<void>((r) => (this.firstSynced = r));

  /** Starts mirroring (once; later calls return the same run). */
  start(): Promise<void> {
    return (this.running ??= this.cycle());
  }

  /** Resolves after the first complete list has reached the sink. */
  firstSync(): Promise<void> {
    return this.firstSyncP;
  }

  /**
   * Every key held, as text. Order: DigestTable.keys (keys without a short IPv4 compact form's layout in arrival order,
   * then those with it in hash order): callers needing an order sort.
   */
  keys(): string[] {
    return this.known.keys().map((f) => this.text(f));
  }

  /** The create revision of `key` as last handed to the sink (0: the store gave none), or undefined when not held. */
  createRevision(key: string): number | undefined {
    const f = this.formOf(key);
    return f === undefined ? undefined : this.known.createRevision(f);
  }

  /**
   * `known` holds each key as the sink's form of it (ListWatchSink.forms; without: the key itself), and the sink
   * gets that form: the form of `key` when held, else undefined.
   */
  private formOf(key: string): string | undefined {
    const has = (f: string) => this.known.get(f) !== undefined;
    if (this.sink.forms) return this.sink.forms.heldForm(key, has);
    return has(key) ? key : undefined;
  }

  private text(form: string): string {
    return this.sink.forms ? this.sink.forms.full(form) : form;
  }

  /**
   * Only from the sink's synced(), of keys it holds no value of (replication.ts: nodes waiting for a place): forgets
   * them and lists once more before watching, so those still there come back with their values then. True: it will.
   * `keys` are texts: each is looked up as the form `known` holds it in, and that form released (ListWatchSink.forms).
   */
  forget(keys: Iterable<string>): boolean {
    for (const k of keys) {
      const form = this.formOf(k);
      if (form === undefined || !this.known.delete(form)) continue;
      this.sink.forms?.release(form);
      this.listAgain = true;
    }
    return this.listAgain;
  }
  private listAgain = false;

  /** How many keys the prefix holds as last seen (keys().length without building the list). */
  get size(): number {
    return this.known.size;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const c = this.cancelWatch;
    this.cancelWatch = undefined;
    if (c) await c().catch(() => undefined);
  }

  /**
   * Runs one sink call. A sink that throws is a bug, but one record must not
   * take the watch (or, from inside an etcd3 event, the process) down with it:
   * logged with its key, counted, and the next record goes on.
   */
  private deliver(op: string, key: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.sinkErrors++;
      this.log.error({ prefix: this.prefix, key: this.text(key), op, err: (err as Error).message }, 'sink failed on a record; skipped');
    }
  }

  /** Sink calls that threw (each skipped). */
  sinkErrors = 0;
  /**
   * Watch events and listed records the store refused alone (not valid UTF-8), each list's again: the key keeps
   * its previous value. The sink (ListWatchSink.refused) hears each once.
   */
  rejectedEvents = 0;
  /**
   * Keys whose refusal the sink heard, by their digest (valueDigest: a fixed size whatever the key's, ~1.5 MiB
   * at most in etcd) → their create revision then ("": unknown), so a relist, which lists them again, does not
   * count them again (a refused write in the gap before it, to the same incarnation, goes uncounted); a key's
   * good value, its watched delete (a binary key's too: WatchHandlers.unreadableDeleted) or a relist without it
   * takes it out: at most the refused keys the prefix holds in etcd.
   */
  private readonly refusedKeys = new Map<number, string>();

  /** `listed`: seen by a (re)list, where a refusal the sink heard for this incarnation is not handed on again. */
  private refused(key: string, reason: string, createRevision: string | undefined, listed: boolean): void {
    this.rejectedEvents++;
    const inc = createRevision ?? '';
    const id = refusedId(key, reason === KEY_NOT_UTF8);
    if (listed && this.refusedKeys.get(id) === inc) return;
    this.refusedKeys.set(id, inc);
    const sink = this.sink;
    if (sink.refused) this.deliver('refused', key, () => sink.refused!(key, reason, createRevision));
    else this.log.warn({ prefix: this.prefix, key, reason }, 'record rejected');
  }

  /** A key's good value or delete: its refusal is no longer remembered (no digest computed while none is). */
  private forgetRefused(key: string, binary: boolean): void {
    if (this.refusedKeys.size > 0) this.refusedKeys.delete(refusedId(key, binary));
  }

  /** Whether create revision `c` is another incarnation of the key held as `form` than the one last seen (both known). */
  private reborn(form: string | undefined, c: number): boolean {
    const k = form === undefined ? undefined : this.known.createRevision(form);
    return k !== undefined && k !== 0 && c !== 0 && k !== c;
  }

  /**
   * Hands the sink a put (listed or watched) unless the key holds this value in this incarnation already. A
   * value the sink refuses leaves the previous one in force, but not across a delete: a new incarnation (another
   * create_revision: deleted and created again, maybe unseen in a gap that forced a relist) whose value is
   * refused removes the old incarnation's value, as the delete would have; so does one the sink threw on (a
   * bug, but the old value must not outlive its delete because of it).
   */
  private put(kv: KV): string {
    const c = incarnation(kv.createRevision);
    const d = valueDigest(kv.value);
    const forms = this.sink.forms;
    const held = this.formOf(kv.key);
    if (held !== undefined && this.known.get(held) === d && this.known.createRevision(held) === c) return held;
    const reborn = this.reborn(held, c);
    const form = held ?? (forms ? forms.acquire(kv.key) : kv.key);
    this.known.set(form, d, c);
    this.forgetRefused(kv.key, false);
    this.deliver('upsert', form, () => {
      let taken: unknown = false;
      try {
        taken = this.sink.upsert(form, kv.value, reborn, kv.key);
      } finally {
        if (taken === false && reborn) this.sink.remove(form);
      }
    });
    return form;
  }

  /** The key held as `form` is gone (deleted, or a new incarnation refused by the store): the sink forgets it. */
  private drop(form: string | undefined): void {
    if (form === undefined || !this.known.delete(form)) return;
    this.deliver('remove', form, () => this.sink.remove(form));
    this.sink.forms?.release(form); // after the sink's remove, which may still read the form's text
  }

  /**
   * Lists the prefix and hands the sink what changed: the list's revision, or
   * undefined once stopped. Its own frame: the listed keys and values are
   * garbage when it returns (held in cycle's frame they stayed alive as long as
   * the watch ran, ~600 B per remote endpoint).
   */
  private async relist(): Promise<string | undefined> {
    const seen = new Set<string>();
    const refusedNow = new Set<number>();
    const take = (kvs: KV[], revision?: string) => {
      if (this.stopped) return;
      if (revision !== undefined) this.listRevision = revision;
      for (const kv of kvs) seen.add(this.put(kv));
    };
    // a key whose value is refused keeps its previous value (as on a watch), so it counts as seen, unless it
    // was deleted and created again since: then the previous value goes (removed below, as unseen)
    const rejected: Rejected = (key, reason, createRevision) => {
      const held = this.formOf(key);
      if (reason === VALUE_NOT_UTF8 && held !== undefined && !this.reborn(held, incarnation(createRevision))) seen.add(held);
      refusedNow.add(refusedId(key, reason === KEY_NOT_UTF8));
      this.refused(key, reason, createRevision, true);
    };
    let revision: string;
    if (this.store.listPages) revision = await this.store.listPages(this.prefix, take, rejected);
    else {
      const r = await this.store.list(this.prefix, rejected);
      take(r.kvs, r.revision);
      revision = r.revision;
    }
    if (this.stopped) return undefined;
    for (const key of this.known.keys()) if (!seen.has(key)) this.drop(key);
    for (const key of [...this.refusedKeys.keys()]) if (!refusedNow.has(key)) this.refusedKeys.delete(key);
    return revision;
  }

  /** The pause (ms) before the next list: 0 after a stable watch, else the backoff of `failures`. */
  private backoff(stable: boolean): number {
    if (stable) this.failures = 0;
    return stable ? 0 : doublingDelay(this.failures++, RETRY);
  }

  private async cycle(): Promise<void> {
    while (!this.stopped) {
      try {
        const revision = await this.relist();
        if (revision === undefined) return;
        const next = (BigInt(revision) + 1n).toString();
        this.listRevision = revision;
        this.revision = next;
        this.deliver('synced', this.prefix, () => this.sink.synced?.());
        // forget() in synced(): the keys forgotten come back in one more list, at once, before any watch
        if (this.listAgain) { this.listAgain = false; continue; }
        this.firstSynced();
        this.connected = true;
        this.lastError = undefined;
        let broken!: (err: Error) => void;
        const brokenP = new Promise<Error>((resolve) => (broken = resolve));
        const watchedAt = Date.now();
        const w = await this.store.watch(this.prefix, next, {
          // events come in revision order: those before this one's revision were all handed over
          put: (kv, rev) => {
            this.revision = rev;
            this.put(kv);
          },
          delete: (key, rev) => {
            this.revision = rev;
            this.forgetRefused(key, false);
            this.drop(this.formOf(key));
          },
          unreadableDeleted: (hexKey) => this.forgetRefused(hexKey, true),
          broken: (err) => broken(err),
          connected: (up) => (this.connected = up),
          rejected: (key, reason, createRevision) => {
            this.refused(key, reason, createRevision, false);
            // etcd sends the delete before the put, so only a put without one (never from etcd) is caught here
            const held = this.formOf(key);
            if (reason === VALUE_NOT_UTF8 && this.reborn(held, incarnation(createRevision))) this.drop(held);
          },
        });
        this.cancelWatch = () => w.cancel();
        if (this.stopped) {
          await w.cancel().catch(() => undefined);
          return;
        }
        const err = await brokenP;
        this.cancelWatch = undefined;
        // etcd already dropped a cancelled watcher: cancel() would wait for an answer that never comes
        void w.cancel().catch(() => undefined);
        this.relists++;
        const delayMs = this.backoff(Date.now() - watchedAt >= STABLE_WATCH_MS);
        this.log.info({ prefix: this.prefix, reason: err.message, delayMs }, 'watch broken, relisting');
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      } catch (err) {
        this.connected = false;
        this.lastError = (err as Error).message;
        const delayMs = this.backoff(false);
        this.log.warn({ prefix: this.prefix, err: this.lastError, delayMs }, 'list or watch failed, keeping cached state and retrying');
        await new Promise((r) => setTimeout(r, delayMs));
      }
    }
  }
}

