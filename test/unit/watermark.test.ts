// The mirror's watermark (src/controlplane/watermark.ts): how it is read (fail closed on anything else), when a
// BatchedWriter writes it (only with the transaction that empties its queue, never while a batch given up on may
// still land), and a replication restarted without a usable one (an older kvstoremesh's marker, a remote etcd whose
// history went back): a changed value is still copied as a new incarnation.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { stateKey, syncedKey } from '../../src/controlplane/keys.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { BatchedWriter, type MirrorOps, type MirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { Rejections, Trust } from '../../src/controlplane/records/index.js';
import { DEFAULT_BUDGET, RemoteReplication } from '../../src/controlplane/replication.js';
import { TxnCoalescer } from '../../src/controlplane/txncoalescer.js';
import { markerValue, markerWatermark, sameIncarnation } from '../../src/controlplane/watermark.js';
import { silentLogger } from '../../src/log.js';
import { nodeKey } from '../helpers/admitting-agent.js';
import { mirrorOf, node } from './meshfakes.js';

afterEach(() => void vi.useRealTimers());

describe('the watermark of a sync marker', () => {
  it('is read from a marker markerValue wrote, and from nothing else', () => {
    expect(markerWatermark(markerValue('2026-12-01T00:00:00.000Z', '42'))).toBe(42);
    for (const v of [markerValue('2026-12-01T00:00:00.000Z'), null, undefined, '', 'x', '[]', 'null', '{"revision":42}', '{"revision":"-1"}', '{"revision":"0"}', '{"revision":"1e3"}', '{"revision":"99999999999999999"}'])
      expect(markerWatermark(v)).toBeUndefined();
  });

  it('makes a key of the cached incarnation only when created at or below it, and the remote did not go back', () => {
    expect(sameIncarnation(10, 20, '30')).toBe(true);
    expect(sameIncarnation(20, 20, '19')).toBe(true); // the list sees every change below 20
    expect(sameIncarnation(21, 20, '30')).toBe(false); // created after: maybe a new incarnation
    expect(sameIncarnation(0, 20, '30')).toBe(false); // the store gave no create revision
    expect(sameIncarnation(10, undefined, '30')).toBe(false);
    expect(sameIncarnation(10, 20, '18')).toBe(false); // the remote's history went back (rebuilt, restored)
    expect(sameIncarnation(10, 20, undefined)).toBe(false);
  });
});

describe('BatchedWriter: the progress writes', () => {
  function target() {
    const txns: MirrorOps[] = [];
    let hang: Promise<void> | undefined;
    const t: MirrorTarget = {
      keys: async () => [],
      entries: async () => undefined,
      revision: async () => '0',
      deletePrefix: async () => undefined,
      write: async (ops) => {
        const h = hang;
        hang = undefined;
        if (h) await h;
        txns.push(ops);
      },
    };
    return { t, txns, hangNext: (p: Promise<void>) => void (hang = p) };
  }

  it('go with the transaction that empties the queue, in place of its write of the same key, and are told once applied', async () => {
    const s = target();
    const written: MirrorOps[] = [];
    let rev = 1;
    const w = new BatchedWriter(s.t, silentLogger, 'r', Date.now, 5, { ops: () => [['m', `rev${rev}`]], written: (ops) => void written.push(ops) });
    // the first put leaves at once, alone in the queue; the next 129 wait for it: 128 (at most), then the rest
    for (let i = 0; i < 130; i++) w.put(`k${i}`, 'v');
    w.put('m', 'marker without revision');
    await w.flushed();
    expect(s.txns.map((t) => t.length)).toEqual([2, 128, 2]);
    expect(s.txns[0]).toEqual([['k0', 'v'], ['m', 'rev1']]);
    expect(s.txns[1]!.some(([k]) => k === 'm')).toBe(false); // the queue was not empty after it
    expect(s.txns[2]).toEqual([['k129', 'v'], ['m', 'rev1']]);
    expect(written).toEqual([[['m', 'rev1']], [['m', 'rev1']]]);
    rev = 2;
    w.delete('k0');
    await w.flushed();
    expect(s.txns.at(-1)).toEqual([['k0', null], ['m', 'rev2']]);
  });

  it('are not written while the queue holds more (a new incarnation\'s put waits behind its delete)', async () => {
    const s = target();
    let release = () => undefined as void;
    s.hangNext(new Promise<void>((r) => (release = r)));
    const w = new BatchedWriter(s.t, silentLogger, 'r', Date.now, 5, { ops: () => [['m', 'rev']], written: () => undefined });
    w.put('x', 'v'); // in flight, held
    w.put('a', 'v1');
    w.put('b', 'v2', true); // reborn: its delete leaves with a, its put in the transaction after
    release();
    await w.flushed();
    const withDelete = s.txns.find((ops) => ops.some(([k, v]) => k === 'b' && v === null))!;
    expect(withDelete.some(([k]) => k === 'm')).toBe(false);
    expect(s.txns.at(-1)).toEqual([['b', 'v2'], ['m', 'rev']]);
  });

  it('regression: are not written while a transaction given up on at its deadline may still land', async () => {
    vi.useFakeTimers();
    const s = target();
    let release = () => undefined as void;
    s.hangNext(new Promise<void>((r) => (release = r)));
    const c = new TxnCoalescer(s.t, { windowMs: 0, intervalMs: 0, maxOps: 8, maxBytes: 4096, maxInFlight: 2, deadlineMs: 100, maxLate: 16 });
    const w = new BatchedWriter(c, silentLogger, 'r', Date.now, 5, { ops: () => [['m', 'rev']], written: () => undefined });
    w.put('a', 'v1');
    await vi.advanceTimersByTimeAsync(150); // past the deadline: retried and applied, the first still in flight
    w.put('b', 'v1');
    await vi.advanceTimersByTimeAsync(50);
    expect(s.txns.flat().some(([k]) => k === 'm')).toBe(false);
    release(); // it lands: a is written again, and with that last write the watermark
    await vi.advanceTimersByTimeAsync(50);
    expect(s.txns.at(-1)).toEqual([['a', 'v1'], ['m', 'rev']]);
    c.stop();
  });
});

describe('a replication restarted without a usable watermark', () => {
  const pinned = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
  const src = stateKey('nodes', 'c2', 'n1');
  const updated = JSON.stringify({ ...(JSON.parse(node('c2', 2, 'n1')) as object), bootId: '2' });
  function replication(remote: MemKV, local: MemKV) {
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.pin(pinned);
    return new RemoteReplication({ name: 'c2', endpoints: [] }, pinned, trust, mirrorOf(local), silentLogger, new Rejections(silentLogger), DEFAULT_BUDGET, () => ({ store: remote, close: () => undefined }));
  }
  /** Mirrors n1 from `remote`, stops, lets `between` change things, mirrors again: whether n1's copy was re-created. */
  async function restarted(remote: MemKV, between: (local: MemKV) => Promise<MemKV>): Promise<boolean> {
    const local = new MemKV();
    let r = replication(remote, local);
    await r.start();
    await vi.waitFor(() => expect(markerWatermark(local.get(syncedKey('c2', 'nodes'))?.value)).toBeDefined(), { timeout: 5000 });
    await r.stop(false, 1000);
    const before = local.get(nodeKey('n1'))!.createRevision;
    const next = await between(local);
    r = replication(next, local);
    await r.start();
    await vi.waitFor(() => expect(local.get(nodeKey('n1'))?.value).toBe(updated), { timeout: 5000 });
    await r.stop(false, 1000);
    return local.get(nodeKey('n1'))!.createRevision !== before;
  }

  it('with one: an update is copied in place', async () => {
    const remote = new MemKV();
    await remote.put(src, node('c2', 2, 'n1'));
    expect(await restarted(remote, async () => (await remote.put(src, updated), remote))).toBe(false);
  });

  it('a key created after the first list moves the watermark past it (updated while down: in place); updates alone write no marker', async () => {
    const [remote, local] = [new MemKV(), new MemKV()];
    await remote.put(src, node('c2', 2, 'n1'));
    let r = replication(remote, local);
    await r.start();
    const marker = () => markerWatermark(local.get(syncedKey('c2', 'nodes'))?.value);
    await vi.waitFor(() => expect(marker()).toBeDefined(), { timeout: 5000 });
    const n9 = stateKey('nodes', 'c2', 'n9');
    await remote.put(n9, node('c2', 2, 'n9'));
    await vi.waitFor(() => expect(marker()).toBeGreaterThanOrEqual(remote.get(n9)!.createRevision), { timeout: 5000 });
    const markerRev = local.get(syncedKey('c2', 'nodes'))!.modRevision;
    await remote.put(src, updated); // an update: copied, the marker left as it is
    await vi.waitFor(() => expect(local.get(nodeKey('n1'))?.value).toBe(updated), { timeout: 5000 });
    await r.stop(false, 1000);
    expect(local.get(syncedKey('c2', 'nodes'))!.modRevision).toBe(markerRev);
    const before = local.get(nodeKey('n9'))!.createRevision;
    const n9updated = JSON.stringify({ ...(JSON.parse(node('c2', 2, 'n9')) as object), bootId: '2' });
    await remote.put(n9, n9updated);
    r = replication(remote, local);
    await r.start();
    await vi.waitFor(() => expect(local.get(nodeKey('n9'))?.value).toBe(n9updated), { timeout: 5000 });
    await r.stop(false, 1000);
    expect(local.get(nodeKey('n9'))!.createRevision).toBe(before);
  });

  it('a marker an older kvstoremesh wrote (no watermark): the update is copied as a new incarnation (fail closed)', async () => {
    const remote = new MemKV();
    await remote.put(src, node('c2', 2, 'n1'));
    const between = async (local: MemKV) => {
      await local.put(syncedKey('c2', 'nodes'), markerValue('2026-12-01T00:00:00.000Z'));
      await remote.put(src, updated);
      return remote;
    };
    expect(await restarted(remote, between)).toBe(true);
  });

  it("a remote etcd whose history went back (rebuilt: its revisions below the watermark): copied as a new incarnation", async () => {
    const remote = new MemKV();
    for (let i = 0; i < 20; i++) await remote.put(stateKey('nodes', 'c2', 'other'), node('c2', 2, 'other'));
    await remote.put(src, node('c2', 2, 'n1'));
    const between = async () => {
      const rebuilt = new MemKV();
      await rebuilt.put(src, updated); // created at revision 1, below the watermark of the old etcd
      return rebuilt;
    };
    expect(await restarted(remote, between)).toBe(true);
  });
});
