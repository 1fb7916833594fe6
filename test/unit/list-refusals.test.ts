// The readers that list a prefix themselves (not through ListWatcher) count what they refuse, as ListWatcher's
// sinks do: the identity collector (kvstoremesh) and the agent's namespace load. Before, the store's refusals
// (bytes that are not valid UTF-8) and the collector's decode failures were dropped unseen.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { statePrefix, stateKey } from '../../src/controlplane/keys.js';
import type { Etcd3 } from 'etcd3';
import { textKV, VALUE_NOT_UTF8 } from '../../src/controlplane/etcdwatch.js';
import { EtcdStore } from '../../src/controlplane/kvstore.js';
import { KVStoreMeshMetrics } from '../../src/controlplane/meshmetrics.js';
import { RecordError, Rejections } from '../../src/controlplane/records/index.js';
import { etcdCollectorStore, IdentityCollector, MAX_ABANDONED_SWEEPS, type CollectorStore } from '../../src/identity/allocator.js';
import { silentLogger } from '../../src/log.js';

describe('list() callers count their refusals', () => {
  it('regression: the identity collector counts a record the store refused and one that does not decode (logged, in metrics)', async () => {
    const prefix = statePrefix('identities', 'c1');
    const store: CollectorStore = {
      list: async (p, rejected) => {
        expect(p).toBe(prefix);
        rejected?.(stateKey('identities', 'c1', '1001'), VALUE_NOT_UTF8, '4');
        return [{ key: stateKey('identities', 'c1', '1002'), value: '{', modRevision: '5' }];
      },
      keys: async () => [],
      release: async () => false,
    };
    const rejections = new Rejections(silentLogger);
    await new IdentityCollector(store, 'c1', silentLogger, rejections).sweep();
    expect(rejections.recent.map((e) => [e.key, e.type, e.reason])).toEqual([
      [stateKey('identities', 'c1', '1001'), 'identity', 'not-json'],
      [stateKey('identities', 'c1', '1002'), 'identity', 'not-json'],
    ]);
    const mesh = { failures: { chain: 0, status: 0, statusPut: 0, start: 0, lease: 0, fenced: 0 }, pending: () => ({ unpurged: 0, startRetries: 0 }), statusPutMs: 5000, lateWrites: 0, rejections, identitySweeps: { done: 0, failed: 0, timedOut: 0, skipped: 0, abandoned: 0 } };
    const text = await new KVStoreMeshMetrics('c1', mesh as never).text();
    expect(text).toContain('wiremesh_kvstoremesh_rejected_records_total{origin="c1",type="identity",reason="not-json",cluster="c1"} 2\n');
  });
});

/** An etcd3 client whose range reads (getAll, any builder chain) all answer `kvs` in one page at revision 9. */
function listingEtcd(kvs: Array<{ key: Buffer; value: Buffer; create_revision: string; mod_revision: string }>): Etcd3 {
  const exec = async () => ({ header: { revision: '9' }, kvs, more: false });
  const builder: Record<string, unknown> = {};
  for (const m of ['prefix', 'inRange', 'limit', 'revision', 'options']) builder[m] = () => builder;
  builder.exec = exec;
  return { getAll: () => builder } as unknown as Etcd3;
}

describe('the identity collector counts each refused record once (review of s7fix, #2)', () => {
  it('regression: sweeps that list the same refused records count them once, a record rewritten again', async () => {
    const key = (id: number) => stateKey('identities', 'c1', String(id));
    let rev = '5';
    const store: CollectorStore = {
      list: async (_p, rejected) => {
        for (let id = 1000; id < 1050; id++) rejected?.(key(id), VALUE_NOT_UTF8, '4');
        return Array.from({ length: 50 }, (_, i) => ({ key: key(2000 + i), value: '{', modRevision: i === 0 ? rev : '5' }));
      },
      keys: async () => [],
      release: async () => false,
    };
    const rejections = new Rejections(silentLogger);
    const collector = new IdentityCollector(store, 'c1', silentLogger, rejections);
    await collector.sweep();
    rejections.add(new RecordError('node', 'cilium/state/nodes/v1/evil/n1', 'claim', 'not its own'), 'evil');
    for (let i = 0; i < 2; i++) await collector.sweep();
    expect(rejections.total).toBe(101); // the remote's one and the 100 own ones, once each
    expect(rejections.recent.map((e) => e.origin)).toContain('evil'); // not flushed out of the 50-entry history
    rev = '6'; // record 2000 written again (still not decodable): a new record, counted
    await collector.sweep();
    await collector.sweep();
    expect(rejections.total).toBe(102);
  });

  it('the etcd collector store hands a refused record\'s mod revision with it (what the collector counts by)', async () => {
    const etcd = listingEtcd([{ key: Buffer.from('p/a'), value: Buffer.from([0xff]), create_revision: '3', mod_revision: '8' }]);
    const refused: unknown[] = [];
    expect(await etcdCollectorStore(etcd).list('p/', (...a) => void refused.push(a))).toEqual([]);
    expect(refused).toEqual([['p/a', VALUE_NOT_UTF8, '8']]);
  });
});

describe('a create revision at or above 2^53 (review of s7fix, #3)', () => {
  const beyond = '9007199254740992'; // 2^53: never from etcd, only from a hostile or broken server
  const kv = (key: string, value: Buffer | string, create: string) => ({ key: Buffer.from(key), value: Buffer.from(value), create_revision: create, mod_revision: '7' });

  it('regression: textKV reads it as unknown (left out) instead of throwing; a good one is kept', () => {
    expect(textKV(kv('k', 'v', beyond), undefined)).toEqual({ key: 'k', value: 'v' });
    expect(textKV({ key: Buffer.from('k'), value: Buffer.from('v'), create_revision: { low: 0, high: 0x200000 } as never }, undefined)).toEqual({ key: 'k', value: 'v' });
    expect(textKV(kv('k', 'v', '12'), undefined)).toEqual({ key: 'k', value: 'v', createRevision: '12' });
    const refused: unknown[] = [];
    expect(textKV(kv('k', Buffer.from([0xff]), beyond), (...a) => void refused.push(a))).toBeUndefined();
    expect(refused).toEqual([['k', VALUE_NOT_UTF8, undefined]]);
  });

  it('regression: one such record does not fail the list of the others (EtcdStore.listPages, the collector store)', async () => {
    const etcd = listingEtcd([kv('p/a', 'A', '3'), kv('p/b', 'B', beyond), kv('p/c', 'C', '5')]);
    const listed = await new EtcdStore(etcd).list('p/');
    expect(listed).toEqual({ revision: '9', kvs: [{ key: 'p/a', value: 'A', createRevision: '3' }, { key: 'p/b', value: 'B' }, { key: 'p/c', value: 'C', createRevision: '5' }] });
    expect((await etcdCollectorStore(etcd).list('p/')).map((r) => r.key)).toEqual(['p/a', 'p/b', 'p/c']);
  });
});

describe('the identity collector runs one sweep at a time', () => {
  it('regression: a sweep due while one hangs on etcd is skipped (counted), not run beside it (each counted the refusals)', async () => {
    let lists = 0;
    const hung: Array<() => void> = [];
    const answer = () => hung.splice(0).forEach((r) => r());
    const store: CollectorStore = {
      list: async (_p, rejected) => {
        lists++;
        await new Promise<void>((r) => hung.push(r));
        rejected?.(stateKey('identities', 'c1', '1001'), VALUE_NOT_UTF8, '4');
        return [];
      },
      keys: async () => [],
      release: async () => false,
    };
    const rejections = new Rejections(silentLogger);
    const collector = new IdentityCollector(store, 'c1', silentLogger, rejections);
    const first = collector.sweep();
    const second = collector.sweep(); // due while the first hangs: skipped at once
    await new Promise((r) => setImmediate(r));
    expect([lists, collector.skipped]).toEqual([1, 1]); // before: a second list ran beside the first
    answer();
    expect(await Promise.all([first, second])).toEqual([0, 0]);
    expect(rejections.total).toBe(1);
    const third = collector.sweep(); // the first is done: the next one runs
    answer();
    await third;
    expect([lists, collector.skipped, rejections.total]).toEqual([2, 1, 1]);
  });
});

describe('the identity collector gives a sweep up at its deadline (s9fix #1)', () => {
  const key = (id: number) => stateKey('identities', 'c1', String(id));
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());
  const good = { key: key(70000), value: JSON.stringify({ id: 70000, labels: { app: 'a' } }), modRevision: '5' };

  /** A store whose list answers at once, or (the next hangNext lists) hangs until released, then answers what it would have. */
  function hangingStore() {
    const s = { lists: 0, deletes: 0, hangNext: 0, refuse: false, released: [] as Array<() => void> };
    const store: CollectorStore = {
      list: async (_p, rejected) => {
        s.lists++;
        if (s.hangNext > 0) {
          s.hangNext--;
          await new Promise<void>((r) => s.released.push(r));
        }
        if (s.refuse) rejected?.(key(1001), VALUE_NOT_UTF8, '4');
        return [good];
      },
      keys: async () => [],
      release: async () => (s.deletes++, true),
    };
    return { s, store };
  }

  it('regression: a sweep whose list never answers is given up on, counted, and the next one runs (before: every later one skipped)', async () => {
    const { s, store } = hangingStore();
    const rejections = new Rejections(silentLogger);
    const collector = new IdentityCollector(store, 'c1', silentLogger, rejections, 1000);
    s.hangNext = 1;
    const first = collector.sweep();
    await vi.advanceTimersByTimeAsync(1000);
    expect(await first).toBe(0);
    expect(collector.stats).toMatchObject({ timedOut: 1, abandoned: 1, skipped: 0 });
    expect(await collector.sweep()).toBe(0); // runs (before: skipped while the hung one ran): its list answers
    expect([s.lists, collector.stats.done]).toEqual([2, 1]);
    const mesh = { failures: { chain: 0, status: 0, statusPut: 0, start: 0, lease: 0, fenced: 0 }, pending: () => ({ unpurged: 0, startRetries: 0 }), statusPutMs: 5000, lateWrites: 0, rejections, identitySweeps: collector.stats };
    const text = await new KVStoreMeshMetrics('c1', mesh as never).text();
    expect(text).toContain('wiremesh_kvstoremesh_identity_sweeps_total{result="timed-out",cluster="c1"} 1\n');
    expect(text).toContain('wiremesh_kvstoremesh_identity_sweeps_total{result="done",cluster="c1"} 1\n');
  });

  it('regression: a sweep given up on acts on nothing its late answer says (no refusal counted, no delete); the next one does', async () => {
    const { s, store } = hangingStore();
    const rejections = new Rejections(silentLogger);
    const collector = new IdentityCollector(store, 'c1', silentLogger, rejections, 1000);
    await collector.sweep(); // the identity is unreferenced: a candidate, deleted by the next sweep that sees it so
    s.refuse = true;
    s.hangNext = 1;
    const late = collector.sweep();
    await vi.advanceTimersByTimeAsync(1000);
    expect(await late).toBe(0);
    s.released.splice(0).forEach((r) => r()); // the hung list answers now
    await vi.advanceTimersByTimeAsync(0);
    expect([s.deletes, rejections.total, collector.stats.abandoned]).toEqual([0, 0, 0]); // before: never given up on
    expect(await collector.sweep()).toBe(1);
    expect([s.deletes, rejections.total]).toEqual([1, 1]);
  });

  it(`at most ${MAX_ABANDONED_SWEEPS} sweeps given up on wait for etcd: a due sweep is skipped past that, runs again once one settled`, async () => {
    const { s, store } = hangingStore();
    const collector = new IdentityCollector(store, 'c1', silentLogger, new Rejections(silentLogger), 1000);
    s.hangNext = MAX_ABANDONED_SWEEPS;
    for (let i = 0; i < MAX_ABANDONED_SWEEPS; i++) {
      const p = collector.sweep();
      await vi.advanceTimersByTimeAsync(1000);
      await p;
    }
    expect(await collector.sweep()).toBe(0);
    expect([s.lists, collector.stats.timedOut, collector.stats.skipped]).toEqual([MAX_ABANDONED_SWEEPS, MAX_ABANDONED_SWEEPS, 1]);
    s.released.shift()!();
    await vi.advanceTimersByTimeAsync(0);
    await collector.sweep();
    expect([s.lists, collector.stats.done, collector.stats.abandoned]).toEqual([MAX_ABANDONED_SWEEPS + 1, 1, MAX_ABANDONED_SWEEPS - 1]);
  });
});
