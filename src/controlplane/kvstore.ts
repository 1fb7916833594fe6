/**
 * The small slice of etcd that wiremesh consumers need, as an interface they
 * define (Cilium style), with the etcd3-backed implementation. Everything that
 * reads state goes through ListWatcher, which implements the list-then-watch
 * pattern once for the agent and the kvstoremesh replicator alike.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry, wrap, type IBackoff } from 'cockatiel';
import { Etcd3, isRecoverableError, Range, type IOptions } from 'etcd3';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { leanWatch, textKV, VALUE_NOT_UTF8, type Rejected, type WatchHandlers } from './etcdwatch.js';
import { DigestTable } from './digesttable.js';
import { tryDecode, type Codec } from './records/codec.js';
import type { Rejections } from './records/rejections.js';

export interface KV {
  key: string;
  value: string;
}

export type { Rejected, WatchHandlers } from './etcdwatch.js';

export interface KVStore {
  /** `rejected`: records refused alone (etcd: bytes that are not valid UTF-8), left out of `kvs`. */
  list(prefix: string, rejected?: Rejected): Promise<{ revision: string; kvs: KV[] }>;
  /**
   * The same snapshot as list, handed over a page at a time (every page at the
   * first page's revision); resolves to that revision. Optional: ListWatcher
   * uses it when present, so a 160k-key prefix never sits in memory whole.
   */
  listPages?(prefix: string, page: (kvs: KV[]) => void, rejected?: Rejected): Promise<string>;
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

export interface EtcdOptions {
  endpoints: string[];
  /** PEM files for TLS; all three for mutual TLS. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** The same as inline PEM (remote specs carry their credentials this way). */
  ca?: string;
  cert?: string;
  key?: string;
  username?: string;
  password?: string;
  dialTimeoutMs?: number;
  /**
   * HTTP/2 keepalive pings on the connection: one after timeMs without traffic, the connection (and every
   * watch on it) failed when no answer came within timeoutMs. Off by default: grpc-js judges the answer on
   * the event loop, so a process busy longer than timeoutMs in one synchronous pass would take its own stall
   * for a dead etcd (51be69b took it back from the agent). etcd refuses pings closer than 5 s
   * (--grpc-keepalive-min-time) and pings without an open stream, so timeMs ≥ 5000 and none are sent idle.
   */
  keepalive?: { timeMs: number; timeoutMs: number };
}

/**
 * etcd refuses a request with "revision of auth store is old" when users or
 * roles changed between its auth check and its apply (e.g. `clustermesh
 * node-credentials` for another node while this agent writes). The request was
 * not applied, so a retry is safe; etcd's own Go client retries it too. Without
 * this, the first endpoint registration of a node that starts while the
 * operator adds other nodes failed (the docker-compose testbed's setup job did
 * exactly that).
 */
export function isAuthRevisionRace(err: Error): boolean {
  return /revision of auth store is old/.test(err.message);
}

export function connectEtcd(o: EtcdOptions): Etcd3 {
  // Watch responses during a bulk load can be large; lists are paginated (EtcdStore.list).
  const opts: IOptions = {
    hosts: o.endpoints,
    dialTimeout: o.dialTimeoutMs ?? 3000,
    grpcOptions: {
      'grpc.max_receive_message_length': 64 << 20,
      ...(o.keepalive ? { 'grpc.keepalive_time_ms': Math.max(5000, o.keepalive.timeMs), 'grpc.keepalive_timeout_ms': o.keepalive.timeoutMs } : {}),
    },
    // etcd3's defaults (watch backoff up to 30 s, a host circuit open 5 s after
    // 3 failures) left agents 12-13 s behind a restarted etcd (npm run chaos,
    // etcd-loss); state should flow again within about a second.
    faultHandling: {
      // every call: etcd3's default (3 attempts on recoverable errors), inside up to 20 attempts for the
      // auth-revision race (an operator issuing many nodes' credentials bumps the revision every few ms)
      global: wrap(
        retry(handleWhen(isAuthRevisionRace), { maxAttempts: 20, backoff: new ExponentialBackoff({ initialDelay: 20, maxDelay: 500 }) }),
        retry(handleWhen(isRecoverableError), { maxAttempts: 3 }),
      ),
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      // etcd3 calls next() on it first (it takes the factory its own default is)
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as unknown as IBackoff<unknown>,
    },
  };
  const ca = o.ca ? Buffer.from(o.ca) : o.caFile ? readFileSync(o.caFile) : undefined;
  if (ca) {
    const cert = o.cert ? Buffer.from(o.cert) : o.certFile ? readFileSync(o.certFile) : undefined;
    const key = o.key ? Buffer.from(o.key) : o.keyFile ? readFileSync(o.keyFile) : undefined;
    opts.credentials = { rootCertificate: ca, ...(cert ? { certChain: cert } : {}), ...(key ? { privateKey: key } : {}) };
  }
  if (o.username) opts.auth = { username: o.username, password: o.password ?? '' };
  return new Etcd3(opts);
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
  async listPages(prefix: string, page: (kvs: KV[]) => void, rejected?: Rejected): Promise<string> {
    const end = Range.prefix(prefix).end;
    let start: Buffer = Buffer.from(prefix);
    let revision: string | undefined;
    for (;;) {
      const b = this.client.getAll().inRange({ start, end }).limit(LIST_PAGE);
      if (revision) b.revision(revision);
      const res = await b.exec();
      revision ??= res.header.revision;
      page(res.kvs.flatMap((kv) => textKV(kv, rejected) ?? []));
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

export interface ListWatchSink {
  upsert(key: string, value: string): void;
  remove(key: string): void;
  /** Called after every complete (re)list: the sink now mirrors the prefix. */
  synced?(): void;
}

/** A sink of decoded records. */
export interface RecordSink<T> {
  upsert(key: string, value: T): void;
  remove(key: string): void;
  synced?(): void;
}

/**
 * Decodes every value with `codec` before `sink` sees it. A value that does
 * not decode is rejected alone (logged, counted in `rejections` under the
 * cluster its key names) and the sink keeps the key's previous good value;
 * `origin` names that cluster from the key.
 */
export function decoded<T>(codec: Codec<T>, sink: RecordSink<T>, rejections: Rejections, origin: (key: string) => string = () => ''): ListWatchSink {
  return {
    upsert: (key, value) => {
      const r = tryDecode(codec, key, value);
      if (r.ok) sink.upsert(key, r.value);
      else rejections.add(r.error, origin(key));
    },
    remove: (key) => sink.remove(key),
    ...(sink.synced ? { synced: () => sink.synced!() } : {}),
  };
}

/**
 * Mirrors a prefix into `sink`: list, then watch from revision+1. When the watch
 * breaks (compaction, cancel) it lists again and removes what vanished, so no
 * deletion is lost. While etcd is unreachable the sink keeps what it has.
 */
/**
 * A 48-bit digest of a value, for ListWatcher's "has this key's value changed"
 * test: HMAC-SHA-256 under a key drawn once per process, so nobody who writes
 * a record can aim for another value's digest (a collision would make an agent
 * keep a stale value: several writers share some prefixes, e.g. a cluster's
 * agents its identities). Two values agree by chance with probability 2^-48.
 */
const DIGEST_KEY = randomBytes(32);
export function valueDigest(s: string): number {
  return createHmac('sha256', DIGEST_KEY).update(s).digest().readUIntLE(0, 6);
}

/** A watch up this long (ms) before it broke counts as stable: the next relist starts at once. */
export const STABLE_WATCH_MS = 10_000;

export class ListWatcher {
  /**
   * Key → digest of its value (valueDigest), not the value: the sink holds what
   * it decoded, and a second copy of every value text cost ~350 B per remote
   * endpoint (bench/memory.ts); digests in a Float64 column, not a heap
   * number each (digesttable.ts).
   */
  private readonly known = new DigestTable();
  private cancelWatch: (() => Promise<void>) | undefined;
  private stopped = false;
  /**
   * The wait before the next list, after a failed list, a failed watch creation or a broken watch: 0 only
   * after a watch that stayed up STABLE_WATCH_MS, else 200 ms doubling to 5 s. One backoff for all three,
   * reset by a stable watch alone, so a remote cannot make us relist in a loop by breaking every new watch
   * (a response over the channel's limit, an event etcd never sends), even after delivering one event
   * first, nor by serving the list and failing the watch creation.
   */
  private relistDelayMs = 0;
  relists = 0;
  connected = false;
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

  keys(): string[] {
    return [...this.known.keys()];
  }

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
      this.log.error({ prefix: this.prefix, key, op, err: (err as Error).message }, 'sink failed on a record; skipped');
    }
  }

  /** Sink calls that threw (each skipped). */
  sinkErrors = 0;
  /** Watch events and listed records the store refused alone (not valid UTF-8): the key keeps its previous value. */
  rejectedEvents = 0;

  private refused(key: string, reason: string): void {
    this.rejectedEvents++;
    this.log.warn({ prefix: this.prefix, key, reason }, 'record rejected');
  }

  /**
   * Lists the prefix and hands the sink what changed: the list's revision, or
   * undefined once stopped. Its own frame: the listed keys and values are
   * garbage when it returns (held in cycle's frame they stayed alive as long as
   * the watch ran, ~600 B per remote endpoint).
   */
  private async relist(): Promise<string | undefined> {
    const seen = new Set<string>();
    const take = (kvs: KV[]) => {
      if (this.stopped) return;
      for (const kv of kvs) {
        seen.add(kv.key);
        const d = valueDigest(kv.value);
        if (this.known.get(kv.key) !== d) {
          this.known.set(kv.key, d);
          this.deliver('upsert', kv.key, () => this.sink.upsert(kv.key, kv.value));
        }
      }
    };
    // a key whose value is refused keeps its previous value (as on a watch), so it counts as seen
    const rejected: Rejected = (key, reason) => {
      if (reason === VALUE_NOT_UTF8) seen.add(key);
      this.refused(key, reason);
    };
    let revision: string;
    if (this.store.listPages) revision = await this.store.listPages(this.prefix, take, rejected);
    else {
      const r = await this.store.list(this.prefix, rejected);
      take(r.kvs);
      revision = r.revision;
    }
    if (this.stopped) return undefined;
    for (const key of [...this.known.keys()]) {
      if (!seen.has(key)) {
        this.known.delete(key);
        this.deliver('remove', key, () => this.sink.remove(key));
      }
    }
    return revision;
  }

  /** The next wait (ms): 0 after a stable watch, else 200 ms doubling to 5 s (relistDelayMs). */
  private backoff(stable: boolean): number {
    this.relistDelayMs = stable ? 0 : Math.min(Math.max(this.relistDelayMs * 2, 200), 5000);
    return this.relistDelayMs;
  }

  private async cycle(): Promise<void> {
    while (!this.stopped) {
      try {
        const revision = await this.relist();
        if (revision === undefined) return;
        this.deliver('synced', this.prefix, () => this.sink.synced?.());
        this.firstSynced();
        this.connected = true;
        this.lastError = undefined;
        const next = (BigInt(revision) + 1n).toString();
        let broken!: (err: Error) => void;
        const brokenP = new Promise<Error>((resolve) => (broken = resolve));
        const watchedAt = Date.now();
        const w = await this.store.watch(this.prefix, next, {
          put: (kv) => {
            const d = valueDigest(kv.value);
            if (this.known.get(kv.key) === d) return;
            this.known.set(kv.key, d);
            this.deliver('upsert', kv.key, () => this.sink.upsert(kv.key, kv.value));
          },
          delete: (key) => {
            if (!this.known.delete(key)) return;
            this.deliver('remove', key, () => this.sink.remove(key));
          },
          broken: (err) => broken(err),
          connected: (up) => (this.connected = up),
          rejected: (key, reason) => this.refused(key, reason),
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

