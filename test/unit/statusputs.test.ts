// The remotes' statuses of one pass in one transaction (src/controlplane/statusputs.ts; issue 16: during churn
// every remote's status changed on every pass, one grpc Put and one raft entry per remote every 2 s).
import { describe, expect, it, vi } from 'vitest';
import { remoteKey, remoteStatusKey, stateKey } from '../../src/controlplane/keys.js';
import { DEFAULT_BUDGET, KVStoreMesh } from '../../src/controlplane/kvstoremesh.js';
import { MAX_TXN_BYTES, MAX_TXN_OPS, type MeshLocal } from '../../src/controlplane/mirrorwriter.js';
import { statusBatches } from '../../src/controlplane/statusputs.js';
import { silentLogger } from '../../src/log.js';
import { meshLocalOf, node, pinnedPair, soon, spec, statusOf } from './meshfakes.js';

describe('statusBatches', () => {
  it('cuts the puts, in order, at MAX_TXN_OPS puts and at MAX_TXN_BYTES bytes (one put at least per transaction)', () => {
    const many = Array.from({ length: MAX_TXN_OPS + 2 }, (_, i) => ({ key: `k${i}`, v: '{}' }));
    expect(statusBatches(many).map((b) => b.length)).toEqual([MAX_TXN_OPS, 2]);
    expect(statusBatches(many).flat()).toEqual(many);
    const big = (i: number, bytes: number) => ({ key: `b${i}`, v: 'x'.repeat(bytes - 2) });
    expect(statusBatches([big(0, MAX_TXN_BYTES / 2), big(1, MAX_TXN_BYTES / 2), big(2, 2)]).map((b) => b.length)).toEqual([2, 1]);
    expect(statusBatches([big(0, MAX_TXN_BYTES * 2), big(1, 2)]).map((b) => b.length)).toEqual([1, 1]);
    expect(statusBatches([])).toEqual([]);
  });
});

describe('kvstoremesh: status puts', () => {
  /** c1 with remotes c2 and c3; its lease's putAll is counted (and fails while `failing`), its single puts too. */
  async function meshWithCountedLease() {
    const { local, remotes } = await pinnedPair();
    const base = meshLocalOf(local);
    const s = { putAll: [] as string[][], statusPuts: 0, failing: false };
    const store: MeshLocal = {
      ...base,
      lease: (ttl) => {
        const l = base.lease(ttl);
        return {
          ...l,
          put: async (k, v) => (k.startsWith(remoteStatusKey('')) && s.statusPuts++, l.put(k, v)),
          putAll: async (puts) => {
            s.putAll.push(puts.map(([k]) => k));
            if (s.failing) throw new Error('etcd unavailable');
            for (const [k, v] of puts) await l.put(k, v);
          },
        };
      },
    };
    const mesh = new KVStoreMesh('c1', store, silentLogger, 60_000, DEFAULT_BUDGET, { statusMs: 50, connect: (sp) => ({ store: remotes[sp.name]!, close: () => undefined }) });
    await mesh.start();
    await local.put(remoteKey('c2'), spec('c2'));
    await local.put(remoteKey('c3'), spec('c3'));
    await vi.waitFor(() => expect([statusOf(local, 'c2'), statusOf(local, 'c3')]).toMatchObject([{ entries: { nodes: 1 } }, { entries: { nodes: 1 } }]), soon);
    return { local, remotes, mesh, s };
  }

  it('issue 16: the statuses that changed in a pass go in one transaction, not one put per remote', async () => {
    const { local, remotes, mesh, s } = await meshWithCountedLease();
    const before = s.putAll.length;
    // both remotes change between two passes
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    await remotes.c3!.put(stateKey('nodes', 'c3', 'n2'), node('c3', 3, 'n2'));
    await vi.waitFor(() => expect([statusOf(local, 'c2'), statusOf(local, 'c3')]).toMatchObject([{ entries: { nodes: 2 } }, { entries: { nodes: 2 } }]), soon);
    expect(s.statusPuts).toBe(0); // before: one lease put per remote and pass
    expect(s.putAll.some((keys) => keys.length === 2)).toBe(true);
    for (const keys of s.putAll) expect(new Set(keys).size).toBe(keys.length); // a key once per transaction
    expect(s.putAll.length - before).toBeLessThanOrEqual(2);
    await mesh.stop();
  });

  it('a failed transaction is counted once and written again on the next pass', async () => {
    const { local, remotes, mesh, s } = await meshWithCountedLease();
    s.failing = true;
    const tried = s.putAll.length;
    await remotes.c2!.put(stateKey('nodes', 'c2', 'n2'), node('c2', 2, 'n2'));
    await vi.waitFor(() => expect(s.putAll.length).toBeGreaterThan(tried + 1), soon); // tried again, pass after pass
    expect(mesh.failures.statusPut).toBe(s.putAll.length - tried);
    expect(statusOf(local, 'c2')).toMatchObject({ entries: { nodes: 1 } });
    s.failing = false;
    await vi.waitFor(() => expect(statusOf(local, 'c2')).toMatchObject({ entries: { nodes: 2 } }), soon);
    await mesh.stop();
  });
});
