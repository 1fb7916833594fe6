// kvstoremesh's purge fence (src/controlplane/fence.ts) on the in-memory store: a purge that lands after the
// remote's replication began (one given up on at its deadline, applied late) fences that replication's writes; the
// replication, still current, is started again and copies the remote anew, rather than retrying a refused write for
// ever or writing into a cache that lost the rest of the remote's records.
import { describe, expect, it, vi } from 'vitest';
import { cacheKey, epochsPrefix, remoteKey, stateKey, syncedKey } from '../../src/controlplane/keys.js';
import { DEFAULT_BUDGET, KVStoreMesh, REPLICATED_TYPES } from '../../src/controlplane/kvstoremesh.js';
import { purgeRemote } from '../../src/controlplane/purges.js';
import { jittered, HEARTBEAT_JITTER } from '../../src/controlplane/meshheartbeat.js';
import { silentLogger } from '../../src/log.js';
import { UNFENCED_HINT } from '../../src/controlplane/unfenced.js';
import { heldOf, meshLocalOf, mirrorOf, node, pinnedPair, soon, spec, statusOf } from './meshfakes.js';

describe('kvstoremesh: the purge fence', () => {
  it('regression: a purge landing after a replication began fences its writes; the replication starts again and copies the remote anew', async () => {
    const { local, remotes } = await pinnedPair();
    const mesh = new KVStoreMesh('c1', meshLocalOf(local), silentLogger, 60_000, DEFAULT_BUDGET, { statusMs: 5, txn: { intervalMs: 0 }, connect: (sp) => ({ store: remotes[sp.name]!, close: () => undefined }) });
    await mesh.start();
    await local.put(remoteKey('c2'), spec('c2'));
    await vi.waitFor(() => expect(REPLICATED_TYPES.filter((t) => !local.get(syncedKey('c2', t)))).toEqual([]), soon);
    expect(local.get(cacheKey('nodes', 'c2', 'n1'))?.value).toBe(node('c2', 2, 'n1'));

    // a purge of c2 applied now, after this replication read c2's epoch: its cache, markers and status are gone
    await purgeRemote(mirrorOf(local), 'c2');
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    // the write of n2 is refused (fenced); the replication starts again: n1 copied again, n2 too, markers back.
    // Before: n2 was written into the purged cache, n1 stayed missing, no marker was written again
    await vi.waitFor(() => expect(local.get(cacheKey('nodes', 'c2', 'n1'))?.value).toBe(node('c2', 2, 'n1')), soon);
    await vi.waitFor(() => expect(local.get(cacheKey('nodes', 'c2', 'n2'))?.value).toBe(node('c2', 2, 'n2')), soon);
    await vi.waitFor(() => expect(REPLICATED_TYPES.filter((t) => !local.get(syncedKey('c2', t)))).toEqual([]), soon);
    expect(mesh.failures.fenced).toBe(1);
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true }), soon);
    await mesh.stop();
  });
});

describe('kvstoremesh under a role without the epochs grant (unfenced.ts; real etcd: test/controlplane/unfenced.test.ts)', () => {
  it('regression: replicates and purges a disconnected remote unfenced, as before the fence; counted, said in the status', async () => {
    const { local, remotes } = await pinnedPair();
    const base = meshLocalOf(local);
    // etcd's answer to any read of, or transaction naming, an epoch key without the grant
    const denied = () => Promise.reject(new Error('7 PERMISSION_DENIED: etcdserver: permission denied'));
    const epoch = (k: string) => k.startsWith(epochsPrefix());
    const mirror = {
      ...base.mirror,
      revision: (k: string) => (epoch(k) ? denied() : base.mirror.revision(k)),
      write: (ops: Parameters<typeof base.mirror.write>[0], fences?: Parameters<typeof base.mirror.write>[1]) =>
        ops.some(([k]) => epoch(k)) || fences?.length ? denied() : base.mirror.write(ops, fences),
    };
    const mesh = new KVStoreMesh('c1', { ...base, mirror }, silentLogger, 60_000, DEFAULT_BUDGET, { statusMs: 5, txn: { intervalMs: 0 }, connect: (sp) => ({ store: remotes[sp.name]!, close: () => undefined }) });
    await mesh.start();
    await local.put(remoteKey('c2'), spec('c2'));
    // before: every start failed on its read of the epoch (nothing copied, retried for ever)
    await vi.waitFor(() => expect(REPLICATED_TYPES.filter((t) => !local.get(syncedKey('c2', t)))).toEqual([]), soon);
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ connected: true, lastError: UNFENCED_HINT }), soon);
    // before: the purge's transaction was refused whole; the markers and cache stayed (the remote still admitted)
    await local.delete(remoteKey('c2'));
    await vi.waitFor(() => expect(heldOf(local, 'c2')).toEqual([]), soon);
    expect(mesh.failures.unfenced).toBe(2); // the start, the purge
    await mesh.stop();
  });
});

describe('the heartbeat rewrite jitter', () => {
  it('spreads the 5 min rewrite over 270-330 s (± HEARTBEAT_JITTER), bounds included', () => {
    expect(HEARTBEAT_JITTER).toBe(0.1);
    expect(jittered(300_000, () => 0)).toBe(270_000);
    expect(jittered(300_000, () => 0.5)).toBe(300_000);
    expect(jittered(300_000, () => 0.999999)).toBeLessThanOrEqual(330_000);
    const drawn = Array.from({ length: 200 }, () => jittered(300_000));
    expect(Math.min(...drawn)).toBeGreaterThanOrEqual(270_000);
    expect(Math.max(...drawn)).toBeLessThanOrEqual(330_000);
    expect(new Set(drawn).size).toBeGreaterThan(1); // not one instant for every process
  });
});
