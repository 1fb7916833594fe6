// kvstoremesh restarted while the remote changed its records, on two real etcds (the remote's and the local one):
// what agents watching the local cache see. A key only updated while kvstoremesh was down must arrive as one put (a
// modify event: before the watermark, watermark.ts, it was deleted then put, a moment where an endpoint's traffic is
// dropped); a key deleted while down is deleted; one deleted and created again is a new incarnation (delete, put).
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { cacheKey, clusterConfigKey, pinnedKey, remoteKey, stateKey, syncedKey, syncedPrefix } from '../../src/controlplane/keys.js';
import { EtcdStore } from '../../src/controlplane/kvstore.js';
import { KVStoreMesh, REPLICATED_TYPES } from '../../src/controlplane/kvstoremesh.js';
import { etcdMeshLocal } from '../../src/controlplane/mirrorwriter.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { silentLogger } from '../../src/log.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';
import { node, pin, spec } from '../unit/meshfakes.js';

const soon = { timeout: 15_000, interval: 20 };
const src = (n: string) => stateKey('nodes', 'c2', n);
const dst = (n: string) => cacheKey('nodes', 'c2', n);
/** n's record with another boot id: a valid update of the same node. */
const updated = (n: string, boot: string) => JSON.stringify({ ...(JSON.parse(node('c2', 2, n)) as object), bootId: boot });

function mesh(local: Etcd3, remote: Etcd3): KVStoreMesh {
  return new KVStoreMesh('c1', etcdMeshLocal(local), silentLogger, 3_600_000, undefined, { connect: () => ({ store: new EtcdStore(remote), close: () => undefined }) });
}

describe.skipIf(!hasCommand('etcd'))('kvstoremesh restarted while the remote changed: what the local watchers see', () => {
  const localEtcd = loopbackEtcd('restart-local', 31000);
  const remoteEtcd = loopbackEtcd('restart-remote', 33000);
  afterAll(async () => {
    await localEtcd.stop();
    await remoteEtcd.stop();
  });

  it('regression: a key updated while down is one put (no delete); deleted is deleted; re-created is delete then put', async () => {
    const [local, remote] = [await localEtcd.client(), await remoteEtcd.client()];
    await local.put(clusterConfigKey('c1')).value(JSON.stringify({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'] }));
    await local.put(pinnedKey('c2')).value(pin('c2', 2));
    await local.put(remoteKey('c2')).value(spec('c2'));
    for (const n of ['n1', 'n2', 'n3', 'n4']) await remote.put(src(n)).value(node('c2', 2, n));

    let m = mesh(local, remote);
    await m.start();
    await vi.waitFor(async () => expect((await local.getAll().prefix(dst('')).keys()).length).toBe(4), soon);
    await vi.waitFor(async () => expect((await local.getAll().prefix(syncedPrefix('c2')).keys()).length).toBe(REPLICATED_TYPES.length), soon);
    await m.stop(); // waits for the mirror's writes
    const marker = await local.get(syncedKey('c2', 'nodes')).string();

    // while kvstoremesh is down: n1 updated in place, n2 deleted and created again (another value), n3 deleted
    await remote.put(src('n1')).value(updated('n1', '2'));
    await remote.delete().key(src('n2')).exec();
    await remote.put(src('n2')).value(updated('n2', '3'));
    await remote.delete().key(src('n3')).exec();

    const events: string[] = [];
    const watch = await local.watch().prefix(dst('')).create();
    watch.on('put', (kv) => events.push(`put ${kv.key.toString().slice(dst('').length)}`));
    watch.on('delete', (kv) => events.push(`delete ${kv.key.toString().slice(dst('').length)}`));

    m = mesh(local, remote);
    await m.start();
    await vi.waitFor(async () => expect(await local.get(dst('n1')).string()).toBe(updated('n1', '2')), soon);
    await vi.waitFor(async () => expect(await local.get(dst('n2')).string()).toBe(updated('n2', '3')), soon);
    await vi.waitFor(async () => expect(await local.get(dst('n3')).string()).toBeNull(), soon);
    await m.stop();
    await watch.cancel();

    // n4 unchanged: never deleted (the first list puts its value again). On main: "delete n1", "put n1".
    expect(events.filter((e) => e.endsWith(' n1'))).toEqual(['put n1']);
    expect(events.filter((e) => e.endsWith(' n2'))).toEqual(['delete n2', 'put n2']);
    expect(events.filter((e) => e.endsWith(' n3'))).toEqual(['delete n3']);
    expect(events).not.toContain('delete n4');
    // how: the nodes' marker held the watermark (watermark.ts), written with the transaction that emptied the queue
    expect(JSON.parse(marker ?? '{}')).toHaveProperty('revision');
  }, 60_000);
});
