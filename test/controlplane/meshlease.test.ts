// etcdMeshLocal's lease against a real etcd on loopback: putAll (kvstoremesh's status puts of one pass, one Txn,
// src/controlplane/statusputs.ts) writes every key under the process's lease, so they go when it does.
import { afterAll, describe, expect, it } from 'vitest';
import { etcdMeshLocal } from '../../src/controlplane/mirrorwriter.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';

describe.skipIf(!hasCommand('etcd'))('etcdMeshLocal: lease putAll on a real etcd', () => {
  const etcd = loopbackEtcd('meshlease', 25000);
  afterAll(() => etcd.stop());

  it('puts every key in one transaction under the lease: revoking the lease deletes them all', async () => {
    const c = await etcd.client();
    const lease = etcdMeshLocal(c).lease(60);
    const rev0 = Number((await c.get('x').exec()).header.revision);
    await lease.putAll!([
      ['s/c2', '{"a":1}'],
      ['s/c3', '{"a":2}'],
    ]);
    const kvs = (await c.getAll().prefix('s/').exec()).kvs;
    expect(kvs.map((kv) => [kv.key.toString(), kv.value.toString()])).toEqual([
      ['s/c2', '{"a":1}'],
      ['s/c3', '{"a":2}'],
    ]);
    expect(kvs.map((kv) => Number(kv.mod_revision))).toEqual([rev0 + 1, rev0 + 1]); // one transaction: one revision
    const id = kvs[0]!.lease;
    expect(id).not.toBe('0');
    expect(kvs[1]!.lease).toBe(id);
    await c.leaseClient.leaseRevoke({ ID: id });
    expect((await c.getAll().prefix('s/').keys()).length).toBe(0);
    lease.release();
  }, 60_000);

  it('regression: a putAll refused for a lost lease reports the loss at once (review of s8kvm: the next keep-alive, up to 20 s later)', async () => {
    const c = await etcd.client();
    const lease = etcdMeshLocal(c).lease(60);
    await lease.putAll!([['t/c2', '{}']]);
    const lost = new Promise<string>((resolve) => lease.onLost!((err) => resolve(err.name)));
    const id = (await c.get('t/c2').exec()).kvs[0]!.lease;
    await c.leaseClient.leaseRevoke({ ID: id });
    await expect(lease.putAll!([['t/c2', '{}']])).rejects.toThrow(/lease/i);
    // within the test's own 10 s bound (not a timing threshold: the keep-alive that found it before came after 20 s)
    await expect(Promise.race([lost.then(() => 'lost'), new Promise((r) => setTimeout(() => r('not reported'), 10_000))])).resolves.toBe('lost');
    lease.release();
  }, 60_000);
});
