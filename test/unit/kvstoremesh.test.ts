// KVStoreMesh's mirror of one remote cluster (RemoteReplication) against two
// in-memory stores (src/controlplane/memkv.ts), no etcd: the remote's prefix
// reaches the local cache; a bad record is refused alone (the cache keeps the
// key's last good value); after an outage in which the remote deleted keys and
// compacted its history, the relist removes the stale copies and keeps the
// good ones; at start, copies the remote no longer has are deleted. Then a whole KVStoreMesh on MemKVs
// (its inputs, mirrors, leased status and heartbeat, identity collector): connect, mirror, an outage in
// its status, disconnect.
import { describe, expect, it, vi } from 'vitest';
import {
  cacheKey,
  cachePrefix,
  clusterConfigKey,
  epochKey,
  identityIndexKey,
  identityRefKey,
  pinnedKey,
  remoteKey,
  remoteStatusKey,
  stateKey,
  syncedKey,
  syncedPrefix,
} from '../../src/controlplane/keys.js';
import { DEFAULT_BUDGET, KVStoreMesh, LAG_GRACE_MS, LEASE_TTL_S, REPLICATED_TYPES, RemoteReplication } from '../../src/controlplane/kvstoremesh.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { purgeRemote } from '../../src/controlplane/purges.js';
import type { MeshLocal, MirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { heartbeatCodec, Rejections, remoteStatusCodec, Trust, tryDecode, type PinnedCluster } from '../../src/controlplane/records/index.js';
import { clusterIdentity, labelsHash } from '../../src/identity/identity.js';
import { silentLogger } from '../../src/log.js';
import { meshLocalOf, mirrorOf } from './meshfakes.js';

const KEY = Buffer.alloc(32, 7).toString('base64');
const node = (name: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cluster: 'c2', clusterId: 2, name, addresses: ['198.18.2.10'], port: 51820, publicKey: KEY, podCIDRs: ['100.66.1.0/24'], bootId: '1', ...extra });
const src = (name: string) => stateKey('nodes', 'c2', name);
const dst = (name: string) => cacheKey('nodes', 'c2', name);

function setup(pin: Partial<PinnedCluster> = {}) {
  const remote = new MemKV();
  const local = new MemKV();
  const pinned: PinnedCluster = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false, ...pin };
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  expect(trust.pin(pinned)).toBeUndefined();
  const rejections = new Rejections(silentLogger);
  let closed = 0;
  const start = () => {
    const r = new RemoteReplication({ name: 'c2', endpoints: ['http://198.18.0.2:2379'] }, pinned, trust, mirrorOf(local), silentLogger, rejections, DEFAULT_BUDGET, () => ({
      store: remote,
      close: () => void closed++,
    }));
    return r;
  };
  const cached = () => Object.fromEntries(local.entries(cachePrefix('nodes', 'c2')).map((e) => [e.key, e.value]));
  const allSynced = () => expect(local.entries(syncedPrefix()).map((e) => e.key).sort()).toEqual(REPLICATED_TYPES.map((t) => syncedKey('c2', t)).sort());
  return { remote, local, rejections, start, cached, allSynced, closed: () => closed };
}

const soon = { timeout: 5000, interval: 10 };

describe('kvstoremesh: one remote mirrored through fake stores', () => {
  it("a hub's relay offer is copied; what it may not relay (the node's metadata service, outside its pin) is counted and in its status", async () => {
    const f = setup({ relay: true, relayCIDRs: ['100.70.0.0/16'] });
    const offer = JSON.stringify({ cluster: 'c2', node: 'n1', podCIDRs: ['100.70.1.0/24', '169.254.169.254/32', '8.8.8.0/24'] });
    await f.remote.put(stateKey('relays', 'c2', 'n1'), offer);
    const r = f.start();
    await r.start();
    await vi.waitFor(f.allSynced, soon);
    // copied as is: every agent drops the same CIDRs again (Trust.relay), the honest one is relayed
    expect(f.local.entries(cachePrefix('relays', 'c2')).map((e) => e.value)).toEqual([offer]);
    expect(r.status().rejected).toEqual({ 'relay/claim': 1 });
    expect(r.status().recentRejections?.[0]?.detail).toMatch(/169\.254\.169\.254\/32 overlaps 169\.254\.0\.0\/16 \(link-local\); 8\.8\.8\.0\/24 is outside c2's pinned relay CIDRs/);
  });

  it('regression: an offer copied again with the same drops is counted once per (key, text), not per copy (a hub rewriting its offer every second counted each)', async () => {
    const f = setup({ relay: true, relayCIDRs: ['100.70.0.0/16'] });
    const key = stateKey('relays', 'c2', 'n1');
    const offer = (honest: string, bad = '8.8.8.0/24') => JSON.stringify({ cluster: 'c2', node: 'n1', podCIDRs: [honest, bad] });
    const copied = (v: string) => () => expect(f.local.entries(cachePrefix('relays', 'c2')).map((e) => e.value)).toEqual([v]);
    await f.remote.put(key, offer('100.70.1.0/24'));
    const r = f.start();
    await r.start();
    await vi.waitFor(f.allSynced, soon);
    for (let i = 2; i < 6; i++) {
      await f.remote.put(key, offer(`100.70.${i}.0/24`)); // a new copy each time, the same CIDR dropped
      await vi.waitFor(copied(offer(`100.70.${i}.0/24`)), soon);
    }
    expect(r.status().rejected).toEqual({ 'relay/claim': 1 });
    await f.remote.put(key, offer('100.70.5.0/24', '8.8.4.0/24')); // another drop: counted
    await vi.waitFor(() => expect(r.status().rejected).toEqual({ 'relay/claim': 2 }), soon);
    await f.remote.delete(key); // deleted and offered again: a new record, counted anew
    await vi.waitFor(() => expect(f.local.entries(cachePrefix('relays', 'c2'))).toEqual([]), soon);
    await f.remote.put(key, offer('100.70.5.0/24', '8.8.4.0/24'));
    await vi.waitFor(() => expect(r.status().rejected).toEqual({ 'relay/claim': 3 }), soon);
    await r.stop(false, 1000);
  });

  it('copies the remote prefix, refuses a bad record alone, and relists after a compacted outage', async () => {
    const f = setup();
    for (const n of ['n1', 'n2', 'n3']) await f.remote.put(src(n), node(n));
    await f.remote.put(src('liar'), node('liar', { clusterId: 3 })); // claims another cluster's id
    await f.remote.put(src('garbage'), '{not json');
    const r = f.start();
    await r.start();
    await vi.waitFor(f.allSynced, soon);
    expect(f.cached()).toEqual({ [dst('n1')]: node('n1'), [dst('n2')]: node('n2'), [dst('n3')]: node('n3') });
    expect(r.status()).toMatchObject({ connected: true, entries: { nodes: 5 }, budget: { records: 3 } });
    expect(Object.values(r.status().rejected ?? {}).reduce((a, b) => a + b, 0)).toBe(2);

    // an update that does not hold leaves the last good copy
    await f.remote.put(src('n1'), node('n1', { podCIDRs: ['100.65.1.0/24'] })); // our own pod CIDR
    await f.remote.put(src('n3'), node('n3', { bootId: '2' }));
    await vi.waitFor(() => expect(f.cached()[dst('n3')]).toBe(node('n3', { bootId: '2' })), soon);
    expect(f.cached()[dst('n1')]).toBe(node('n1'));

    // an outage: the remote deletes and compacts what the watch would have replayed
    f.remote.disconnect();
    await vi.waitFor(() => expect(r.status().connected).toBe(false), soon);
    await f.remote.delete(src('n2'));
    await f.remote.put(src('n4'), node('n4'));
    await f.remote.put(src('n3'), node('n3', { bootId: '3' }));
    // n1 deleted and created again with a value that does not hold: its old copy goes (a new create revision)
    await f.remote.delete(src('n1'));
    await f.remote.put(src('n1'), node('n1', { podCIDRs: ['100.65.1.0/24'] }));
    f.remote.compact(f.remote.revision);
    f.remote.reconnect();
    await vi.waitFor(() => expect(f.cached()).toEqual({ [dst('n3')]: node('n3', { bootId: '3' }), [dst('n4')]: node('n4') }), soon);
    // a watch broken before it delivered anything waits ≥ 200 ms before its relist (ListWatcher): connected after it
    await vi.waitFor(() => expect(r.status()).toMatchObject({ connected: true, budget: { records: 2 } }), soon);
    expect(Object.values(r.status().rejected ?? {}).reduce((a, b) => a + b, 0)).toBe(4);
    expect(r.status().relists).toBeGreaterThanOrEqual(1);

    await r.stop(false, 5000);
    expect(f.closed()).toBe(1);
    expect(f.remote.watchCount).toBe(0);
    expect(Object.keys(f.cached())).toHaveLength(2); // stop without purge keeps the cache
  });

  it('at start, deletes the copies the remote no longer has or may no longer have; a purge removes everything', async () => {
    const f = setup();
    await f.local.put(dst('gone'), node('gone')); // left by an earlier run
    await f.local.put(dst('now-bad'), node('now-bad'));
    await f.local.put(dst('kept'), node('kept'));
    await f.remote.put(src('kept'), node('kept'));
    await f.remote.put(src('now-bad'), node('now-bad', { clusterId: 9 }));
    const r = f.start();
    await r.start();
    await vi.waitFor(f.allSynced, soon);
    await vi.waitFor(() => expect(f.cached()).toEqual({ [dst('kept')]: node('kept') }), soon);
    await r.stop(true, 5000);
    await purgeRemote(mirrorOf(f.local), 'c2'); // the caller's purge (KVStoreMesh: within a deadline, purges.ts)
    // all but the remote's epoch (fence.ts), which every purge moves and none deletes
    expect(f.local.entries('wiremesh/').map((e) => e.key)).toEqual([epochKey('c2')]);
  });
});

describe('kvstoremesh: sync lag from the mirror itself', () => {
  it('is behind from the start until synced, then since the oldest change received and not yet written locally, once over the grace', async () => {
    const f = setup();
    await f.remote.put(src('n1'), node('n1'));
    // the local store stops answering writes until released: changes queue in the mirror
    let release!: () => void;
    let gate: Promise<void> | undefined;
    const target = mirrorOf(f.local);
    const slow: MirrorTarget = { ...target, write: async (ops) => (await gate, target.write(ops)) };
    const pinned: PinnedCluster = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.pin(pinned);
    const r = new RemoteReplication({ name: 'c2', endpoints: ['http://198.18.0.2:2379'] }, pinned, trust, slow, silentLogger, f.rejections, DEFAULT_BUDGET, () => ({ store: f.remote, close: () => undefined }));
    const before = Date.now();
    expect(r.behindSince(true)).toBeGreaterThanOrEqual(before - 1000); // not synced yet: behind since it started
    await r.start();
    await vi.waitFor(f.allSynced, soon);
    expect(f.cached()).toEqual({ [dst('n1')]: node('n1') });
    expect(r.behindSince(true)).toBeUndefined();
    expect(r.status().behindSince).toBeUndefined();

    gate = new Promise((res) => (release = res));
    const t0 = Date.now();
    await f.remote.put(src('n2'), node('n2'));
    await vi.waitFor(() => expect(r.status().entries.nodes).toBe(2), soon);
    const t1 = Date.now();
    // within the grace it is not behind; past it, behind since the change arrived (ms since the epoch)
    expect(r.behindSince(true, t0)).toBeUndefined();
    const since = r.behindSince(true, t1 + LAG_GRACE_MS + 1)!;
    expect(since).toBeGreaterThanOrEqual(t0);
    expect(since).toBeLessThanOrEqual(t1);
    // a rewrite of the same key keeps its age; the watch down counts from the first tick that saw it
    await f.remote.put(src('n2'), node('n2', { bootId: '2' }));
    expect(r.behindSince(true, t1 + LAG_GRACE_MS + 1)).toBe(since);
    expect(r.behindSince(false, since - 5)).toBe(since - 5);
    expect(r.behindSince(true, since - 4)).toBeUndefined(); // up again, and the change not yet over the grace
    release();
    await vi.waitFor(() => expect(f.cached()[dst('n2')]).toBe(node('n2', { bootId: '2' })), soon);
    expect(r.behindSince(true, Date.now() + 10 * LAG_GRACE_MS)).toBeUndefined();
    await r.stop(false, 5000);
  });
});

describe('kvstoremesh: the whole of it on in-memory stores', () => {
  it('connects a remote, mirrors it, writes status and heartbeat, reports an outage, and purges on disconnect', async () => {
    const clock = { ms: 0 };
    const local = new MemKV(() => clock.ms);
    const remote = new MemKV();
    const pinned: PinnedCluster = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
    await local.put(clusterConfigKey('c1'), JSON.stringify({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'] }));
    await local.put(pinnedKey('c2'), JSON.stringify(pinned));
    for (const n of ['n1', 'n2']) await remote.put(src(n), node(n));
    // the cluster's identities: one a node references, one nobody does
    const identity = (local: number, app: string) => ({ id: clusterIdentity(1, local), labels: { app } });
    for (const i of [identity(300, 'used'), identity(301, 'unused')]) {
      await local.put(stateKey('identities', 'c1', String(i.id)), JSON.stringify(i));
      await local.put(identityIndexKey('c1', labelsHash(i.labels)), String(i.id));
    }
    await local.put(identityRefKey('c1', clusterIdentity(1, 300), 'n1'), '');

    const opened: string[] = [];
    let closed = 0;
    const localStore = meshLocalOf(local);
    const mesh = new KVStoreMesh('c1', localStore, silentLogger, 20, DEFAULT_BUDGET, {
      statusMs: 20,
      heartbeatMs: 40,
      connect: (spec) => (opened.push(spec.name), { store: remote, close: () => void closed++ }),
    });
    await mesh.start();
    const status = () => {
      const e = local.get(remoteStatusKey('c2'));
      const r = e ? tryDecode(remoteStatusCodec, e.key, e.value) : undefined;
      return r?.ok ? r.value : undefined;
    };
    const cached = () => Object.fromEntries(local.entries(cachePrefix('nodes', 'c2')).map((e) => [e.key, e.value]));

    // nothing is replicated before the remote is connected
    await new Promise((r) => setTimeout(r, 50));
    expect(opened).toEqual([]);
    await local.put(remoteKey('c2'), JSON.stringify({ name: 'c2', endpoints: ['http://198.18.0.2:2379'] }));
    await vi.waitFor(() => expect(local.entries(syncedPrefix()).map((e) => e.key).sort()).toEqual(REPLICATED_TYPES.map((t) => syncedKey('c2', t)).sort()), soon);
    expect(opened).toEqual(['c2']);
    expect(cached()).toEqual({ [dst('n1')]: node('n1'), [dst('n2')]: node('n2') });
    await remote.put(src('n3'), node('n3'));
    await vi.waitFor(() => expect(cached()[dst('n3')]).toBe(node('n3')), soon);
    await vi.waitFor(() => expect(status()).toMatchObject({ cluster: 'c2', connected: true, entries: { nodes: 3 } }), soon);
    expect(Object.values(status()!.synced).every(Boolean)).toBe(true);

    // the heartbeat: leased, its sequence moving
    const hbKey = stateKey('heartbeat', 'c1', 'kvstoremesh');
    const hb = () => {
      const e = local.get(hbKey);
      const r = e ? tryDecode(heartbeatCodec, e.key, e.value) : undefined;
      return r?.ok ? r.value : undefined;
    };
    const seq = hb()!.seq;
    await vi.waitFor(() => expect(hb()!.seq).toBeGreaterThan(seq), soon);
    expect(local.get(hbKey)!.lease).toBeDefined();
    expect(local.get(remoteStatusKey('c2'))!.lease).toBe(local.get(hbKey)!.lease);
    expect(status()!.behindSince).toBeUndefined(); // synced, connected, nothing waiting: current

    // at rest the status is not written again: ten status intervals, one revision
    const rev = local.get(remoteStatusKey('c2'))!.modRevision;
    await new Promise((r) => setTimeout(r, 200));
    expect(local.get(remoteStatusKey('c2'))!.modRevision).toBe(rev);

    // etcd loses the lease with its keys: a new lease, the heartbeat and the status again under it
    await localStore.lose();
    expect(local.get(remoteStatusKey('c2'))).toBeUndefined();
    await vi.waitFor(() => expect(status()).toMatchObject({ cluster: 'c2', connected: true }), soon);
    expect(localStore.leases()).toBe(2);
    expect(local.get(remoteStatusKey('c2'))!.lease).toBe(local.get(hbKey)!.lease);

    // the unreferenced identity goes (index too) on a second sweep; the referenced one stays
    await vi.waitFor(() => expect(local.get(stateKey('identities', 'c1', String(clusterIdentity(1, 301))))).toBeUndefined(), soon);
    expect(local.get(identityIndexKey('c1', labelsHash({ app: 'unused' })))).toBeUndefined();
    expect(local.get(stateKey('identities', 'c1', String(clusterIdentity(1, 300))))).toBeDefined();

    // an outage: the status says so, the cache stays; back again, connected
    remote.disconnect();
    await vi.waitFor(() => expect(status()).toMatchObject({ connected: false, behindSince: expect.any(Number) }), soon);
    expect(Object.keys(cached())).toHaveLength(3);
    remote.reconnect();
    await vi.waitFor(() => expect(status()).toMatchObject({ connected: true }), soon);
    expect(status()!.behindSince).toBeUndefined();

    // the operator disconnects it: replication stops, cache, markers and status go
    await local.delete(remoteKey('c2'));
    await vi.waitFor(() => expect(local.entries('wiremesh/cache/').concat(local.entries(syncedPrefix()))).toEqual([]), soon);
    await vi.waitFor(() => expect(status()).toBeUndefined(), soon);
    expect(closed).toBe(1);
    expect(remote.watchCount).toBe(0);
    expect(mesh.status()).toEqual([]);

    // stopped: the lease is no longer kept alive, and its keys go when its TTL (LEASE_TTL_S, 60 s) runs out
    await mesh.stop();
    expect(localStore.released()).toBe(true);
    clock.ms += LEASE_TTL_S * 1000 - 1;
    local.expire();
    expect(local.get(hbKey)).toBeDefined();
    clock.ms += 1;
    local.expire();
    expect(local.get(hbKey)).toBeUndefined();
  });

  it('the status written only on change is, after every step of a random sequence, the status computed afresh', async () => {
    let seed = 16; // mulberry32: a failure reproduces
    const rand = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const local = new MemKV();
    const remote = new MemKV();
    await local.put(clusterConfigKey('c1'), JSON.stringify({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'] }));
    await local.put(pinnedKey('c2'), JSON.stringify({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false }));
    const mesh = new KVStoreMesh('c1', meshLocalOf(local), silentLogger, 60_000, DEFAULT_BUDGET, { statusMs: 5, connect: () => ({ store: remote, close: () => undefined }) });
    await mesh.start();
    await local.put(remoteKey('c2'), JSON.stringify({ name: 'c2', endpoints: ['http://198.18.0.2:2379'] }));
    const published = () => {
      const e = local.get(remoteStatusKey('c2'));
      const r = e ? tryDecode(remoteStatusCodec, e.key, e.value) : undefined;
      return r?.ok ? r.value : undefined;
    };
    let down = false;
    for (let step = 0; step < 40; step++) {
      const x = rand();
      const n = `n${Math.floor(rand() * 6)}`;
      if (x < 0.45) await remote.put(src(n), node(n, { bootId: String(step) }));
      else if (x < 0.6) await remote.put(src(n), node(n, { clusterId: 7 })); // refused: counted in the status
      else if (x < 0.8) await remote.delete(src(n));
      else if (down) (remote.reconnect(), (down = false));
      else (remote.disconnect(), (down = true));
      await vi.waitFor(() => expect(published()).toEqual(mesh.status()[0]), soon);
    }
    await mesh.stop();
  });

  it('regression: a status put racing a disconnect lands before the purge, never after it; a failed purge is logged and counted, not thrown', async () => {
    const [local, remote] = [new MemKV(), new MemKV()];
    await local.put(clusterConfigKey('c1'), JSON.stringify({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'] }));
    await local.put(pinnedKey('c2'), JSON.stringify({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false }));
    const base = meshLocalOf(local);
    let gate: Promise<void> | undefined;
    let held = 0;
    let failPurge = false;
    let purging = false;
    const store: MeshLocal = {
      ...base,
      // etcd unavailable for the purge's last write (the status key's delete)
      mirror: {
        ...base.mirror,
        write: async (ops) => {
          if (!ops.some(([k]) => k === remoteStatusKey('c2'))) return base.mirror.write(ops);
          purging = true;
          return failPurge ? Promise.reject(new Error('etcd unavailable')) : base.mirror.write(ops);
        },
      },
      // the remote's status puts wait for the gate while it is set
      lease: (ttl) => {
        const l = base.lease(ttl);
        return { ...l, put: async (k, v) => (gate && k === remoteStatusKey('c2') && (held++, await gate), l.put(k, v)) };
      },
    };
    // its waits are tens of ms: the coalescer's pacing under them (txn.intervalMs)
    const mesh = new KVStoreMesh('c1', store, silentLogger, 60_000, DEFAULT_BUDGET, { statusMs: 5, purgeRetryMs: 20, txn: { intervalMs: 10 }, connect: () => ({ store: remote, close: () => undefined }) });
    await mesh.start();
    const spec = JSON.stringify({ name: 'c2', endpoints: ['http://198.18.0.2:2379'] });
    await local.put(remoteKey('c2'), spec);
    await vi.waitFor(() => expect(local.get(remoteStatusKey('c2'))).toBeDefined(), soon);
    let release!: () => void;
    gate = new Promise((r) => (release = r));
    await remote.put(src('n1'), node('n1')); // the status changes: its put is held in flight...
    await vi.waitFor(() => expect(held).toBeGreaterThan(0), soon);
    await local.delete(remoteKey('c2')); // ...while the operator disconnects the remote
    // main's code purged meanwhile, the put still held; the fixed code waits for the put (nothing to see for 1 s)
    for (let i = 0; i < 100 && !purging; i++) await new Promise((r) => setTimeout(r, 10));
    expect(purging).toBe(false);
    release();
    await vi.waitFor(() => expect(local.entries('wiremesh/cache/').concat(local.entries(syncedPrefix()))).toEqual([]), soon);
    await new Promise((r) => setTimeout(r, 50)); // ten status intervals
    expect(local.get(remoteStatusKey("c2"))).toBeUndefined(); // main's code: resurrected by the late put
    expect(held).toBe(1); // no status write for it once its drop began

    gate = undefined;
    await local.put(remoteKey('c2'), spec);
    await vi.waitFor(() => expect(local.get(remoteStatusKey('c2'))).toBeDefined(), soon);
    failPurge = true;
    await local.delete(remoteKey('c2')); // main's code: an unhandled rejection (the process ends under Node's default)
    await vi.waitFor(() => expect(mesh.failures.chain).toBeGreaterThan(0), soon);
    expect(local.get(remoteStatusKey('c2'))).toBeDefined();
    failPurge = false; // the purge is tried again until it holds
    await vi.waitFor(() => expect(local.get(remoteStatusKey('c2'))).toBeUndefined(), soon);
    expect(local.entries('wiremesh/cache/').concat(local.entries(syncedPrefix()))).toEqual([]);
    await local.put(remoteKey('c2'), spec); // the chain goes on after a failed step
    await vi.waitFor(() => expect(mesh.status()).toMatchObject([{ cluster: 'c2', connected: true }]), soon);
    await vi.waitFor(() => expect(local.get(remoteStatusKey('c2'))).toBeDefined(), soon);

    // the pin removed while the local etcd fails the purge: tried again too (before: logged once, state kept for good)
    const failedBefore = mesh.failures.chain;
    failPurge = true;
    await local.delete(pinnedKey('c2'));
    await vi.waitFor(() => expect(mesh.failures.chain).toBeGreaterThan(failedBefore), soon);
    expect(local.get(remoteStatusKey('c2'))).toBeDefined();
    failPurge = false;
    await vi.waitFor(() => expect(local.get(remoteStatusKey('c2'))).toBeUndefined(), soon);
    expect(local.entries('wiremesh/cache/').concat(local.entries(syncedPrefix()))).toEqual([]);
    await mesh.stop();
  });
});
