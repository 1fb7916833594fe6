// etcdMeshLocal's lease against a real etcd on loopback: putAll (kvstoremesh's status puts of one pass, one Txn,
// src/controlplane/statusputs.ts) writes every key under the process's lease, so they go when it does.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { afterAll, describe, expect, it } from 'vitest';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { etcdMeshLocal } from '../../src/controlplane/mirrorwriter.js';
import { startEtcd, type EtcdProcess } from '../../src/testbed/etcd.js';
import { hasCommand } from '../../src/testbed/netns.js';

describe.skipIf(!hasCommand('etcd'))('etcdMeshLocal: lease putAll on a real etcd', () => {
  let etcd: EtcdProcess | undefined;
  let client: Etcd3 | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'wm-meshlease-'));
  afterAll(async () => {
    client?.close();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('puts every key in one transaction under the lease: revoking the lease deletes them all', async () => {
    const port = 25000 + (process.pid % 1000);
    etcd = await startEtcd({ name: 'meshlease', dataDir: join(dir, 'data'), host: '127.0.0.1', clientPort: port, peerPort: port + 1000 });
    const c = (client = connectEtcd({ endpoints: [etcd.clientUrl] }));
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
    const c = client!;
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
