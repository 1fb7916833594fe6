// The identity collector's etcd calls end at their deadline (etcdCollectorStore's grpc deadline) on a real etcd
// that stopped answering (this file's own etcd, paused with SIGSTOP by its pid): a sweep given up on leaves no call
// in flight (before: the call ran on until etcd answered, each holding one of MAX_ABANDONED_SWEEPS, after which
// every sweep was skipped), and the deadline failures open no circuit breaker (connectEtcd's isHostFailure): once
// etcd answers again, the client's next call goes through at once.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { etcdCollectorStore, IdentityCollector } from '../../src/identity/allocator.js';
import { Rejections } from '../../src/controlplane/records/index.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { silentLogger } from '../../src/log.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';

const DEADLINE_MS = 300;

describe.skipIf(!hasCommand('etcd'))('the identity collector against a paused etcd', () => {
  const etcd = loopbackEtcd('collector', 35000);
  afterAll(() => etcd.stop());

  it('regression: each sweep given up on ends its call by the deadline (none left in flight); the breaker stays closed', async () => {
    const c = await etcd.client();
    await c.put('wiremesh/probe').value('1');
    const collector = new IdentityCollector(etcdCollectorStore(c, DEADLINE_MS), 'c1', silentLogger, new Rejections(silentLogger), DEADLINE_MS);
    const pid = etcd.pid()!;
    process.kill(pid, 'SIGSTOP');
    try {
      // three sweeps in a row, each given up on: three deadline failures, as many as open a breaker of 3
      for (let i = 0; i < 3; i++) {
        expect(await collector.sweep()).toBe(0);
        // the call itself ended (its grpc deadline) while etcd is still paused; before: it stayed in flight
        await vi.waitFor(() => expect(collector.stats.abandoned).toBe(0), { timeout: 5000, interval: 20 });
      }
      expect(collector.stats).toMatchObject({ timedOut: 3, failed: 0, skipped: 0, abandoned: 0 });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // not BrokenCircuitError: the breaker counted none of the three
    expect(await c.get('wiremesh/probe').string()).toBe('1');
    expect(await collector.sweep()).toBe(0); // a sweep of an etcd that answers: done
    expect(collector.stats.done).toBe(1);
  }, 60_000);
});
