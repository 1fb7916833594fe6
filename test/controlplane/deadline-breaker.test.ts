// A call past its own grpc deadline is not a failure of the host (src/controlplane/etcdconnect.ts, isHostFailure):
// against a real etcd on loopback, a raw Txn given 1 ms (rawTxnWriter, the mirror's and the lease's writes) fails
// alone; the client's next calls go through. Before: etcd3 retried the DEADLINE_EXCEEDED three times and the three
// failures opened the circuit breaker, so a get and a lease grant on the healthy etcd failed with
// BrokenCircuitError for a second (review of s9fix, round 2).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GRPCDeadlineExceededError, type Etcd3 } from 'etcd3';
import { afterAll, describe, expect, it } from 'vitest';
import { rawTxnWriter } from '../../src/controlplane/etcdtxn.js';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { startEtcd, type EtcdProcess } from '../../src/testbed/etcd.js';
import { hasCommand } from '../../src/testbed/netns.js';

describe.skipIf(!hasCommand('etcd'))('a call past its grpc deadline on a real etcd', () => {
  let etcd: EtcdProcess | undefined;
  let client: Etcd3 | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'wm-deadline-'));
  afterAll(async () => {
    client?.close();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('regression: fails alone, once; the client\'s other calls go on (no circuit opened)', async () => {
    const port = 26000 + (process.pid % 1000);
    etcd = await startEtcd({ name: 'deadline', dataDir: join(dir, 'data'), host: '127.0.0.1', clientPort: port, peerPort: port + 1000 });
    const c = (client = connectEtcd({ endpoints: [etcd.clientUrl] }));
    await c.put('k').value('1');
    const write = rawTxnWriter(c, 0); // a deadline already past when the call starts
    const err = await write([['k', '2']]).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(GRPCDeadlineExceededError);
    expect(['1', '2']).toContain(await c.get('k').string()); // a call past its deadline may still have been applied
    const lease = c.lease(60, { autoKeepAlive: false });
    expect(await lease.grant()).toMatch(/^[0-9a-f]+$/);
    await lease.revoke();
  });
});
