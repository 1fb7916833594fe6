// kvstoremesh restarted with a remote at its node budget, on two real etcds (the remote's and the local one): the
// first list keeps a place for every node it had cached, and once it ended releases those of nodes deleted while
// kvstoremesh was down; the new nodes refused for them in that list take them at once, in etcd's key order, up to
// --max-nodes-per-remote (src/controlplane/nodeplaces.ts; the in-memory cases: test/unit/remote-node-places.test.ts).
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { cacheKey, clusterConfigKey, pinnedKey, remoteKey, remoteStatusKey, stateKey, syncedKey } from '../../src/controlplane/keys.js';
import { EtcdStore } from '../../src/controlplane/kvstore.js';
import { DEFAULT_BUDGET, KVStoreMesh } from '../../src/controlplane/kvstoremesh.js';
import { etcdMeshLocal } from '../../src/controlplane/mirrorwriter.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { silentLogger } from '../../src/log.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';
import { pin, spec } from '../unit/meshfakes.js';

const soon = { timeout: 15_000, interval: 20 };
const MAX = 5;
const src = (n: string) => stateKey('nodes', 'c2', n);
const dst = (n: string) => cacheKey('nodes', 'c2', n);
/** Node `name` of c2 with its own address (198.18.2.<host>, inside the pin), pod CIDR and key. */
const node = (name: string, host: number) =>
  JSON.stringify({ cluster: 'c2', clusterId: 2, name, addresses: [`198.18.2.${host}`], port: 51820, publicKey: Buffer.alloc(32, host).toString('base64'), podCIDRs: [`100.66.${host}.0/24`], bootId: '1' });

function mesh(local: Etcd3, remote: Etcd3): KVStoreMesh {
  return new KVStoreMesh('c1', etcdMeshLocal(local), silentLogger, 3_600_000, { ...DEFAULT_BUDGET, maxNodes: MAX }, { connect: () => ({ store: new EtcdStore(remote), close: () => undefined }) });
}

describe.skipIf(!hasCommand('etcd'))('kvstoremesh restarted at a remote\'s node budget: the places of nodes deleted while down', () => {
  const localEtcd = loopbackEtcd('places-local', 37000);
  const remoteEtcd = loopbackEtcd('places-remote', 39000);
  afterAll(async () => {
    await localEtcd.stop();
    await remoteEtcd.stop();
  });

  it('regression: new nodes listed before the cached ones take the released places at the list end, in key order, exactly up to the budget', async () => {
    const [local, remote] = [await localEtcd.client(), await remoteEtcd.client()];
    await local.put(clusterConfigKey('c1')).value(JSON.stringify({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'] }));
    await local.put(pinnedKey('c2')).value(pin('c2', 2));
    await local.put(remoteKey('c2')).value(spec('c2'));
    const first = ['p1', 'p2', 'p3', 'p4', 'p5'];
    for (const [i, n] of first.entries()) await remote.put(src(n)).value(node(n, 10 + i));
    const copied = async () => (await local.getAll().prefix(dst('')).keys()).sort();

    let m = mesh(local, remote);
    await m.start();
    await vi.waitFor(async () => expect(await copied()).toEqual(first.map(dst)), soon);
    await m.stop();

    // while kvstoremesh is down: two cached nodes deleted, new ones written, most listed before every cached one
    const deleted = ['p2', 'p4'];
    for (const n of deleted) await remote.delete().key(src(n)).exec();
    const fresh = ['a1', 'a2', 'a3', 'a4', 'z1'];
    for (const [i, n] of fresh.entries()) await remote.put(src(n)).value(node(n, 100 + i));
    await local.delete().key(syncedKey('c2', 'nodes')).exec(); // to see the restart's own marker

    // the budget rule: the cached nodes still there, then the new ones in key order, MAX in all
    const still = first.filter((n) => !deleted.includes(n));
    const admitted = [...fresh].sort().slice(0, MAX - still.length);
    const want = [...still, ...admitted].map(dst).sort();

    m = mesh(local, remote);
    await m.start();
    await vi.waitFor(async () => expect(await local.get(syncedKey('c2', 'nodes')).string()).not.toBeNull(), soon);
    // before: a1..a4 and z1 refused (the deleted nodes' places held to the list's end), 3 nodes of 5
    await vi.waitFor(async () => expect(await copied()).toEqual(want), soon);
    const status = async () => JSON.parse((await local.get(remoteStatusKey('c2')).string()) ?? '{}') as { budget?: { nodes: number }; rejected?: Record<string, number> };
    await vi.waitFor(async () => expect(await status()).toMatchObject({ budget: { nodes: MAX }, rejected: { 'node/budget': fresh.length - admitted.length } }), soon);
    // agents see the marker no earlier than every node admitted at the list's end
    const marker = await local.get(syncedKey('c2', 'nodes')).exec();
    const cache = await local.getAll().prefix(dst('')).exec();
    for (const kv of cache.kvs) expect(Number(kv.mod_revision)).toBeLessThanOrEqual(Number(marker.kvs[0]!.mod_revision));
    await m.stop();
  }, 60_000);
});
