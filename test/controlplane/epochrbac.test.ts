// The purge fence's key under etcd's own RBAC (rbac.ts, etcd enforcing it): kvstoremesh's copy transactions
// compare the epoch key (etcd wants Read on every compared key) and its purges put it; an agent may do neither.
import { afterAll, describe, expect, it } from 'vitest';
import { cacheKey, epochKey, syncedKey } from '../../src/controlplane/keys.js';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { etcdMirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { ensureRole, kvstoremeshRole, nodeRole } from '../../src/controlplane/rbac.js';
import { purgeRemote } from '../../src/controlplane/purges.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';

describe.skipIf(!hasCommand('etcd'))('the epoch key under etcd RBAC', () => {
  const etcd = loopbackEtcd('epochrbac', 45000);
  const closers: Array<() => void> = [];
  afterAll(async () => {
    for (const close of closers) close();
    await etcd.stop();
  });

  it('kvstoremesh compares and puts it (fenced copy, purge); an agent can neither write nor fence with it', async () => {
    const root = await etcd.client();
    for (const spec of [kvstoremeshRole('c1'), nodeRole('c1', 'n1')]) {
      await ensureRole(root, spec);
      await root.user(spec.user!).setPassword('pw');
    }
    await root.user('root').create('rootpw');
    await root.user('root').addRole('root');
    await root.auth.authEnable({});
    const as = (username: string) => {
      const c = connectEtcd({ endpoints: [etcd.url()!], username, password: 'pw' });
      closers.push(() => c.close());
      return etcdMirrorTarget(c);
    };
    const km = as('kvstoremesh');
    const revision = await km.revision(epochKey('c2'));
    await km.write([[cacheKey('nodes', 'c2', 'n1'), '{}']], [{ key: epochKey('c2'), revision }]); // Read on the epoch: the compare is allowed
    await purgeRemote(km, 'c2'); // Write on it: the purge moves it
    expect(await km.revision(epochKey('c2'))).not.toBe(revision);
    await expect(km.write([[cacheKey('nodes', 'c2', 'n1'), '{}']], [{ key: epochKey('c2'), revision }])).rejects.toThrow(/fenced/);
    expect(await km.keys(syncedKey('c2', 'nodes'))).toEqual([]);

    const agent = as(nodeRole('c1', 'n1').user!);
    await expect(agent.write([[epochKey('c2'), '{}']])).rejects.toThrow(/permission denied/);
  }, 60_000);
});
