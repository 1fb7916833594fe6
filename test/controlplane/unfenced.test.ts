// kvstoremesh under its role from before the purge fence (no mesh/v1/epochs/ grant: `clustermesh enable` not run
// again after the upgrade), on a real etcd enforcing RBAC. Review of s12fence #1: etcd refused the purge's whole
// transaction (epoch put + marker deletes), so a disconnected remote's marker and cache stayed (agents kept admitting
// it, retried ≤ 60 s forever), and every replication start failed on its read of the epoch. Now both run unfenced,
// as before the fence, loudly (unfenced.ts).
import { afterAll, describe, expect, it, vi } from 'vitest';
import { cacheKey, epochsPrefix, stateKey, syncedKey } from '../../src/controlplane/keys.js';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { etcdMirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { Purges } from '../../src/controlplane/purges.js';
import { ensureRole, kvstoremeshRole } from '../../src/controlplane/rbac.js';
import { Rejections, Trust } from '../../src/controlplane/records/index.js';
import { DEFAULT_BUDGET, RemoteReplication } from '../../src/controlplane/replication.js';
import { DEFAULT_COALESCER, TxnCoalescer } from '../../src/controlplane/txncoalescer.js';
import { checkFenceGrant, UNFENCED_HINT } from '../../src/controlplane/unfenced.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { silentLogger } from '../../src/log.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';
import { node } from '../unit/meshfakes.js';

describe.skipIf(!hasCommand('etcd'))('kvstoremesh under a role without the epochs grant', () => {
  const etcd = loopbackEtcd('unfenced', 47000);
  const closers: Array<() => void> = [];
  afterAll(async () => {
    for (const close of closers) close();
    await etcd.stop();
  });

  it('regression: a disconnected remote is still purged (marker and cache gone), a replication still starts; both said and counted', async () => {
    const root = await etcd.client();
    const current = kvstoremeshRole('c1');
    const old = { ...current, grants: current.grants.filter((g) => !('prefix' in g && g.prefix === epochsPrefix())) };
    expect(old.grants.length).toBe(current.grants.length - 1);
    await ensureRole(root, old);
    await root.user(old.user!).setPassword('pw');
    // the cache and marker of a remote c2 as a kvstoremesh left them, then disconnected
    await root.put(cacheKey('nodes', 'c2', 'n1')).value(node('c2', 2, 'n1'));
    await root.put(syncedKey('c2', 'nodes')).value('{"at":"2026-12-01T00:00:00.000Z"}');
    await root.user('root').create('rootpw');
    await root.user('root').addRole('root');
    await root.auth.authEnable({});
    const c = connectEtcd({ endpoints: [etcd.url()!], username: old.user!, password: 'pw' });
    closers.push(() => c.close());
    const km = etcdMirrorTarget(c);
    const mirror = new TxnCoalescer(km, DEFAULT_COALESCER); // as KVStoreMesh purges through it

    expect(await checkFenceGrant(mirror, silentLogger)).toBe(false);
    const told: string[] = [];
    await new Purges(mirror, () => 5000, undefined, (remote, what) => told.push(`${remote} ${what}`)).run('c2');
    expect(told).toEqual(['c2 purge']);
    expect(await km.keys(syncedKey('c2', 'nodes'))).toEqual([]);
    expect(await km.keys(cacheKey('nodes', 'c2', ''))).toEqual([]);

    // a replication of c3 starts (unfenced) and copies, its status saying why it is unfenced
    const remote = new MemKV();
    await remote.put(stateKey('nodes', 'c3', 'n1'), node('c3', 3, 'n1'));
    const pinned = { name: 'c3', id: 3, podCIDRs: ['100.67.0.0/16'], underlayCIDRs: ['198.18.3.0/24'], relay: false, acceptPolicies: false };
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.pin(pinned);
    const r = new RemoteReplication({ name: 'c3', endpoints: [] }, pinned, trust, mirror, silentLogger, new Rejections(silentLogger), DEFAULT_BUDGET, () => ({ store: remote, close: () => undefined }), undefined, (name, what) => told.push(`${name} ${what}`));
    await r.start();
    await vi.waitFor(async () => expect(await km.keys(cacheKey('nodes', 'c3', 'n1'))).toEqual([cacheKey('nodes', 'c3', 'n1')]), { timeout: 15_000 });
    expect(told).toEqual(['c2 purge', 'c3 replication']);
    expect(r.status().lastError).toBe(UNFENCED_HINT);
    await r.stop(false, 1000);
    mirror.stop();
  }, 60_000);
});
