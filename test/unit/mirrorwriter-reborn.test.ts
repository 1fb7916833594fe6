// BatchedWriter.put(key, value, reborn): a new incarnation of a remote key (deleted and created again, maybe in a
// gap that forced a relist) reaches the local cache as a delete and then a put, in two transactions (etcd refuses
// one key twice in one transaction), so the cache key gets a new create revision and agents see the new
// incarnation (review of s7fix, #1b: it was a plain put over the same key, an ordinary update to its readers).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { BatchedWriter, type MirrorOps, type MirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { TxnCoalescer } from '../../src/controlplane/txncoalescer.js';

/** Records every transaction tried; the first `failures` fail; a key twice in one is refused, as etcd does. */
function recorder(failures = 0) {
  const sent: Array<{ ops: MirrorOps; ok: boolean }> = [];
  const target: MirrorTarget = {
    keys: async () => [],
    entries: async () => undefined,
    revision: async () => '0',
    deletePrefix: async () => undefined,
    write: async (ops) => {
      const ok = failures-- <= 0 && new Set(ops.map(([k]) => k)).size === ops.length;
      sent.push({ ops, ok });
      if (!ok) throw new Error('txn refused');
    },
  };
  return { sent, target, applied: () => sent.filter((t) => t.ok).map((t) => t.ops) };
}

afterEach(() => void vi.useRealTimers());

async function settle(w: BatchedWriter): Promise<void> {
  const f = w.flushed();
  await vi.advanceTimersByTimeAsync(100);
  await f;
}

describe('BatchedWriter: a reborn key is deleted, then put, in two transactions', () => {
  it('regression: a reborn put is a delete and a put in order; writes queued around it keep their order', async () => {
    vi.useFakeTimers();
    const r = recorder();
    const w = new BatchedWriter(r.target, silentLogger, 'c2', Date.now, 5);
    w.put('k', 'v1');
    await settle(w);
    w.put('a', '1');
    w.put('k', 'v2', true);
    w.put('b', '2');
    await settle(w);
    // 'a' leaves at once (nothing in flight); the delete ends its batch; 'b', queued after the put, goes with it
    expect(r.applied()).toEqual([[['k', 'v1']], [['a', '1']], [['k', null]], [['k', 'v2'], ['b', '2']]]);
  });

  it('regression: a delete then a put of a key queued together (a watch\'s delete and re-create) are not coalesced into a put', async () => {
    vi.useFakeTimers();
    const r = recorder();
    const w = new BatchedWriter(r.target, silentLogger, 'c2', Date.now, 5);
    w.put('x', '1'); // in flight: what follows is queued together
    w.delete('k');
    w.put('k', 'v2');
    w.put('k', 'v3'); // a later update of the new incarnation: still after the delete
    await settle(w);
    expect(r.applied()).toEqual([[['x', '1']], [['k', null]], [['k', 'v3']]]);
  });

  it('a delete that failed is retried before the put; a plain delete over a queued reborn put is just a delete', async () => {
    vi.useFakeTimers();
    const r = recorder(1);
    const w = new BatchedWriter(r.target, silentLogger, 'c2', Date.now, 5);
    w.put('k', 'v2', true);
    await settle(w);
    expect(r.sent.map((t) => [t.ops, t.ok])).toEqual([[[['k', null]], false], [[['k', null]], true], [[['k', 'v2']], true]]);
    w.put('j', 'x', true);
    w.delete('j');
    await settle(w);
    expect(r.applied().slice(3)).toEqual([[['j', null]]]);
  });

  it('through a TxnCoalescer too: never the same key twice in one transaction', async () => {
    vi.useFakeTimers();
    const r = recorder();
    const c = new TxnCoalescer(r.target, { windowMs: 10, intervalMs: 0, maxOps: 8, maxBytes: 4096, maxInFlight: 2, deadlineMs: 60_000, maxLate: 16 });
    const w = new BatchedWriter(c, silentLogger, 'c2', Date.now, 5);
    const other = new BatchedWriter(c, silentLogger, 'c3', Date.now, 5);
    for (let i = 0; i < 5; i++) w.put(`k${i}`, 'old');
    await settle(w);
    for (let i = 0; i < 5; i++) (w.put(`k${i}`, 'new', true), other.put(`o${i}`, 'x'));
    await settle(w);
    await settle(other);
    expect(r.sent.every((t) => t.ok)).toBe(true);
    const history = (k: string) => r.applied().flatMap((ops) => ops.filter(([key]) => key === k).map(([, v]) => v));
    for (let i = 0; i < 5; i++) expect(history(`k${i}`)).toEqual(['old', null, 'new']);
  });

  it('regression (review of s7fix2): a run of reborn keys shares its deletes\' transaction, not one each', async () => {
    vi.useFakeTimers();
    const r = recorder();
    const w = new BatchedWriter(r.target, silentLogger, 'c2', Date.now, 5);
    for (let i = 0; i < 50; i++) w.put(`k${i}`, 'old');
    await settle(w);
    const before = r.applied().length;
    // a relist of a remote whose etcd was rebuilt: every key a new incarnation
    for (let i = 0; i < 50; i++) w.put(`k${i}`, 'new', true);
    await settle(w);
    const after = r.applied().slice(before);
    // before: 50 deletes alone, each followed by its put (101 transactions)
    expect(after.length).toBeLessThanOrEqual(3);
    const history = (k: string) => r.applied().flatMap((ops) => ops.filter(([key]) => key === k).map(([, v]) => v));
    for (let i = 0; i < 50; i++) expect(history(`k${i}`)).toEqual(['old', null, 'new']);
  });

  it('regression (review of s7fix2): a plain delete that failed while the key was re-created is not merged into a put', async () => {
    vi.useFakeTimers();
    const sent: Array<{ ops: MirrorOps; ok: boolean }> = [];
    let n = 0;
    const target: MirrorTarget = {
      keys: async () => [],
      entries: async () => undefined,
      revision: async () => '0',
      deletePrefix: async () => undefined,
      write: async (ops) => {
        const ok = n++ !== 1; // the second transaction (the delete) fails
        sent.push({ ops, ok });
        if (!ok) throw new Error('txn refused');
      },
    };
    const w = new BatchedWriter(target, silentLogger, 'c2', Date.now, 5);
    w.put('k', 'v1');
    await settle(w);
    w.delete('k'); // in flight
    w.put('k', 'v2'); // the watch's re-create, queued while the delete is in flight (not reborn: the key was dropped)
    await settle(w);
    // before: [k, null] failed, then [k, v2] alone (the cache key kept its create revision)
    expect(sent.map((t) => [t.ops, t.ok])).toEqual([[[['k', 'v1']], true], [[['k', null]], false], [[['k', null]], true], [[['k', 'v2']], true]]);
  });
});
