// The identity collector's deadline is per etcd call, not per sweep (review of s9fix, s9fix2): a slow etcd that
// still answers each call lets a sweep go on; a call past its deadline gives the sweep up (the deletes done before
// it reported), sends nothing more and keeps nothing of it; stop() cuts a sweep in flight off; the sweeps given up
// on that still wait are a gauge. Fake store, fake timers: nothing here depends on the machine's speed.
import { GRPCDeadlineExceededError, type Etcd3 } from 'etcd3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { VALUE_NOT_UTF8 } from '../../src/controlplane/etcdwatch.js';
import { stateKey } from '../../src/controlplane/keys.js';
import { DEFAULT_BUDGET, KVStoreMesh } from '../../src/controlplane/kvstoremesh.js';
import { KVStoreMeshMetrics } from '../../src/controlplane/meshmetrics.js';
import { Rejections } from '../../src/controlplane/records/index.js';
import { etcdCollectorStore, IdentityCollector, type CollectorStore } from '../../src/identity/allocator.js';
import { silentLogger } from '../../src/log.js';
import { cluster, meshLocalOf, soon } from './meshfakes.js';

const key = (id: number) => stateKey('identities', 'c1', String(id));
const DEADLINE = 1000;

/**
 * A store of unreferenced identities `ids` (mod revision 5). Each call is logged in `calls` ('list', 'keys',
 * 'delete <id>'); a call named in `hold` hangs until released (once), answering then what it
 * would have (a held delete answers `lateDelete`); each delete takes `deleteMs` (fake time) otherwise.
 */
function fakeStore(ids: number[]) {
  const s = {
    calls: [] as string[],
    hold: new Set<string>(),
    held: new Map<string, () => void>(),
    deleteMs: 0,
    lateDelete: false,
    refuse: false,
    /** Called as a delete is sent (synchronously, before its answer is awaited). */
    onSend: (_id: string) => undefined as void,
  };
  const gate = async (what: string) => {
    s.calls.push(what);
    if (!s.hold.delete(what)) return false;
    await new Promise<void>((r) => s.held.set(what, r));
    return true;
  };
  const release = (what: string) => {
    s.held.get(what)!();
    s.held.delete(what);
  };
  const store: CollectorStore = {
    list: async (_p, rejected) => {
      await gate('list');
      if (s.refuse) rejected?.(key(1001), VALUE_NOT_UTF8, '4');
      return ids.map((id) => ({ key: key(id), value: JSON.stringify({ id, labels: { app: String(id) } }), modRevision: '5' }));
    },
    keys: async (_p) => (await gate('keys'), []),
    release: async (guard, _rev, _index) => {
      const id = guard.slice(guard.lastIndexOf('/') + 1);
      s.onSend(id);
      const held = await gate(`delete ${id}`);
      if (held) return s.lateDelete;
      if (s.deleteMs) await new Promise((r) => setTimeout(r, s.deleteMs));
      return true;
    },
  };
  return { s, store, release };
}

const deletes = (calls: string[]) => calls.filter((c) => c.startsWith('delete'));

describe('the identity collector: a deadline per etcd call, not per sweep (review of s9fix, #1, #2)', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('regression: a slow etcd that answers each delete within its deadline has them all done by one sweep (before: given up on at the sweep\'s deadline, the rest left)', async () => {
    const { s, store } = fakeStore([70001, 70002, 70003, 70004, 70005]);
    const collector = new IdentityCollector(store, 'c1', silentLogger, new Rejections(silentLogger), DEADLINE);
    expect(await collector.sweep()).toBe(0); // candidates
    s.deleteMs = DEADLINE - 100; // each in time; all five take 4.5 deadlines
    const sweep = collector.sweep();
    await vi.advanceTimersByTimeAsync(5 * DEADLINE);
    expect(await sweep).toBe(5); // before: 0 (given up on after the second delete was sent)
    expect(deletes(s.calls)).toHaveLength(5);
    expect(collector.stats).toMatchObject({ done: 2, timedOut: 0, abandoned: 0 });
  });

  it('regression: the deletes done before a call past its deadline are reported; no later delete is sent (before: 0 reported)', async () => {
    const { s, store, release } = fakeStore([70001, 70002, 70003]);
    const collector = new IdentityCollector(store, 'c1', silentLogger, new Rejections(silentLogger), DEADLINE);
    await collector.sweep();
    s.hold.add('delete 70002');
    const sweep = collector.sweep();
    await vi.advanceTimersByTimeAsync(DEADLINE);
    expect(await sweep).toBe(1); // 70001's delete, done before 70002's hung
    expect(collector.stats).toMatchObject({ timedOut: 1, abandoned: 1 });
    release('delete 70002');
    await vi.advanceTimersByTimeAsync(0);
    expect(deletes(s.calls)).toEqual(['delete 70001', 'delete 70002']);
    expect(collector.stats.abandoned).toBe(0);
  });

  it('regression: a sweep given up on during its list sends no keys() call once the list answers late (before: it did)', async () => {
    const { s, store, release } = fakeStore([70001]);
    const collector = new IdentityCollector(store, 'c1', silentLogger, new Rejections(silentLogger), DEADLINE);
    s.hold.add('list');
    const sweep = collector.sweep();
    await vi.advanceTimersByTimeAsync(DEADLINE);
    expect(await sweep).toBe(0);
    release('list');
    await vi.advanceTimersByTimeAsync(0);
    expect(s.calls).toEqual(['list']); // before: ['list', 'keys']
  });

  it('the etcd collector store gives each call a grpc deadline of the collector\'s (before cec4ca8 none: etcd3 counted DEADLINE_EXCEEDED against the host; now a call given up on is cancelled)', async () => {
    const options: Array<[string, { deadline: number }]> = [];
    const range: Record<string, unknown> = {
      prefix: () => range,
      inRange: () => range,
      limit: () => range,
      options: (o: { deadline: number }) => (options.push(['range', o]), range),
      exec: async () => ({ kvs: [] }),
      keyBuffers: async () => [],
    };
    const kv = { txn: async (_req: unknown, o: { deadline: number }) => (options.push(['txn', o]), { succeeded: true }) };
    const etcd = { getAll: () => range, kv } as unknown as Etcd3;
    const store = etcdCollectorStore(etcd, 7000);
    const t0 = Date.now();
    await store.list('p/');
    await store.keys('p/', 'p/', 10);
    expect(await store.release('p/a', '5', { key: 'p/i', value: '1' })).toBe(true);
    expect(options.map(([what]) => what)).toEqual(['range', 'range', 'txn']);
    for (const [, o] of options) expect(o.deadline - t0).toBeGreaterThanOrEqual(7000);
    for (const [, o] of options) expect(o.deadline - Date.now()).toBeLessThanOrEqual(7000);
  });

  it('a call its store ends at its grpc deadline gives the sweep up like the timer (timed out, nothing left in flight)', async () => {
    const late = Object.assign(Object.create(GRPCDeadlineExceededError.prototype) as Error, { message: 'deadline exceeded' });
    const store: CollectorStore = { list: async () => Promise.reject(late), keys: async () => [], release: async () => false };
    const collector = new IdentityCollector(store, 'c1', silentLogger, new Rejections(silentLogger), DEADLINE);
    expect(await collector.sweep()).toBe(0);
    expect(collector.stats).toMatchObject({ done: 0, failed: 0, timedOut: 1, abandoned: 0 });
  });
});

describe('the identity collector: what a given-up sweep may not do (review of s9fix, #4)', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('two candidates, the first delete hangs past the deadline: no second delete; its late answer (guard failed) changes nothing; the next sweep deletes both; refusals counted once', async () => {
    const { s, store, release } = fakeStore([70001, 70002]);
    const rejections = new Rejections(silentLogger);
    const collector = new IdentityCollector(store, 'c1', silentLogger, rejections, DEADLINE);
    s.refuse = true;
    await collector.sweep(); // both candidates, the refusal counted
    s.hold.add('delete 70001');
    s.lateDelete = false; // the guard failed (the record was rewritten meanwhile)
    const given = collector.sweep();
    await vi.advanceTimersByTimeAsync(DEADLINE);
    expect(await given).toBe(0);
    release('delete 70001');
    await vi.advanceTimersByTimeAsync(0);
    expect(deletes(s.calls)).toEqual(['delete 70001']); // the given-up sweep sent no second delete
    expect(await collector.sweep()).toBe(2); // the candidates were kept: both deleted now
    expect(deletes(s.calls)).toEqual(['delete 70001', 'delete 70001', 'delete 70002']);
    expect(rejections.total).toBe(1);
    expect(collector.stats).toMatchObject({ done: 2, timedOut: 1, abandoned: 0 });
  });
});

describe('IdentityCollector.stop() (review of s9fix, #3)', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('regression: stop() while a delete hangs ends the sweep at once, clears its deadline\'s timer, and no further delete is sent (before: no stop(); deletes went on)', async () => {
    const { s, store, release } = fakeStore([70001, 70002]);
    const collector = new IdentityCollector(store, 'c1', silentLogger, new Rejections(silentLogger), DEADLINE);
    await collector.sweep();
    s.hold.add('delete 70001');
    const sweep = collector.sweep();
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(1); // the held delete's deadline
    collector.stop();
    expect(vi.getTimerCount()).toBe(0);
    expect(await sweep).toBe(0); // without advancing the clock
    s.lateDelete = true;
    release('delete 70001');
    await vi.advanceTimersByTimeAsync(DEADLINE);
    expect(await collector.sweep()).toBe(0); // none after stop()
    expect(s.calls).toEqual(['list', 'keys', 'list', 'keys', 'delete 70001']);
  });

  it('regression: stop() between a delete sent and the next: that delete is reported, the next is not sent', async () => {
    const { s, store } = fakeStore([70001, 70002]);
    const collector = new IdentityCollector(store, 'c1', silentLogger, new Rejections(silentLogger), DEADLINE);
    await collector.sweep();
    s.onSend = () => collector.stop(); // before the collector waits for its answer: only the next call can see it
    expect(await collector.sweep()).toBe(1);
    expect(deletes(s.calls)).toEqual(['delete 70001']);
  });
});

describe('KVStoreMesh.stop() and its identity collector (review of s9fix, #3)', () => {
  it('regression: KVStoreMesh.stop() cuts off its collector\'s sweep in flight (before: its keys() call and deletes were still sent)', async () => {
    const local = await cluster();
    const { s, store, release } = fakeStore([70001]);
    s.hold.add('list');
    const mesh = new KVStoreMesh('c1', { ...meshLocalOf(local), identities: store }, silentLogger, 5, DEFAULT_BUDGET, { statusMs: 5 });
    await mesh.start();
    await vi.waitFor(() => expect(s.held.has('list')).toBe(true), soon);
    await mesh.stop();
    release('list');
    await new Promise((r) => setImmediate(r));
    expect(s.calls).toEqual(['list']);
  });
});

describe('wiremesh_kvstoremesh_identity_sweeps_waiting (review of s9fix, #6)', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('counts the sweeps given up on whose call still waits, 0 once it settled', async () => {
    const { s, store, release } = fakeStore([]);
    const rejections = new Rejections(silentLogger);
    const collector = new IdentityCollector(store, 'c1', silentLogger, rejections, DEADLINE);
    const mesh = { failures: { chain: 0, status: 0, statusPut: 0, start: 0, lease: 0, fenced: 0 }, pending: () => ({ unpurged: 0, startRetries: 0 }), statusPutMs: 5000, lateWrites: 0, rejections, identitySweeps: collector.stats };
    const metrics = new KVStoreMeshMetrics('c1', mesh as never);
    s.hold.add('list');
    const sweep = collector.sweep();
    await vi.advanceTimersByTimeAsync(DEADLINE);
    await sweep;
    expect(await metrics.text()).toContain('wiremesh_kvstoremesh_identity_sweeps_waiting{cluster="c1"} 1\n');
    release('list');
    await vi.advanceTimersByTimeAsync(0);
    expect(await metrics.text()).toContain('wiremesh_kvstoremesh_identity_sweeps_waiting{cluster="c1"} 0\n');
  });
});
