// KVStoreMesh's stops and its lease against a local etcd that refuses or hangs (review of the issue 16 follow-ups):
// a mirror write stuck for a remote being dropped holds no later start, stop or purge; a late one is refused by
// etcd's fence (fence.ts: the purge moved the remote's epoch, which the write compares), so nothing comes back;
// a lease the local etcd cannot grant is taken again after a backoff, not in a loop; the restart sweep looks at
// exactly what a purge deletes.
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cacheKey, cachePrefix, pinnedKey, remoteKey, stateKey, syncedKey } from '../../src/controlplane/keys.js';
import { DEFAULT_BUDGET, KVStoreMesh, REPLICATED_TYPES } from '../../src/controlplane/kvstoremesh.js';
import { KVStoreMeshMetrics } from '../../src/controlplane/meshmetrics.js';
import type { MeshLocal, MirrorOps } from '../../src/controlplane/mirrorwriter.js';
import { silentLogger } from '../../src/log.js';
import { FencedError } from '../../src/controlplane/fence.js';
import { cluster, heldOf, meshLocalOf, node, pin, pinnedPair, sleep, soon, spec, statusOf } from './meshfakes.js';

/** A logger whose lines (parsed) land in `lines`. */
function recording(lines: Array<Record<string, unknown>>) {
  return pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
}

/** c2's puts into the local etcd: written, refused for good (NOSPACE refuses puts, not deletes), hung, or held until released. */
type Mode = 'ok' | 'refuse' | 'hang' | 'late';

async function meshWithStuckWrites(statusPutMs = 5000, startRetryMs = { first: 1000, max: 60_000 }, txn: { deadlineMs?: number; windowMs?: number; intervalMs?: number } = {}, purgeRetryMs = 20) {
  const { local, remotes } = await pinnedPair();
  const base = meshLocalOf(local);
  const s = { mode: 'ok' as Mode, tried: 0, landed: 0, fenced: 0, held: [] as MirrorOps[], release: () => undefined as void, purge: 'ok' as 'ok' | 'late', purges: 0, purged: 0, releasePurge: () => undefined as void };
  // 'held': the next transaction deleting c2's nodes sync marker (a purge's coalesced write) is held until releaseMarker
  const m = { marker: 'ok' as 'ok' | 'held', markerLanded: 0, releaseMarker: () => undefined as void };
  const markerGate = new Promise<void>((r) => (m.releaseMarker = r));
  const gate = new Promise<void>((r) => (s.release = r));
  // c2's purges (deletePrefix of its cache) held until releasePurge: a hung local etcd, or one answering late
  const purgeGate = new Promise<void>((r) => (s.releasePurge = r));
  const c2put = (ops: MirrorOps) => ops.some(([k, v]) => v !== null && k.includes('/c2/'));
  const store: MeshLocal = {
    ...base,
    mirror: {
      ...base.mirror,
      write: async (ops, fences) => {
        if (m.marker === 'held' && ops.some(([k, v]) => v === null && k === syncedKey('c2', 'nodes'))) {
          m.marker = 'ok';
          await markerGate;
          await base.mirror.write(ops, fences);
          return void m.markerLanded++;
        }
        if (s.mode === 'ok' || !c2put(ops)) return base.mirror.write(ops, fences);
        s.tried++;
        s.held.push(ops);
        if (s.mode === 'refuse') throw new Error('etcdserver: mvcc: database space exceeded');
        await (s.mode === 'hang' ? new Promise<void>(() => undefined) : gate);
        await base.mirror.write(ops, fences).catch((err: Error) => {
          if (err instanceof FencedError) s.fenced++; // the store refused it: the fence moved
          throw err;
        });
        s.landed++;
      },
      deletePrefix: async (prefix) => {
        if (s.purge === 'ok' || !prefix.includes('/c2/')) return base.mirror.deletePrefix(prefix);
        s.purges++;
        await purgeGate;
        await base.mirror.deletePrefix(prefix);
        s.purged++;
      },
    },
  };
  // deadlines of 50 ms here: the coalescer's pacing well under them, as in production (100 ms against 5 s)
  const opts = { statusMs: 5, statusPutMs, startRetryMs, purgeRetryMs, txn: { intervalMs: 10, ...txn }, connect: (sp: { name: string }) => ({ store: remotes[sp.name]!, close: () => undefined }) };
  const mesh = new KVStoreMesh('c1', store, process.env.DBG ? pino({ level: 'debug' }) : silentLogger, 60_000, DEFAULT_BUDGET, opts);
  await mesh.start();
  await local.put(remoteKey('c2'), spec('c2'));
  await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true, entries: { nodes: 1 } }), soon);
  // and its sync markers written: under load (load 7-30) they could still be queued when a test went on, and a
  // purge then abandoned them, so a test saw no marker or an old one depending on the machine's speed
  await vi.waitFor(() => expect(REPLICATED_TYPES.filter((t) => !local.get(syncedKey('c2', t)))).toEqual([]), soon);
  return { local, remotes, mesh, s, m, opts };
}

describe('kvstoremesh: stops against a local etcd that refuses or hangs', () => {
  it.each(['refuse', 'hang', 'late'] as const)('regression: a mirror write of a remote being disconnected that is %s holds no later start; the purge goes on, and a late landing is refused by the fence', async (mode) => {
    const { local, remotes, mesh, s } = await meshWithStuckWrites();
    s.mode = mode;
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    await vi.waitFor(() => expect(s.tried).toBeGreaterThan(0), soon);
    await local.delete(remoteKey('c2'));
    await local.put(remoteKey('c3'), spec('c3'));
    // before: the drop waited for c2's writer to flush, for ever (a refused batch is retried for ever)
    await vi.waitFor(() => expect(local.get(syncedKey('c3', 'nodes')), 'c3 started').toBeDefined(), soon);
    await vi.waitFor(() => expect(heldOf(local, 'c2')).toEqual([]), soon);
    const tried = s.tried;
    if (mode === 'late') {
      s.release(); // the abandoned write arrives after the purge: refused (before: it landed and was purged again)
      await vi.waitFor(() => expect(s.fenced).toBe(1), soon);
      expect(s.landed).toBe(0);
      expect(heldOf(local, 'c2')).toEqual([]);
    }
    expect(s.tried).toBe(tried); // abandoned: not tried again
    expect(local.get(cacheKey('nodes', 'c3', 'n1'))?.value).toBe(node('c3', 3, 'n1'));
    await mesh.stop();
  });

  // s11gslb: a mirror write given up on, carrying c2's sync marker, landed after c2's purge; marker and record stayed
  // until the purge retry (5 s, doubling per failure in a row up to 60 s): agents admitted a disconnected remote's
  // cache meanwhile. Here the retry pause is a minute: the landing must be purged again without it.
  // Now the fence refuses it: marker and record never come back (the re-purge after a landing is gone).
  it('regression: a late mirror write carrying a sync marker that arrives after the purge is refused: marker and record never come back', async () => {
    const { local, remotes, mesh, s } = await meshWithStuckWrites(5000, undefined, {}, 60_000);
    // n2 is copied; the next batch (n3) carries the watermark past n2's creation (watermark.ts): it is held
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    await vi.waitFor(() => expect(local.get(cacheKey('nodes', 'c2', 'n2'))).toBeDefined(), soon);
    s.mode = 'late';
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n3'), node('c2', 2, 'n3'));
    await vi.waitFor(() => expect(s.tried).toBe(1), soon);
    expect(s.held[0]!.map(([k]) => k)).toContain(syncedKey('c2', 'nodes'));
    await local.delete(remoteKey('c2'));
    await vi.waitFor(() => expect(heldOf(local, 'c2')).toEqual([]), soon);
    s.release(); // the write arrives after the purge (before: marker and record back until purged again)
    await vi.waitFor(() => expect(s.fenced).toBe(1), soon);
    expect(heldOf(local, 'c2')).toEqual([]);
    await vi.waitFor(() => expect(mesh.pending().unpurged).toBe(0), soon); // the purge held: no retry left waiting
    await mesh.stop();
  });

  // s11gslb: a restart whose new pin is refused dropped the old replication without a purge (its write abandoned
  // after statusPutMs), then purged: a write landing after that purge was never purged again (held() forgot the
  // remote; the restart sweep skips a remote with an entry and a pin), so its marker stayed for good
  it('regression: a late write of a replication dropped for a refused pin, arriving after the purge, is refused by the fence', async () => {
    const { local, remotes, mesh, s } = await meshWithStuckWrites(50, undefined, {}, 60_000);
    s.mode = 'late';
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    await vi.waitFor(() => expect(s.tried).toBe(1), soon);
    // c2 pinned again with c1's own id: refused (conflict), so c2 is dropped and purged
    await local.put(pinnedKey('c2'), pin('c2', 1));
    await vi.waitFor(() => expect(heldOf(local, 'c2')).toEqual([]), soon);
    s.release();
    await vi.waitFor(() => expect(s.fenced).toBe(1), soon);
    expect(heldOf(local, 'c2')).toEqual([]); // before: landed, until purged again
    await mesh.stop();
  });

  // review of ed9650e: a restart (the spec changed) abandoned the old writer after statusPutMs and started the new
  // replication at once; the old write landing late overwrote the new copy (n2 ended at bootId 1, the remote at 2)
  it('regression: a restarted replication starts after the old one\'s late mirror write landed, so its copy stays', async () => {
    const { local, remotes, mesh, s } = await meshWithStuckWrites(50, { first: 20, max: 40 });
    s.mode = 'late';
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    await vi.waitFor(() => expect(s.tried).toBe(1), soon);
    const v2 = node('c2', 2, 'n2').replace('"bootId":"1"', '"bootId":"2"');
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), v2);
    s.mode = 'ok'; // the new replication's writes go through; the old one's stays held
    await local.put(remoteKey('c2'), JSON.stringify({ name: 'c2', endpoints: ['http://198.18.0.3:2379'] }));
    await sleep(300); // before the fix the new replication started and wrote v2 meanwhile
    s.release();
    await vi.waitFor(() => expect(s.landed).toBe(1), soon);
    await vi.waitFor(() => expect(local.get(cacheKey('nodes', 'c2', 'n2'))?.value).toBe(v2), soon);
    await sleep(100);
    expect(local.get(cacheKey('nodes', 'c2', 'n2'))?.value).toBe(v2);
    expect(mesh.failures.start).toBeGreaterThan(0); // the new start waited for the landing
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true }), soon);
    await mesh.stop();
  });

  it('regression: a stop (no purge) waits for a hung mirror write at most statusPutMs', async () => {
    const { remotes, mesh, s } = await meshWithStuckWrites(50);
    s.mode = 'hang';
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    await vi.waitFor(() => expect(s.tried).toBe(1), soon);
    await mesh.stop(); // before: never resolved
  });
});

describe('kvstoremesh: purges against a local etcd that hangs', () => {
  // s6fix: purgeRemote had no deadline: a hung delete held the disconnect, and every start and stop queued behind it
  it('regression: a hung purge outruns its deadline, is counted and retried, holds no other remote\'s start, and is retried until it holds', async () => {
    const { local, mesh, s } = await meshWithStuckWrites(50);
    s.purge = 'late';
    await local.delete(remoteKey('c2'));
    await local.put(remoteKey('c3'), spec('c3'));
    await vi.waitFor(() => expect(local.get(syncedKey('c3', 'nodes')), 'c3 started').toBeDefined(), soon); // before: never
    await vi.waitFor(() => expect(mesh.failures.chain).toBeGreaterThan(0), soon);
    expect(mesh.pending().unpurged).toBe(1);
    await sleep(200);
    expect(s.purges).toBe(REPLICATED_TYPES.length); // one attempt (a prefix per type) in flight per remote: the retries wait for it, not pile up
    s.releasePurge();
    await vi.waitFor(() => expect(heldOf(local, 'c2')).toEqual([]), soon);
    await vi.waitFor(() => expect(mesh.pending().unpurged).toBe(0), soon);
    await mesh.stop();
  });

  it('regression: a purge that lands after its deadline cannot delete what the remote\'s next replication wrote', async () => {
    const { local, mesh, s } = await meshWithStuckWrites(50, { first: 20, max: 40 });
    s.purge = 'late';
    await local.delete(remoteKey('c2'));
    await vi.waitFor(() => expect(mesh.failures.chain).toBeGreaterThan(0), soon);
    await local.put(remoteKey('c2'), spec('c2')); // connected again while the old purge is held
    await sleep(300);
    expect(local.get(syncedKey('c2', 'nodes')), 'not started before the purge settled').toBeUndefined();
    s.releasePurge(); // the old purge lands now: the new replication starts after it, so its copy stays
    await vi.waitFor(() => expect(s.purged).toBeGreaterThan(0), soon);
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true, synced: { nodes: true }, entries: { nodes: 1 } }), soon);
    await sleep(100);
    expect(local.get(cacheKey('nodes', 'c2', 'n1'))?.value).toBe(node('c2', 2, 'n1'));
    expect(local.get(syncedKey('c2', 'nodes'))).toBeDefined();
    expect(mesh.failures.start).toBeGreaterThan(0); // the start waited for the purge
    await mesh.stop();
  });
});

describe('kvstoremesh: purges whose writes the coalescer gave up on (review s6fix-r1)', () => {
  // #1: abandon() waited for the in-flight batch only until the coalescer gave up on it, so its late landing after
  // the purge was never purged again: the cache and markers of a disconnected remote stayed
  it('regression: a disconnected remote\'s mirror write given up on by the coalescer and arriving after the purge is refused by the fence', async () => {
    const { local, remotes, mesh, s } = await meshWithStuckWrites(5000, undefined, { deadlineMs: 100 });
    s.mode = 'late';
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    await vi.waitFor(() => expect(s.tried).toBe(1), soon);
    await local.delete(remoteKey('c2'));
    await vi.waitFor(() => expect(heldOf(local, 'c2')).toEqual([]), soon);
    await sleep(300); // past the coalescer's deadline: given up on, not landed
    s.release(); // it arrives now, after the purge: refused (s6fix-r1: n2 and its marker stayed; then: purged again)
    await vi.waitFor(() => expect(s.fenced).toBe(1), soon);
    expect(heldOf(local, 'c2')).toEqual([]);
    await vi.waitFor(() => expect(mesh.pending().unpurged).toBe(0), soon);
    // the given-up write is counted and exported (before: only in the coalescer's stats)
    expect(mesh.lateWrites).toBeGreaterThanOrEqual(1);
    expect(await new KVStoreMeshMetrics('c1', mesh).text()).toContain(`wiremesh_kvstoremesh_late_writes_total{cluster="c1"} ${mesh.lateWrites}\n`);
    await mesh.stop();
  });

  // #2: the attempt settled when the coalescer gave up on its marker delete, not when it landed: the remote's next
  // replication started, and the late delete removed its new sync marker (agents ignore a cache without it)
  it("regression: a purge's coalesced marker delete that outran the coalescer's deadline cannot delete the next replication's marker", async () => {
    const { local, mesh, s, m } = await meshWithStuckWrites(1000, { first: 20, max: 40 }, { deadlineMs: 100 });
    // the first replication's marker (written: meshWithStuckWrites waits for it), which the held delete keeps: the
    // next replication's would be a new write of it. (This read "no marker" before: the marker was still queued
    // and abandoned by the purge on an idle machine, written already under load, where the case failed.)
    const first = local.get(syncedKey('c2', 'nodes'))!.modRevision;
    m.marker = 'held';
    await local.delete(remoteKey('c2'));
    await vi.waitFor(() => expect(mesh.failures.chain).toBeGreaterThan(0), soon);
    await local.put(remoteKey('c2'), spec('c2')); // connected again while the old marker delete is held
    await sleep(300); // a window for the bug (a start before the purge settled), not a condition: outcome fixed either way
    expect(local.get(syncedKey('c2', 'nodes'))?.modRevision, 'not started before the purge settled').toBe(first); // before: started
    m.releaseMarker();
    await vi.waitFor(() => expect(m.markerLanded).toBe(1), soon);
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true, synced: { nodes: true }, entries: { nodes: 1 } }), soon);
    await vi.waitFor(() => expect(local.get(syncedKey('c2', 'nodes'))?.modRevision).toBeGreaterThan(first), soon); // the next replication's
    await sleep(100);
    expect(local.get(syncedKey('c2', 'nodes'))).toBeDefined(); // before: deleted by the late purge
    expect(s.purged).toBe(0);
    await mesh.stop();
  });

  // #3: each retry step waited for the hung attempt up to statusPutMs in the chain, holding every start behind it
  it('regression: retries of a hung purge fail at once while it is in flight, so they hold no other remote\'s start', async () => {
    const { local, mesh, s, opts } = await meshWithStuckWrites(50);
    s.purge = 'late';
    await local.delete(remoteKey('c2'));
    await vi.waitFor(() => expect(mesh.failures.chain).toBeGreaterThan(0), soon); // the first attempt outran 50 ms
    opts.statusPutMs = 60_000; // a retry that waits for the attempt in flight would now hold the chain for a minute
    await sleep(100);
    await local.put(remoteKey('c3'), spec('c3'));
    await vi.waitFor(() => expect(local.get(syncedKey('c3', 'nodes')), 'c3 started').toBeDefined(), soon); // before: not within 5 s
    expect(s.purges).toBe(REPLICATED_TYPES.length); // still the one attempt
    s.releasePurge();
    await vi.waitFor(() => expect(heldOf(local, 'c2')).toEqual([]), soon);
    await vi.waitFor(() => expect(mesh.pending().unpurged).toBe(0), soon);
    await mesh.stop();
  });
});

describe('kvstoremesh: its lease while the local etcd is down', () => {
  afterEach(() => void vi.useRealTimers());

  it('regression: a lease that cannot be granted is taken again after 200 ms doubling to 5 s (back to 200 ms once one held), one warning per loss, counted', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    const turns = async (n: number) => {
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
    };
    const local = await cluster();
    const base = meshLocalOf(local);
    let down = true;
    let grants = 0;
    const store: MeshLocal = {
      ...base,
      // etcd down: the grant fails, and the lease is lost, at once (etcd3 emits `lost` when its grant fails)
      lease: (ttl) => {
        grants++;
        if (!down) return base.lease(ttl);
        const lost: Array<(err: Error) => void> = [];
        setImmediate(() => lost.forEach((fn) => fn(new Error('connect ECONNREFUSED 127.0.0.1:1'))));
        return { put: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1')), release: () => undefined, onLost: (fn) => void lost.push(fn) };
      },
    };
    const lines: Array<Record<string, unknown>> = [];
    const mesh = new KVStoreMesh('c1', store, recording(lines), 60_000, DEFAULT_BUDGET, { statusPutMs: 50 });
    await mesh.start();
    await turns(50);
    expect(grants).toBe(1); // before: one grant per turn of the event loop
    const next = async (ms: number) => {
      const before = grants;
      await vi.advanceTimersByTimeAsync(ms - 1);
      await turns(5);
      expect(grants, `not before ${ms} ms`).toBe(before);
      await vi.advanceTimersByTimeAsync(1);
      await turns(5);
      expect(grants, `after ${ms} ms`).toBe(before + 1);
    };
    for (const ms of [200, 400, 800, 1600, 3200, 5000, 5000]) await next(ms);
    const warned = lines.filter((l) => l.msg === 'kvstoremesh lease lost; taking a new one');
    expect(mesh.failures.lease).toBe(8);
    expect(warned).toHaveLength(8);
    down = false;
    await next(5000);
    await turns(5);
    expect(local.get(stateKey('heartbeat', 'c1', 'kvstoremesh'))).toBeDefined(); // the heartbeat under a lease that holds
    await base.lose();
    await next(200);
    const text = await new KVStoreMeshMetrics('c1', mesh).text();
    expect(text).toContain('wiremesh_kvstoremesh_failures_total{what="lease",cluster="c1"} 9\n');
    expect(text).toContain('past its 0.05 s deadline'); // the help says the deadline in force (it said 5 s whatever it was)
    await mesh.stop();
  });
});

describe('kvstoremesh: the restart sweep', () => {
  it('regression: looks only at what a purge deletes (a stray key of a type never replicated is not "purged" on every start)', async () => {
    const local = await cluster();
    await local.put(cacheKey('namespaces', 'c3', 'shop'), '{}');
    await local.put(syncedKey('c4', 'nodes'), '{}');
    const lines: Array<Record<string, unknown>> = [];
    const mesh = new KVStoreMesh('c1', meshLocalOf(local), recording(lines), 60_000, DEFAULT_BUDGET, { statusMs: 5 });
    await mesh.start();
    await vi.waitFor(() => expect(heldOf(local, 'c4')).toEqual([]), soon); // a real orphan: purged
    const purged = lines.filter((l) => l.msg === 'purging a remote no longer connected (left by an earlier run)').map((l) => l.remote);
    expect(purged).toEqual(['c4']); // before: c3 too, and its key stayed (purgeRemote never deletes it)
    expect(local.entries(cachePrefix('namespaces', 'c3'))).toHaveLength(1);
    await mesh.stop();
  });
});

describe('kvstoremesh: purge retries back off (review s6fix-r2 #3)', () => {
  afterEach(() => void vi.useRealTimers());

  // every retry of a hung purge fails at once (the attempt is still in flight), and was tried, logged and counted
  // every purgeRetryMs for as long as the local etcd hung
  it('regression: a remote\'s failed purge is tried again after purgeRetryMs doubling per failure in a row, until one held', async () => {
    // no coalescing window nor pacing: the coalescer's clock is not faked (either would wait for real time)
    const { local, mesh, s } = await meshWithStuckWrites(50, undefined, { windowMs: 0, intervalMs: 0 });
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    s.purge = 'late';
    await local.delete(remoteKey('c2'));
    await vi.advanceTimersByTimeAsync(60); // the first attempt outran its 50 ms deadline: one failure
    expect(mesh.failures.chain).toBe(1);
    const at: number[] = [];
    for (let t = 0; t < 2600; t += 5) {
      const before = mesh.failures.chain;
      await vi.advanceTimersByTimeAsync(5);
      if (mesh.failures.chain > before) at.push(t + 5);
    }
    // retries after 20, 40, 80, 160, 320, 640, 1280 ms (before: one every 20 ms, ~130 failures)
    expect(at).toHaveLength(7);
    const gaps = at.map((t, i) => t - (at[i - 1] ?? 0));
    for (let i = 2; i < gaps.length; i++) expect(gaps[i]! / gaps[i - 1]!).toBeCloseTo(2, 0);
    expect(mesh.pending().unpurged).toBe(1);
    s.releasePurge();
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r)); // the in-memory etcd's turns
    expect(s.purged).toBe(REPLICATED_TYPES.length); // the held attempt landed
    // the next retry (2560 ms after the last) holds: in small steps, each with the in-memory etcd's turns, so that
    // its attempt is answered within its (fake) 50 ms
    for (let t = 0; t < 3000; t += 2) {
      await vi.advanceTimersByTimeAsync(2);
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    }
    expect(heldOf(local, 'c2')).toEqual([]);
    await vi.waitFor(() => expect(mesh.pending().unpurged).toBe(0), soon); // the purge held: no retry left waiting
    vi.useRealTimers();
    await mesh.stop();
  });
});

describe('kvstoremesh: a start whose read of the cache hangs (review s6fix-r2 #4)', () => {
  // the start's read of the local cache had no deadline: against a hung local etcd it held the whole chain (here
  // c3's disconnect), and a read answering late started watchers for whatever replication it belonged to
  it('regression: is given up on after startReadMs (a start failure), holds no other remote\'s stop, and a late read starts nothing for a replication no longer current', async () => {
    const { local, remotes } = await pinnedPair();
    const base = meshLocalOf(local);
    let release = () => undefined as void;
    const gate = new Promise<void>((r) => (release = r));
    const reads = { c2: 0 };
    const store: MeshLocal = {
      ...base,
      mirror: {
        ...base.mirror,
        entries: async (prefix, page) => {
          if (prefix.includes('/c2/')) (reads.c2++, await gate);
          return base.mirror.entries(prefix, page);
        },
      },
    };
    // no pacing of the local transactions (100 ms by default): a purge's two writes fit its 50 ms deadline
    const opts = { txn: { intervalMs: 0 }, statusMs: 5, statusPutMs: 50, startReadMs: 50, startRetryMs: { first: 20, max: 40 }, purgeRetryMs: 20, connect: (sp: { name: string }) => ({ store: remotes[sp.name]!, close: () => undefined }) };
    const mesh = new KVStoreMesh('c1', store, silentLogger, 60_000, DEFAULT_BUDGET, opts);
    await mesh.start();
    await local.put(remoteKey('c3'), spec('c3'));
    await vi.waitFor(() => expect(local.get(syncedKey('c3', 'nodes'))).toBeDefined(), soon);
    await local.put(remoteKey('c2'), spec('c2')); // its read of the cache hangs
    await vi.waitFor(() => expect(mesh.failures.start).toBeGreaterThan(1), soon); // before: 0, the chain held
    // the status says why c2 is not connected (before: no lastError while its read hung)
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: false, lastError: expect.stringMatching(/^start failed: local cache read timed out \(no answer within 50 ms\) \(failing since \d{4}-\d\d-\d\dT/) }), soon);
    await local.delete(remoteKey('c3'));
    await vi.waitFor(() => expect(heldOf(local, 'c3')).toEqual([]), soon); // before: never (queued behind c2's start)
    expect(reads.c2).toBe(1); // the retries wait for the same read
    await local.delete(remoteKey('c2')); // c2's replication is dropped while its read hangs
    await vi.waitFor(() => expect(mesh.pending().startRetries).toBe(0), soon);
    // the drop's purge holds before the read answers: the check below is then of what the late read did, not of
    // how far the purge got (official CI of 5d64c6c: a status put past its 50 ms under load, its purge retry
    // backed off beyond the 200 ms below)
    await vi.waitFor(() => expect([heldOf(local, 'c2'), mesh.pending().unpurged]).toEqual([[], 0]), soon);
    release(); // the read answers now: nothing may start for the dropped replication
    await sleep(200);
    expect(heldOf(local, 'c2')).toEqual([]);
    expect(local.get(syncedKey('c2', 'nodes'))).toBeUndefined();
    expect(remotes.c2!.watchCount, 'no watch of the dropped replication left open on the remote').toBe(0);
    await mesh.stop();
  });

  it('regression: a slow read (values too, at a remote\'s budget ~5.5 s) is not held to the status put\'s deadline (review of s8reborn)', async () => {
    const { local, remotes } = await pinnedPair();
    const base = meshLocalOf(local);
    const store: MeshLocal = { ...base, mirror: { ...base.mirror, entries: async (prefix, page) => (await sleep(150), base.mirror.entries(prefix, page)) } };
    const opts = { statusMs: 5, statusPutMs: 50, startRetryMs: { first: 20, max: 40 }, purgeRetryMs: 20, connect: (sp: { name: string }) => ({ store: remotes[sp.name]!, close: () => undefined }) };
    const mesh = new KVStoreMesh('c1', store, silentLogger, 60_000, DEFAULT_BUDGET, opts);
    await mesh.start();
    await local.put(remoteKey('c2'), spec('c2'));
    await vi.waitFor(() => expect(local.get(syncedKey('c2', 'nodes'))).toBeDefined(), soon);
    expect(mesh.failures.start).toBe(0); // before: the read outran statusPutMs (50 ms here, 5 s by default) and failed
    await mesh.stop();
  });
});
