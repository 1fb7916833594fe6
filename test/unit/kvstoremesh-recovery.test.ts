// KVStoreMesh recovering from its local etcd's failures, on in-memory stores (issue 16 follow-ups): the purge a
// restart would forget, a replication start that failed, a status put that hangs, and the failures as metrics.
import { describe, expect, it, vi } from 'vitest';
import { cacheKey, cachePrefix, pinnedKey, remoteKey, remotesPrefix, remoteStatusKey, stateKey, syncedKey, syncedPrefix } from '../../src/controlplane/keys.js';
import { DEFAULT_BUDGET, KVStoreMesh, REPLICATED_TYPES } from '../../src/controlplane/kvstoremesh.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { KVStoreMeshMetrics } from '../../src/controlplane/meshmetrics.js';
import type { MeshLocal } from '../../src/controlplane/mirrorwriter.js';
import { silentLogger } from '../../src/log.js';
import { cluster, heldOf, meshLocalOf, node, pin, pinnedPair, sleep, soon, spec, statusOf } from './meshfakes.js';

describe('kvstoremesh: recovery from its local etcd', () => {
  it('regression: after a restart, purges the state of every remote no longer connected, once the remotes and pins are listed in full, retrying a failed purge', async () => {
    const local = await cluster();
    const remote = new MemKV();
    await remote.put(stateKey('nodes', 'c2', 'n1'), node('c2', 2, 'n1'));
    // c2 is connected; an earlier run left c3's cache (its purge failed), c4's markers, c5's status, c6's cache
    // (connected, but its pin is gone: nothing it sent may stay)
    await local.put(remoteKey('c2'), spec('c2'));
    await local.put(pinnedKey('c2'), pin('c2', 2));
    await local.put(cacheKey('nodes', 'c2', 'n1'), node('c2', 2, 'n1'));
    await local.put(cacheKey('nodes', 'c3', 'n1'), node('c3', 3, 'n1'));
    await local.put(cacheKey('ip', 'c3', 'n1/100.67.1.5'), '{}');
    await local.put(syncedKey('c4', 'nodes'), '{}');
    await local.put(remoteStatusKey('c5'), '{}');
    await local.put(remoteKey('c6'), spec('c6'));
    await local.put(cacheKey('nodes', 'c6', 'n1'), node('c6', 6, 'n1'));
    // the list of the remotes waits for a gate (a partial view meanwhile); the first purges fail
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const store = Object.create(local) as MemKV;
    store.list = async (prefix) => (prefix === remotesPrefix() && (await gate), local.list(prefix));
    let deletesFailing = 2;
    const base = meshLocalOf(local);
    const mesh = new KVStoreMesh('c1', { ...base, store, mirror: { ...base.mirror, deletePrefix: async (p) => (deletesFailing-- > 0 ? Promise.reject(new Error('etcd unavailable')) : base.mirror.deletePrefix(p)) } }, silentLogger, 60_000, DEFAULT_BUDGET, {
      statusMs: 5,
      purgeRetryMs: 20,
      connect: () => ({ store: remote, close: () => undefined }),
    });
    await mesh.start();
    await sleep(100);
    for (const r of ['c3', 'c4', 'c5', 'c6']) expect(heldOf(local, r), r).not.toEqual([]); // nothing purged on a partial view
    release();
    await vi.waitFor(() => expect(['c3', 'c4', 'c5', 'c6'].flatMap((r) => heldOf(local, r))).toEqual([]), soon);
    expect(mesh.failures.chain).toBeGreaterThan(0); // the failed purges: counted, and tried again
    await vi.waitFor(() => expect(mesh.pending().unpurged).toBe(0), soon);
    // the live remote is replicated, its cache kept
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true }), soon);
    expect(local.get(cacheKey('nodes', 'c2', 'n1'))?.value).toBe(node('c2', 2, 'n1'));
    await mesh.stop();
  });

  it('regression: a replication start that failed (the local etcd unavailable) is retried with backoff, counted, and visible in status and metrics', async () => {
    const local = await cluster();
    const remote = new MemKV();
    await remote.put(stateKey('nodes', 'c2', 'n1'), node('c2', 2, 'n1'));
    await local.put(pinnedKey('c2'), pin('c2', 2));
    let keysFailing = true;
    const base = meshLocalOf(local);
    const store: MeshLocal = { ...base, mirror: { ...base.mirror, entries: async (p, page) => (keysFailing && p.startsWith('wiremesh/cache/') && p.includes('/c2/') ? Promise.reject(new Error('etcd unavailable')) : base.mirror.entries(p, page)) } };
    const mesh = new KVStoreMesh('c1', store, silentLogger, 60_000, DEFAULT_BUDGET, { statusMs: 5, startRetryMs: { first: 10, max: 40 }, connect: () => ({ store: remote, close: () => undefined }) });
    await mesh.start();
    await local.put(remoteKey('c2'), spec('c2'));
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: false, lastError: expect.stringContaining('start failed: etcd unavailable'), behindSince: expect.any(Number) }), soon);
    await vi.waitFor(() => expect(mesh.failures.start).toBeGreaterThanOrEqual(3), soon); // tried again, more than once
    expect(mesh.pending().startRetries).toBe(1);
    const metrics = new KVStoreMeshMetrics('c1', mesh);
    expect(await metrics.text()).toMatch(new RegExp(`wiremesh_kvstoremesh_failures_total\\{what="replication-start",cluster="c1"\\} ${mesh.failures.start}\\n`));
    expect(await metrics.text()).toContain('wiremesh_kvstoremesh_pending_retries{what="start",cluster="c1"} 1\n');
    keysFailing = false;
    await vi.waitFor(() => expect(local.entries(syncedPrefix()).map((e) => e.key).sort()).toEqual(REPLICATED_TYPES.map((t) => syncedKey('c2', t)).sort()), soon);
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true }), soon);
    expect(statusOf(local, 'c2')!.lastError).toBeUndefined();
    expect(local.get(cacheKey('nodes', 'c2', 'n1'))?.value).toBe(node('c2', 2, 'n1'));
    expect(mesh.pending().startRetries).toBe(0);
    const failed = mesh.failures.start;
    await sleep(100);
    expect(mesh.failures.start).toBe(failed); // started: no more tries
    await mesh.stop();
  });

  it('regression: a status put against a hung local etcd has a deadline, is counted, and holds no start or stop of remotes; a late one is purged again', async () => {
    const { local, remotes } = await pinnedPair();
    const base = meshLocalOf(local);
    let hung: Promise<void> | undefined;
    let puts = 0;
    const store: MeshLocal = {
      ...base,
      lease: (ttl) => {
        const l = base.lease(ttl);
        return { ...l, put: async (k, v) => (k.startsWith(remoteStatusKey('')) && hung && (puts++, await hung), l.put(k, v)) };
      },
    };
    const mesh = new KVStoreMesh('c1', store, silentLogger, 60_000, DEFAULT_BUDGET, { statusMs: 5, statusPutMs: 50, purgeRetryMs: 20, connect: (s) => ({ store: remotes[s.name]!, close: () => undefined }) });
    await mesh.start();
    await local.put(remoteKey('c2'), spec('c2'));
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true, entries: { nodes: 1 } }), soon);
    let unhang!: () => void;
    hung = new Promise((r) => (unhang = r));
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2')); // the status changes: its put hangs
    await vi.waitFor(() => expect(puts).toBe(1), soon);
    // disconnected meanwhile: the purge goes on past the deadline (before: it waited for the put, for ever)
    await local.delete(remoteKey('c2'));
    await vi.waitFor(() => expect(REPLICATED_TYPES.flatMap((t) => local.entries(cachePrefix(t, 'c2')))).toEqual([]), soon);
    expect(mesh.failures.statusPut).toBeGreaterThan(0);
    expect(puts).toBe(1); // one put in flight per remote: not sent again while it hangs
    // and another remote starts
    await local.put(remoteKey('c3'), spec('c3'));
    await vi.waitFor(() => expect(local.get(syncedKey('c3', 'nodes'))).toBeDefined(), soon);
    // the hung put lands at last, after the purge: its status is deleted again
    hung = undefined;
    unhang();
    await vi.waitFor(() => expect(statusOf(local, 'c3')).toMatchObject({ connected: true }), soon);
    await vi.waitFor(() => expect(heldOf(local, 'c2')).toEqual([]), soon);
    const text = await new KVStoreMeshMetrics('c1', mesh).text();
    expect(text).toMatch(/wiremesh_kvstoremesh_failures_total\{what="status-put",cluster="c1"\} [1-9]/);
    await mesh.stop();
  });
});
