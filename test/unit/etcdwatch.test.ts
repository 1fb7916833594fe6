/**
 * The lean etcd watch (src/controlplane/etcdwatch.ts) against a fake grpc connection: the wire decoding
 * (revisions as numbers, failing closed at 2^53), events in order, a value that is not valid UTF-8 rejected
 * alone, a broken stream resumed from the revision after the last delivered event (not the response header's),
 * an invalid auth token dropped before the retry, a cancel by etcd breaking the watch, and the first attempt's
 * failure rejecting watch(). No real time: fake timers drive the backoff and the creation timeout.
 */
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import { rpc } from '../../src/controlplane/etcdproto.js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { encodeTxn, rawTxnWriter } from '../../src/controlplane/etcdtxn.js';
import { decodeResponse, leanWatch, revisionNumber, type WatchHandlers } from '../../src/controlplane/etcdwatch.js';

const root = rpc;
const WatchResponse = root.lookupType('etcdserverpb.WatchResponse');
const WatchRequest = root.lookupType('etcdserverpb.WatchRequest');

type Ev = { type?: number; key: string | Buffer; value?: string | Buffer; rev: number | string };
function response(o: { created?: boolean; canceled?: boolean; reason?: string; header?: number | string; events?: Ev[] }): Buffer {
  const msg = WatchResponse.fromObject({
    header: { revision: o.header ?? 0 },
    created: o.created ?? false,
    canceled: o.canceled ?? false,
    cancel_reason: o.reason ?? '',
    events: (o.events ?? []).map((e) => ({ type: e.type ?? 0, kv: { key: Buffer.from(e.key), value: Buffer.from(e.value ?? ''), mod_revision: e.rev } })),
  });
  return Buffer.from(WatchResponse.encode(msg).finish());
}

class FakeCall extends EventEmitter {
  readonly writes: Array<Record<string, unknown>> = [];
  cancelled = false;
  constructor(private readonly deserialize: (b: Buffer) => unknown) {
    super();
  }
  write(b: Buffer): void {
    this.writes.push(WatchRequest.toObject(WatchRequest.decode(b), { longs: Number }) as Record<string, unknown>);
  }
  cancel(): void {
    this.cancelled = true;
  }
  /** etcd sends a response (through the same deserializer grpc would use). */
  send(b: Buffer): void {
    this.emit('data', this.deserialize(b));
  }
}

function fakeEtcd(metadataFails = 0) {
  const calls: FakeCall[] = [];
  /** The outcomes of unary calls (Txn), in order: an error, or null for success. */
  const unary: Array<Error | null> = [];
  const unaryTokens: number[] = [];
  const pool = {
    invalidated: 0,
    failed: [] as Error[],
    async withConnection(_s: string, fn: (c: unknown) => unknown) {
      if (metadataFails-- > 0) throw new Error('connect ECONNREFUSED');
      const client = {
        makeBidiStreamRequest: (_p: string, _ser: unknown, deser: (b: Buffer) => unknown) => {
          const c = new FakeCall(deser);
          calls.push(c);
          return c;
        },
        makeUnaryRequest: (_p: string, _s: unknown, _d: unknown, _b: Buffer, _m: unknown, _o: unknown, cb: (err: Error | null) => void) => {
          unaryTokens.push(pool.invalidated);
          queueMicrotask(() => cb(unary.shift() ?? null));
        },
      };
      return fn({ resource: 'host', client, metadata: {} });
    },
    markFailed: (_r: unknown, err: Error) => void pool.failed.push(err),
    globalPolicy: { execute: <T>(fn: () => Promise<T>) => fn() },
    authenticator: { invalidateMetadata: () => void pool.invalidated++ },
  };
  return { etcd: { pool } as unknown as Etcd3, pool, calls, unary, unaryTokens };
}

function recorder() {
  const seen: string[] = [];
  const h: WatchHandlers = {
    put: (kv, rev) => void seen.push(`put ${kv.key}=${kv.value}@${rev}`),
    delete: (key, rev) => void seen.push(`delete ${key}@${rev}`),
    broken: (err) => void seen.push(`broken ${err.message}`),
    connected: (up) => void seen.push(up ? 'up' : 'down'),
    rejected: (key, reason) => void seen.push(`rejected ${key}: ${reason}`),
  };
  return { seen, h };
}

const flush = () => vi.advanceTimersByTimeAsync(0);

/** A watch of p/ from `from` that etcd created (header revision `header`); its first call. */
async function created(from = '1', header = 0) {
  const f = fakeEtcd();
  const { seen, h } = recorder();
  const p = leanWatch(f.etcd, 'p/', from, h);
  await flush();
  const call = f.calls[0]!;
  call.send(response({ created: true, header }));
  await p;
  return { f, seen, call };
}

beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

describe('revisionNumber', () => {
  it('takes numbers, Longs and decimal strings below 2^53, and fails closed at and above it', () => {
    expect(revisionNumber(0)).toBe(0);
    expect(revisionNumber('9007199254740991')).toBe(2 ** 53 - 1);
    expect(revisionNumber({ low: -1, high: 0x1fffff })).toBe(2 ** 53 - 1);
    expect(revisionNumber(undefined)).toBe(0);
    expect(() => revisionNumber('9007199254740992')).toThrow(RangeError);
    expect(() => revisionNumber({ low: 0, high: 0x200000 })).toThrow(/not an integer in \[0, 2\^53\)/);
    expect(() => revisionNumber({ low: 5, high: -1 })).toThrow(RangeError);
    expect(() => revisionNumber(-1)).toThrow(RangeError);
    expect(() => revisionNumber('1e3')).toThrow(RangeError);
  });

  it('decodes a response whose revision is above 2^53 without losing it (the check sees the exact value)', () => {
    const res = decodeResponse(response({ header: '18014398509481985', events: [{ key: 'k', rev: '18014398509481985' }] }));
    expect(() => revisionNumber(res.events[0]!.kv!.mod_revision)).toThrow(/18014398509481985/);
  });
});

describe('leanWatch', () => {
  it('asks for the prefix range from the start revision and delivers events in order, puts and deletes', async () => {
    const f = fakeEtcd();
    const { seen, h } = recorder();
    const p = leanWatch(f.etcd, 'cm/a/', '7', h);
    await flush();
    const c = f.calls[0]!;
    expect(c.writes[0]).toMatchObject({ create_request: { key: Buffer.from('cm/a/'), range_end: Buffer.from('cm/a0'), start_revision: 7 } });
    c.send(response({ created: true, header: 9 }));
    await p;
    c.send(response({ header: 9, events: [{ key: 'cm/a/1', value: 'x', rev: 7 }, { type: 1, key: 'cm/a/2', rev: 8 }, { key: 'cm/a/1', value: 'y', rev: 9 }] }));
    expect(seen).toEqual(['up', 'put cm/a/1=x@7', 'delete cm/a/2@8', 'put cm/a/1=y@9']);
  });

  it('rejects a value that is not valid UTF-8 alone; the next event still arrives', async () => {
    const { f, seen } = await created();
    f.calls[0]!.send(response({ events: [{ key: 'p/bad', value: Buffer.from([0x7b, 0xff, 0x7d]), rev: 2 }, { key: 'p/ok', value: '{}', rev: 3 }] }));
    expect(seen).toEqual(['up', 'rejected p/bad: value is not valid UTF-8', 'put p/ok={}@3']);
  });

  it('breaks (the caller relists) on an event revision at or above 2^53, and delivers nothing after it', async () => {
    const { f, seen } = await created();
    f.calls[0]!.send(response({ events: [{ key: 'p/a', value: '1', rev: '9007199254740992' }, { key: 'p/b', value: '2', rev: 3 }] }));
    expect(seen).toEqual(['up', expect.stringMatching(/^broken mod revision 9007199254740992 is not an integer/)]);
    expect(f.calls[0]!.cancelled).toBe(true);
  });

  it('refuses a start revision at or above 2^53 before any call', async () => {
    const f = fakeEtcd();
    expect(() => leanWatch(f.etcd, 'p/', '9007199254740993', recorder().h)).toThrow(RangeError);
    expect(f.calls).toHaveLength(0);
  });

  it('a broken stream reconnects after the backoff from the revision after the last event, not the header', async () => {
    const { f, seen } = await created('5', 50);
    // a catch-up batch cut short: the header carries the store's revision (50), the events stop at 6
    f.calls[0]!.send(response({ header: 50, events: [{ key: 'p/a', value: '1', rev: 5 }, { key: 'p/b', value: '1', rev: 6 }] }));
    f.calls[0]!.emit('error', Object.assign(new Error('14 UNAVAILABLE: Connection dropped'), { code: 14 }));
    expect(seen.at(-1)).toBe('down');
    expect(f.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(f.calls).toHaveLength(2);
    expect(f.calls[1]!.writes[0]).toMatchObject({ create_request: { start_revision: 7 } });
    f.calls[1]!.send(response({ created: true, header: 50 }));
    f.calls[1]!.send(response({ header: 50, events: [{ key: 'p/c', value: '1', rev: 7 }] }));
    expect(seen.slice(-2)).toEqual(['up', 'put p/c=1@7']);
    expect(f.pool.failed).toHaveLength(1);
  });

  it('drops the auth token etcd called invalid before reconnecting', async () => {
    const { f } = await created();
    f.calls[0]!.emit('error', Object.assign(new Error('3 INVALID_ARGUMENT: etcdserver: invalid auth token'), { code: 3, details: 'etcdserver: invalid auth token' }));
    expect(f.pool.invalidated).toBe(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(f.calls).toHaveLength(2);
  });

  it('a cancel by etcd (compaction) breaks the watch, also when it answers the creation', async () => {
    const f = fakeEtcd();
    const { seen, h } = recorder();
    const p = leanWatch(f.etcd, 'p/', '1', h);
    await flush();
    f.calls[0]!.send(response({ created: true, canceled: true, reason: 'mvcc: required revision has been compacted' }));
    await p;
    await flush();
    expect(seen).toEqual(['broken Watcher canceled: mvcc: required revision has been compacted']);
  });

  it('rejects watch() when etcd is unreachable or does not create the watch in time; a cancel stops everything', async () => {
    await expect(leanWatch(fakeEtcd(1).etcd, 'p/', '1', recorder().h)).rejects.toThrow(/ECONNREFUSED/);
    const f = fakeEtcd();
    const p = leanWatch(f.etcd, 'p/', '1', recorder().h);
    const caught = p.catch((e: Error) => e.message);
    await vi.advanceTimersByTimeAsync(5000);
    expect(await caught).toMatch(/not created within 5000 ms/);
    expect(f.calls[0]!.cancelled).toBe(true);
    const g = fakeEtcd();
    const q = leanWatch(g.etcd, 'p/', '1', recorder().h);
    await flush();
    g.calls[0]!.send(response({ created: true }));
    await (await q).cancel();    expect(g.calls[0]!.cancelled).toBe(true);
    g.calls[0]!.emit('error', new Error('1 CANCELLED'));
    await vi.advanceTimersByTimeAsync(5000);
    expect(g.calls).toHaveLength(1);
  });
});

describe('leanWatch: resume point, repeated failures, what etcd never sends (review s6prop-r1)', () => {
  const dropped = () => Object.assign(new Error('14 UNAVAILABLE: Connection dropped'), { code: 14 });

  it('asks for progress notifications; one moves the resume point, the created header does not', async () => {
    const { f } = await created('5', 40);
    expect(f.calls[0]!.writes[0]).toMatchObject({ create_request: { start_revision: 5, progress_notify: true } });
    f.calls[0]!.emit('error', dropped());
    await vi.advanceTimersByTimeAsync(100);
    expect(f.calls[1]!.writes[0]).toMatchObject({ create_request: { start_revision: 5 } });
    f.calls[1]!.send(response({ created: true, header: 60 }));
    f.calls[1]!.send(response({ header: 52 })); // a progress notification: nothing under p/ up to 52
    f.calls[1]!.emit('error', dropped());
    await vi.advanceTimersByTimeAsync(1000);
    expect(f.calls[2]!.writes[0]).toMatchObject({ create_request: { start_revision: 53 } });
  });

  it('breaks (the caller relists) on a response too large or not decodable instead of reconnecting to it forever', async () => {
    for (const err of [
      Object.assign(new Error('8 RESOURCE_EXHAUSTED: Received message larger than max (80000000 vs 67108864)'), { code: 8 }),
      Object.assign(new Error('13 INTERNAL: Response message parsing error: index out of range'), { code: 13 }),
    ]) {
      const { f, seen } = await created();
      f.calls[0]!.emit('error', err);
      await vi.advanceTimersByTimeAsync(5000);
      expect(f.calls).toHaveLength(1);
      expect(seen.at(-1)).toMatch(/^broken /);
    }
  });

  it('a created answer alone does not reset the backoff; a delivered event or a stream up 10 s does', async () => {
    const { f } = await created();
    const cycle = async (n: number, wait: number) => {
      f.calls[n]!.emit('error', dropped());
      await vi.advanceTimersByTimeAsync(wait - 1);
      expect(f.calls).toHaveLength(n + 1);
      await vi.advanceTimersByTimeAsync(1);
      expect(f.calls).toHaveLength(n + 2);
      f.calls[n + 1]!.send(response({ created: true }));
    };
    await cycle(0, 100);
    await cycle(1, 200);
    await cycle(2, 400);
    f.calls[3]!.send(response({ events: [{ key: 'p/a', value: '1', rev: 2 }] }));
    await cycle(3, 100);
    await cycle(4, 200);
    await vi.advanceTimersByTimeAsync(10_000); // a stream up 10 s counts as stable
    await cycle(5, 100);
  });

  it('breaks on an event without a kv, an unknown event type, or a revision going backwards', async () => {
    const raw = (events: unknown[]) => Buffer.from(WatchResponse.encode(WatchResponse.fromObject({ header: { revision: 9 }, events })).finish());
    const kv = (rev: number) => ({ key: Buffer.from('p/a'), value: Buffer.from('1'), mod_revision: rev });
    const cases: Array<[Buffer, RegExp]> = [
      [raw([{ type: 0 }]), /without a key-value/],
      [raw([{ type: 2, kv: kv(3) }]), /unknown event type 2/],
      [raw([{ type: 0, kv: kv(3) }]), /mod revision 3 went back below 4/],
    ];
    for (const [msg, why] of cases) {
      const { f, seen } = await created('1');
      f.calls[0]!.send(response({ events: [{ key: 'p/x', value: '0', rev: 4 }, { key: 'p/y', value: '0', rev: 4 }] })); // one Txn
      f.calls[0]!.send(msg);
      expect(seen.slice(1, 3)).toEqual(['put p/x=0@4', 'put p/y=0@4']);
      expect(seen.at(-1)).toMatch(why);
      expect(seen).toHaveLength(4);
      expect(f.calls[0]!.cancelled).toBe(true);
    }
  });

  it('regression: a progress notification at or below the resume point is ignored, not a break (etcd-io/etcd#20221)', async () => {
    const { f, seen } = await created('1');
    f.calls[0]!.send(response({ events: [{ key: 'p/x', value: '0', rev: 4 }] }));
    f.calls[0]!.send(response({ header: 1 })); // before: "progress revision 1 went back below 4", a relist
    f.calls[0]!.send(response({ header: 4 }));
    f.calls[0]!.send(response({ events: [{ key: 'p/y', value: '0', rev: 5 }] }));
    expect(seen.slice(1)).toEqual(['put p/x=0@4', 'put p/y=0@5']);
    expect(f.calls[0]!.cancelled).toBe(false);
  });
});

describe('encodeTxn', () => {
  it('encodes puts and deletes, in order, as the success branch of a Txn without compares', () => {
    const T = rpc.lookupType('etcdserverpb.TxnRequest');
    const back = T.toObject(T.decode(encodeTxn([['a', '1'], ['b', null], ['c', '']])), { bytes: String }) as Record<string, unknown>;
    expect(back).toEqual({
      success: [
        { request_put: { key: Buffer.from('a').toString('base64'), value: Buffer.from('1').toString('base64') } },
        { request_delete_range: { key: Buffer.from('b').toString('base64') } },
        { request_put: { key: Buffer.from('c').toString('base64'), value: '' } }, // an empty value is still a put of ''
      ],
    });
  });

  it('puts under a lease given as etcd3 gives it (an int64 as a decimal string, past 2^53 too), deletes as they are', () => {
    const T = rpc.lookupType('etcdserverpb.TxnRequest');
    const lease = '7587883542473719809';
    const back = T.toObject(T.decode(encodeTxn([['s', '{}'], ['d', null]], lease)), { bytes: String, longs: String }) as { success: Array<Record<string, { lease?: string }>> };
    expect(back.success[0]!.request_put!.lease).toBe(lease);
    expect(back.success[1]).toEqual({ request_delete_range: { key: Buffer.from('d').toString('base64') } });
  });
});

describe('rawTxnWriter', () => {
  const invalidToken = () => Object.assign(new Error('3 INVALID_ARGUMENT: etcdserver: invalid auth token'), { code: 3, details: 'etcdserver: invalid auth token' });

  it('after an invalid auth token, drops it and sends the Txn once more at once with a new one', async () => {
    const f = fakeEtcd();
    f.unary.push(invalidToken(), null);
    await rawTxnWriter(f.etcd)([['k', 'v']]);
    expect(f.unaryTokens).toEqual([0, 1]); // the second attempt came after the token was dropped
  });

  it('retries that error only once, and never other refusals', async () => {
    const f = fakeEtcd();
    f.unary.push(invalidToken(), invalidToken(), null);
    await expect(rawTxnWriter(f.etcd)([['k', 'v']])).rejects.toThrow(/invalid auth token/);
    expect(f.unaryTokens).toHaveLength(2);
    const g = fakeEtcd();
    g.unary.push(Object.assign(new Error('7 PERMISSION_DENIED: etcdserver: permission denied'), { code: 7, details: 'etcdserver: permission denied' }), null);
    await expect(rawTxnWriter(g.etcd)([['k', 'v']])).rejects.toThrow(/permission denied/);
    expect(g.unaryTokens).toHaveLength(1);
  });
});
