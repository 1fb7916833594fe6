/**
 * A lean etcd watch for EtcdStore.watch (issue 16: ~40 % of kvstoremesh's CPU per copied write was etcd3
 * receiving watch events). etcd3 loads rpc.proto with proto-loader `longs: String, defaults: true`, so every
 * event became a plain object with every field filled in and every int64 turned into a decimal string, then
 * one EventEmitter round per event plus a bignumber.js sum per response. Here the same rpc.proto (etcd3 ships
 * it) is loaded once with protobufjs and decoded lazily: keys and values stay Buffers until the handler gets
 * them, revisions are checked to fit a double exactly (≤ Number.MAX_SAFE_INTEGER, else the watch fails closed),
 * no defaults objects, and one pass over a WatchResponse's events.
 *
 * What is kept from etcd3: the connection (etcd3's grpc client for the Watch service on the host it picks,
 * so the same channel, TLS credentials, channel options such as the 64 MiB receive limit, and its host
 * circuit breaker), the auth token metadata (re-fetched after etcd says the token is invalid), and its
 * semantics: a compacted or cancelled watch breaks (the caller relists), a broken stream reconnects with
 * backoff from the revision after the last event delivered or the last progress notification (the watch asks
 * for them, as etcd3 does, so a quiet prefix does not resume from a long-compacted revision).
 *
 * Differences, on purpose: one grpc stream per watch (cancel is the stream's RST, immediate); a resume uses the
 * last delivered event's revision, not the response header's (etcd sends the store's current revision in the
 * header of a catch-up batch that may be cut short, so resuming from the header could skip events); the
 * creation of a watch waits at most `createTimeoutMs`, then watch() rejects (the caller retries); a value
 * that is not valid UTF-8 is rejected alone (handlers.rejected) instead of reaching the sink as U+FFFD text;
 * a response grpc refuses (too large, not decodable) breaks the watch instead of being fetched again on every
 * reconnect; what etcd never sends (an event without a kv, an unknown type, a revision going back) breaks it.
 *
 * Bounds: one response is at most the channel's receive limit (64 MiB, connectEtcd; beyond it the watch
 * breaks); the backoff returns to its start only after a delivered response or a stream up `stableMs`;
 * events are handed to the handlers synchronously as each response arrives, so nothing queues here beyond
 * grpc's flow control.
 */
import { isUtf8 } from 'node:buffer';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { castGrpcError, ClientClosedError, EtcdInvalidAuthTokenError, Range, type Etcd3 } from 'etcd3';
import { encodeMessage, etcdPool, rpc, type Pool } from './etcdproto.js';

/** What a store's watch calls (KVStore.watch, kvstore.ts, re-exports it): defined here, where it is called. */
export interface WatchHandlers {
  /** kv.createRevision: etcd's create_revision (the key's incarnation: a delete and a put give a new one). */
  put(kv: { key: string; value: string; createRevision?: string }, revision: string): void;
  delete(key: string, revision: string): void;
  /** The watch cannot continue (compaction, cancel): the caller must relist. */
  broken(err: Error): void;
  connected?(up: boolean): void;
  /** An event the store refused alone (a key or value that is not valid UTF-8); the watch goes on. */
  rejected?: Rejected;
  /**
   * A key that is not valid UTF-8 (hex, as `rejected` named it) was deleted: not a refusal (nothing of it was
   * taken), but whoever remembers its refusal can forget it (kvstore.ts ListWatcher's refused keys).
   */
  unreadableDeleted?(hexKey: string): void;
}

/**
 * A record a store refused alone (`key` as text, or hex when the key itself is not valid UTF-8);
 * `createRevision`, when known, is the refused put's create_revision (a new incarnation of the key, after a
 * delete, must not leave the old incarnation's value in force: kvstore.ts ListWatcher).
 */
export type Rejected = (key: string, reason: string, createRevision?: string) => void;

/** Why a record is refused as text (handlers.rejected's reason); the list reports the same (kvstore.ts). */
export const KEY_NOT_UTF8 = 'key is not valid UTF-8';
export const VALUE_NOT_UTF8 = 'value is not valid UTF-8';

/** A key as text, or undefined after reporting it (as hex) when it is not valid UTF-8. */
export function textKey(key: Buffer, rejected: Rejected | undefined): string | undefined {
  if (isUtf8(key)) return key.toString();
  rejected?.(key.toString('hex'), KEY_NOT_UTF8);
  return undefined;
}

/**
 * A key and value as text, or undefined after reporting the refusal: bytes that are not valid UTF-8 are
 * refused alone rather than turned into U+FFFD (two binary keys would merge, and a deletion would miss).
 * A create revision that is not an integer in [0, 2^53) (never from etcd) is left out: unknown, as from a
 * store that has none (createRevisionText).
 */
export function textKV(kv: { key: Buffer; value: Buffer; create_revision?: Int64 | string }, rejected: Rejected | undefined): { key: string; value: string; createRevision?: string } | undefined {
  const key = textKey(kv.key, rejected);
  if (key === undefined) return undefined;
  const createRevision = createRevisionText(kv.create_revision);
  if (isUtf8(kv.value)) return { key, value: kv.value.toString(), ...(createRevision ? { createRevision } : {}) };
  rejected?.(key, VALUE_NOT_UTF8, createRevision);
  return undefined;
}

/**
 * A create revision in decimal, or undefined (unknown) when absent or not an integer in [0, 2^53). Unknown
 * rather than a throw: thrown, it failed a whole list page (EtcdStore.listPages, retried forever) and the
 * identity collector's sweep, so one hostile record took every other one down with it (review of s7fix, #3).
 * Unknown costs only the detection of a new incarnation of that key (kvstore.ts ListWatcher.reborn), which
 * the store that sends it could as well hide by sending no delete; the key's value is still checked alone.
 */
export function createRevisionText(c: Int64 | string): string | undefined {
  if (c === undefined || c === null) return undefined;
  try {
    return String(revisionNumber(c, 'create revision'));
  } catch {
    return undefined;
  }
}

const WatchRequest = rpc.lookupType('etcdserverpb.WatchRequest');
const WatchResponse = rpc.lookupType('etcdserverpb.WatchResponse');

/** An int64 as protobufjs decodes it: a number, or a Long when the `long` package is loaded. */
type Int64 = number | { low: number; high: number } | null | undefined;

export interface WireKV {
  key: Buffer;
  value: Buffer;
  mod_revision: Int64;
  create_revision: Int64;
}
/** A decoded WatchResponse; absent fields read as protobufjs's prototype defaults (false, '', 0, []). */
export interface WireWatchResponse {
  header?: { revision: Int64 } | null;
  created: boolean;
  canceled: boolean;
  compact_revision: Int64;
  cancel_reason: string;
  events: Array<{ type: number; kv?: WireKV | null }>;
}

const PUT = 0; // mvccpb.Event.EventType
const DELETE = 1;
/** grpc status codes after which the same response would come again on a resume (too large, or not decodable). */
const RESOURCE_EXHAUSTED = 8;
const INTERNAL = 13;

/**
 * A stream error that a reconnect from the same revision would only repeat: grpc refused a response larger than
 * the channel's receive limit (RESOURCE_EXHAUSTED) or could not decode one (INTERNAL "Response message parsing
 * error"). The watch breaks instead, and the caller relists through the paginated list.
 */
function repeats(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return code === RESOURCE_EXHAUSTED || (code === INTERNAL && /Response message parsing error/.test(err.message));
}

/**
 * A revision as a number: etcd's int64 revisions fit a double exactly up to 2^53 − 1; above that (or
 * negative) this throws a RangeError, so a watch fails closed instead of mis-ordering or re-delivering.
 */
export function revisionNumber(v: Int64 | string, what = 'revision'): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v) && v >= 0) return v;
  } else if (typeof v === 'string') {
    if (/^\d{1,16}$/.test(v) && Number.isSafeInteger(Number(v))) return Number(v);
  } else if (typeof v.low === 'number' && typeof v.high === 'number' && v.high >= 0 && v.high <= 0x1fffff) {
    return v.high * 0x1_0000_0000 + (v.low >>> 0);
  }
  throw new RangeError(`${what} ${String(v)} is not an integer in [0, 2^53)`);
}

export function encodeCreate(prefix: string, startRevision: number): Buffer {
  const { start: key, end: range_end } = Range.prefix(prefix);
  return encodeMessage(WatchRequest, { create_request: { key, range_end, start_revision: startRevision, progress_notify: true } });
}

export function decodeResponse(buf: Buffer): WireWatchResponse {
  return WatchResponse.decode(buf) as unknown as WireWatchResponse;
}

export interface LeanWatchOptions {
  /** How long one attempt waits for etcd's "created" answer (ms) before it counts as failed. */
  createTimeoutMs: number;
  /** Reconnect backoff after a broken stream: doubled from initialMs up to maxMs (ms). */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** A stream up this long (ms) before it broke counts as stable: the backoff starts again from initialMs. */
  stableMs: number;
}
export const DEFAULT_LEAN_WATCH: LeanWatchOptions = { createTimeoutMs: 5000, initialBackoffMs: 100, maxBackoffMs: 1000, stableMs: 10_000 };

/**
 * Watches every key under `prefix` from `fromRevision` (a decimal string). Resolves once etcd created the
 * watch; rejects when the first attempt fails (unreachable, timeout, a revision ≥ 2^53) so the caller can
 * relist and retry. Handlers are called synchronously, in revision order, per response.
 */
export function leanWatch(etcd: Etcd3, prefix: string, fromRevision: string, h: WatchHandlers, o: LeanWatchOptions = DEFAULT_LEAN_WATCH): Promise<{ cancel(): Promise<void> }> {
  const w = new LeanWatch(etcdPool(etcd), prefix, revisionNumber(fromRevision, 'start revision'), h, o);
  return w.first.then(() => ({ cancel: () => w.cancel() }));
}

class LeanWatch {
  private call: ClientDuplexStream<Buffer, WireWatchResponse> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private up = false;
  private created = false;
  /** When the current stream was created (ms, Date.now()): a long-lived stream resets the backoff. */
  private upSince = 0;
  /** The lowest revision the next event may carry: the resume point, then the last event's (a Txn shares one). */
  private floor = 0;
  private backoffMs: number;
  private settle!: { resolve: () => void; reject: (err: Error) => void };
  readonly first = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));

  constructor(
    private readonly pool: Pool,
    private readonly prefix: string,
    /** The revision the next attempt starts from: one past the last event delivered. */
    private next: number,
    private readonly h: WatchHandlers,
    private readonly o: LeanWatchOptions,
  ) {
    this.backoffMs = o.initialBackoffMs;
    this.open();
  }

  cancel(): Promise<void> {
    this.stop();
    return Promise.resolve();
  }

  private stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    const c = this.call;
    this.call = undefined;
    c?.cancel();
  }

  private open(): void {
    this.timer = undefined;
    if (this.stopped) return;
    let resource: unknown;
    this.pool
      .withConnection('Watch', (c) => {
        resource = c.resource;
        return c.client.makeBidiStreamRequest<Buffer, WireWatchResponse>('/etcdserverpb.Watch/Watch', (b) => b, decodeResponse, c.metadata, {});
      })
      .then((call) => {
        call.on('error', (err: Error) => this.failed(call, resource, err));
        if (this.stopped) return void call.cancel();
        this.call = call;
        this.timer = setTimeout(() => this.failed(call, resource, new Error(`watch of ${this.prefix} not created within ${this.o.createTimeoutMs} ms`)), this.o.createTimeoutMs);
        call.on('data', (res: WireWatchResponse) => this.onResponse(call, res));
        call.on('end', () => this.failed(call, resource, new Error('The etcd watch stream was unexpectedly ended')));
        this.floor = this.next;
        call.write(encodeCreate(this.prefix, this.next));
      })
      .catch((err: Error) => this.failed(undefined, resource, err));
  }

  /** A stream (or the attempt to open one) failed: the first attempt rejects, later ones reconnect with backoff. */
  private failed(call: ClientDuplexStream<Buffer, WireWatchResponse> | undefined, resource: unknown, err: Error): void {
    if (this.stopped || call !== this.call) return;
    clearTimeout(this.timer);
    this.call = undefined;
    call?.cancel();
    const cast = castGrpcError(err);
    if (cast instanceof EtcdInvalidAuthTokenError) this.pool.authenticator.invalidateMetadata();
    if (resource !== undefined) this.pool.markFailed(resource, cast);
    if (this.up) {
      this.up = false;
      if (Date.now() - this.upSince >= this.o.stableMs) this.backoffMs = this.o.initialBackoffMs;
      this.h.connected?.(false);
    }
    if (this.created && repeats(err)) return this.broken(cast);
    if (!this.created || cast instanceof ClientClosedError) {
      this.stopped = true;
      if (this.created) this.h.broken(cast);
      else this.settle.reject(cast);
      return;
    }
    this.timer = setTimeout(() => this.open(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, this.o.maxBackoffMs);
  }

  /** The watch ends for good: the caller relists. */
  private broken(err: Error): void {
    this.stop();
    if (this.created) this.h.broken(err);
    else {
      // etcd refused the creation itself (a compacted start revision, permission): the caller sees it as a
      // watch that broke at once, as etcd3 reported it
      this.created = true;
      this.settle.resolve();
      queueMicrotask(() => this.h.broken(err));
    }
  }

  private onResponse(call: ClientDuplexStream<Buffer, WireWatchResponse>, res: WireWatchResponse): void {
    if (this.stopped || call !== this.call) return;
    if (res.canceled) return this.broken(new Error(`Watcher canceled: ${res.cancel_reason || `compacted at ${String(res.compact_revision)}`}`));
    if (res.created) {
      clearTimeout(this.timer);
      // the backoff is not reset here: a response that fails after every creation (too large) must not
      // reconnect every initialMs; it resets on a delivered response or a stream that stayed up (failed())
      this.up = true;
      this.upSince = Date.now();
      if (!this.created) {
        this.created = true;
        this.settle.resolve();
      }
      this.h.connected?.(true);
    }
    try {
      if (!res.created && res.events.length === 0) return this.progress(res);
      this.deliver(res);
    } catch (err) {
      return this.broken(err as Error);
    }
  }

  /**
   * A response with no events that neither creates nor cancels is a progress notification (progress_notify),
   * which etcd sends only to a watcher that has caught up: nothing under the prefix changed up to the header's
   * revision, so a resume may start after it (as etcd3 does). Without this a quiet prefix would resume from
   * its last event, long compacted, and relist everything after any reconnect. The created response's header
   * is not used: it is the store's revision, not what this watcher has seen. One at or below the resume point
   * is ignored (its revision cannot move the resume point back).
   */
  private progress(res: WireWatchResponse): void {
    const rev = revisionNumber(res.header?.revision, 'progress revision');
    // below the resume point it says nothing new (it cannot skip an event): ignored, not a break, as etcd
    // before 3.4.38 / 3.5.22 sends one from a member behind the watch's start revision (etcd-io/etcd#20221)
    if (rev + 1 <= this.next) return;
    this.next = rev + 1;
    this.floor = this.next;
    this.backoffMs = this.o.initialBackoffMs;
  }

  /**
   * Hands a response's events to the handlers. Fails closed (throws; the watch breaks and the caller relists)
   * on what etcd never sends: an event without a kv, an unknown event type, or a revision below the last one
   * seen (a hostile server moving the resume point back). Events of one Txn share a revision.
   */
  private deliver(res: WireWatchResponse): void {
    if (res.events.length > 0) this.backoffMs = this.o.initialBackoffMs;
    for (const ev of res.events) {
      const kv = ev.kv;
      if (!kv) throw new Error(`watch of ${this.prefix}: an event without a key-value`);
      if (ev.type !== PUT && ev.type !== DELETE) throw new Error(`watch of ${this.prefix}: unknown event type ${String(ev.type)}`);
      const rev = revisionNumber(kv.mod_revision, 'mod revision');
      if (rev < this.floor) throw new RangeError(`mod revision ${rev} went back below ${this.floor}`);
      this.floor = rev;
      this.next = rev + 1;
      if (ev.type === DELETE) {
        // a binary key's delete refuses nothing (review of s8adm: counted as a refusal and remembered, it let a
        // remote grow ListWatcher's refused keys by a put and a delete at a time, its etcd holding none)
        const key = textKey(kv.key, undefined);
        if (key !== undefined) this.h.delete(key, String(rev));
        else this.h.unreadableDeleted?.(kv.key.toString('hex'));
      } else {
        const text = textKV(kv, this.h.rejected);
        if (text) this.h.put(text, String(rev));
      }
      if (this.stopped) return;
    }
  }
}
