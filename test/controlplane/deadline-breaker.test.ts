// A call past its own grpc deadline is not a failure of the host (src/controlplane/etcdconnect.ts, isHostFailure):
// against a real etcd on loopback, a raw Txn given 1 ms (rawTxnWriter, the mirror's and the lease's writes) fails
// alone; the client's next calls go through. Before: etcd3 retried the DEADLINE_EXCEEDED three times and the three
// failures opened the circuit breaker, so a get and a lease grant on the healthy etcd failed with
// BrokenCircuitError for a second (review of s9fix, round 2).
import { GRPCDeadlineExceededError } from 'etcd3';
import { afterAll, describe, expect, it } from 'vitest';
import { rawTxnWriter } from '../../src/controlplane/etcdtxn.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';

describe.skipIf(!hasCommand('etcd'))('a call past its grpc deadline on a real etcd', () => {
  const etcd = loopbackEtcd('deadline', 26000);
  afterAll(() => etcd.stop());

  it('regression: fails alone, once; the client\'s other calls go on (no circuit opened)', async () => {
    const c = await etcd.client();
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
