// A remote cluster as a whole is bounded by kvstoremesh's budget, for every agent at once (docs/security.md,
// Bounds): records and bytes, and node records apart (each admitted node is a tunnel, routes and a peer in every
// agent). As the attacker: a remote registers more nodes than its node budget; the excess is refused alone
// (`budget`, counted in its status), its other records (endpoints) still copied.
import { describe, expect, it, vi } from 'vitest';
import { cacheKey, cachePrefix, stateKey } from '../../src/controlplane/keys.js';
import { DEFAULT_BUDGET, RemoteReplication } from '../../src/controlplane/kvstoremesh.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { Rejections, Trust, type PinnedCluster } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { mirrorOf } from './meshfakes.js';

const node = (name: string, i: number) =>
  JSON.stringify({ cluster: 'c2', clusterId: 2, name, addresses: [`198.18.2.${10 + i}`], port: 51820, publicKey: Buffer.alloc(32, i + 1).toString('base64'), podCIDRs: [`100.66.${i}.0/24`], bootId: '1' });
const ep = (n: string, ip: string) => JSON.stringify({ ip, cluster: 'c2', node: n, namespace: 'ns', name: 'p1', labels: { app: 'x' } });

describe('kvstoremesh: a remote\'s node budget', () => {
  it('regression: nodes past --max-nodes-per-remote are refused alone and reported; endpoints still copied', async () => {
    expect(DEFAULT_BUDGET.maxNodes).toBe(5000);
    const remote = new MemKV();
    const local = new MemKV();
    const pinned: PinnedCluster = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.pin(pinned);
    const rejections = new Rejections(silentLogger);
    for (let i = 0; i < 5; i++) await remote.put(stateKey('nodes', 'c2', `n${i}`), node(`n${i}`, i));
    await remote.put(stateKey('ip', 'c2', 'n0/100.66.0.10'), ep('n0', '100.66.0.10'));
    const r = new RemoteReplication({ name: 'c2', endpoints: [] }, pinned, trust, mirrorOf(local), silentLogger, rejections, { ...DEFAULT_BUDGET, maxNodes: 3 }, () => ({ store: remote, close: () => undefined }));
    await r.start();
    await vi.waitFor(() => expect(local.entries(cachePrefix('ip', 'c2')).length).toBe(1), { timeout: 5000 });
    await vi.waitFor(() => expect(local.entries(cachePrefix('nodes', 'c2')).length).toBe(3), { timeout: 5000 });
    expect(r.status()).toMatchObject({ rejected: { 'node/budget': 2 }, budget: { records: 4, nodes: 3, maxNodes: 3 } });
    // an update of a copied node is no new node: still copied at the budget
    await remote.put(stateKey('nodes', 'c2', 'n0'), node('n0', 0).replace('"bootId":"1"', '"bootId":"2"'));
    await vi.waitFor(() => expect(local.entries(cachePrefix('nodes', 'c2')).find((e) => e.key === cacheKey('nodes', 'c2', 'n0'))?.value).toContain('"bootId":"2"'), { timeout: 5000 });
    // a deleted node frees its place for the next new one
    await remote.delete(stateKey('nodes', 'c2', 'n1'));
    await remote.put(stateKey('nodes', 'c2', 'n9'), node('n9', 9));
    await vi.waitFor(() => expect(local.entries(cachePrefix('nodes', 'c2')).map((e) => e.key).sort()).toEqual(['n0', 'n2', 'n9'].map((n) => cacheKey('nodes', 'c2', n))), { timeout: 5000 });
    expect(r.status().budget).toMatchObject({ nodes: 3 });
    await r.stop(false, 1000);
  });

  it('regression: a restart keeps the nodes copied before it (the first list counts cached nodes first, not key order)', async () => {
    const remote = new MemKV();
    const local = new MemKV();
    const pinned: PinnedCluster = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.pin(pinned);
    const start = async () => {
      const r = new RemoteReplication({ name: 'c2', endpoints: [] }, pinned, trust, mirrorOf(local), silentLogger, new Rejections(silentLogger), { ...DEFAULT_BUDGET, maxNodes: 3 }, () => ({ store: remote, close: () => undefined }));
      await r.start();
      return r;
    };
    const copied = () => local.entries(cachePrefix('nodes', 'c2')).map((e) => e.key).sort();
    const want = ['n2', 'n3', 'n4'].map((n) => cacheKey('nodes', 'c2', n));
    const r1 = await start();
    for (const i of [4, 3, 2]) await remote.put(stateKey('nodes', 'c2', `n${i}`), node(`n${i}`, i));
    await vi.waitFor(() => expect(copied()).toEqual(want), { timeout: 5000 });
    for (const i of [1, 0]) await remote.put(stateKey('nodes', 'c2', `n${i}`), node(`n${i}`, i));
    await vi.waitFor(() => expect(r1.status()).toMatchObject({ rejected: { 'node/budget': 2 } }), { timeout: 5000 });
    await r1.stop(false, 1000);
    expect(copied()).toEqual(want);
    const r2 = await start();
    await vi.waitFor(() => expect(r2.status()).toMatchObject({ rejected: { 'node/budget': 2 }, budget: { nodes: 3 } }), { timeout: 5000 });
    expect(copied()).toEqual(want);
    await r2.stop(false, 1000);
  });
});
