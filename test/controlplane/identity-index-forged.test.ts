// A node of our own cluster, with its own credentials, may write any identity-index entry (RBAC gives every node
// the cluster's index prefix). Played here as that node on a real etcd: the entry for a label set is pointed at
// another workload's identity, at a number that is no identity, at a record of the wrong labels, at garbage. An
// honest agent allocating for that label set must still get an identity whose record carries exactly its labels
// (the oracle: the record read back from etcd, decoded by hand, compared to the labels asked for), never the one
// the entry names; each forged entry is counted once with its key; honest entries are taken as before.
import { afterAll, describe, expect, it } from 'vitest';
import { etcdCollectorStore, IdentityAllocator, IdentityCollector } from '../../src/identity/allocator.js';
import { clusterIdentity, labelsHash, type Labels } from '../../src/identity/identity.js';
import { identityIndexKey, stateKey } from '../../src/controlplane/keys.js';
import { Rejections } from '../../src/controlplane/records/index.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { silentLogger } from '../../src/log.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';

const C = 'c1';
const ID = 3;

describe.skipIf(!hasCommand('etcd'))('identity allocation against a forged identity-index entry', () => {
  const etcd = loopbackEtcd('identity-index', 57000);
  afterAll(() => etcd.stop());

  /** The identity record at `id` as etcd holds it, parsed here (not by the codec under test). */
  async function recordOf(id: number): Promise<{ id: number; labels: Labels } | null> {
    const c = await etcd.client();
    const text = await c.get(stateKey('identities', C, String(id))).string();
    return text === null ? null : (JSON.parse(text) as { id: number; labels: Labels });
  }

  it('an honest allocation never takes the identity a forged entry names; each forgery counted once; honest entries reused', async () => {
    const c = await etcd.client();
    const lease = await c.lease(60, { autoKeepAlive: false }).grant();
    const rejections = new Rejections(silentLogger);
    const honest = new IdentityAllocator(c, C, ID, 'honest', 255, rejections);

    const privileged: Labels = { app: 'payments', 'io.kubernetes.pod.namespace': 'prod' };
    const privilegedId = await honest.allocate(privileged, lease);
    expect(await recordOf(privilegedId)).toEqual({ id: privilegedId, labels: privileged });
    expect(await honest.allocate(privileged, lease)).toBe(privilegedId); // an honest entry is taken

    const otherClusters = clusterIdentity(ID + 1, 300);
    const forgeries: Array<[string, string]> = [
      ['another workload\'s identity', String(privilegedId)],
      ['a number in range that has no record', String(clusterIdentity(ID, 4000))],
      ['another cluster\'s number', String(otherClusters)],
      ['a reserved number', '2'],
      ['not a number', 'x'.repeat(200)],
      ['a number with a leading zero', `0${privilegedId}`],
      ['an empty value', ''],
    ];
    let counted = 0;
    for (const [i, [what, forged]] of forgeries.entries()) {
      const labels: Labels = { app: `victim-${i}` };
      const indexKey = identityIndexKey(C, labelsHash(labels));
      await c.put(indexKey).value(forged); // the compromised node's write
      const id = await honest.allocate(labels, lease);
      expect(String(id), what).not.toBe(forged);
      expect(await recordOf(id), what).toEqual({ id, labels }); // the pod's identity carries its own labels
      expect(await c.get(indexKey).string(), what).toBe(String(id)); // the entry now names it
      expect(await honest.allocate(labels, lease), what).toBe(id); // and is taken from then on
      // counted as a refused claim, with the entry's key
      expect(rejections.total, what).toBe(++counted);
      expect(rejections.recent.at(-1)).toMatchObject({ type: 'identity-index', key: indexKey, reason: 'claim' });
    }
    // the privileged workload's record was never rewritten to other labels
    expect(await recordOf(privilegedId)).toEqual({ id: privilegedId, labels: privileged });

    // a record at the named number whose labels differ from its key's is refused too (a forged identity record of
    // the cluster: the codec's key check), and one whose labels are another set's
    const twisted: Labels = { app: 'twisted' };
    const twistedKey = identityIndexKey(C, labelsHash(twisted));
    const bogus = clusterIdentity(ID, 4001);
    await c.put(stateKey('identities', C, String(bogus))).value(JSON.stringify({ id: bogus + 1, labels: twisted }));
    await c.put(twistedKey).value(String(bogus));
    const twistedId = await honest.allocate(twisted, lease);
    expect(twistedId).not.toBe(bogus);
    expect(await recordOf(twistedId)).toEqual({ id: twistedId, labels: twisted });
    expect(rejections.total).toBe(counted + 1);
  }, 60_000);

  it('regression (s15): the collector deletes an index entry only while it names the identity it frees', async () => {
    // its own cluster: the identities the other cases left unreferenced are not this case's
    const [cluster, clusterId] = ['c9', 9];
    const c = await etcd.client();
    const lease = await c.lease(60, { autoKeepAlive: false }).grant();
    const honest = new IdentityAllocator(c, cluster, clusterId, 'honest', 255, new Rejections(silentLogger));
    const collector = new IdentityCollector(etcdCollectorStore(c), cluster, silentLogger);
    const indexOf = async (labels: Labels) => c.get(identityIndexKey(cluster, labelsHash(labels))).string();
    const recordAt = async (id: number) => c.get(stateKey('identities', cluster, String(id))).string();

    // the attack: a node of the cluster rewrites an honest entry; the next allocation makes a second identity of
    // the same labels, and the first one, now unused, is freed while the entry names the second
    const split: Labels = { app: 'split' };
    const first = await honest.allocate(split, lease);
    await honest.release(first);
    await c.put(identityIndexKey(cluster, labelsHash(split))).value('forged'); // the compromised node's write
    const second = await honest.allocate(split, lease);
    expect(second).not.toBe(first);
    // an honest identity freed the same way, whose entry still names it
    const plain: Labels = { app: 'plain' };
    const gone = await honest.allocate(plain, lease);
    await honest.release(gone);

    expect(await collector.sweep()).toBe(0); // candidates
    expect(await collector.sweep()).toBe(2); // first and gone
    expect(await recordAt(first)).toBeNull();
    expect(await recordAt(gone)).toBeNull();
    expect(await indexOf(plain)).toBeNull(); // it named the identity freed: deleted with it
    // before: deleted too, and the next allocation made a third identity of these labels
    expect(await indexOf(split)).toBe(String(second));
    expect(await honest.allocate(split, lease)).toBe(second);
    expect(JSON.parse((await recordAt(second))!)).toEqual({ id: second, labels: split });
  }, 60_000);

  it('labels no identity record may carry are refused before anything is written (not a new identity each time)', async () => {
    const c = await etcd.client();
    const lease = await c.lease(60, { autoKeepAlive: false }).grant();
    const rejections = new Rejections(silentLogger);
    const honest = new IdentityAllocator(c, C, ID, 'honest2', 255, rejections);
    const before = (await c.getAll().prefix('wiremesh/').keys()).length;
    // a key longer than any identity record takes (349 characters: a namespace label's 31 + 318); the agent's
    // label checks refuse such keys before they get here (label-keys.test), allocate refuses them on its own too
    const labels: Labels = { [`io.cilium.k8s.namespace.labels.${'a'.repeat(300)}.example/${'t'.repeat(9)}`]: 'x' };
    expect(Object.keys(labels)[0]!.length).toBe(349);
    for (let i = 0; i < 3; i++) await expect(honest.allocate(labels, lease)).rejects.toMatchObject({ code: 'WM_CONFIG_INVALID' });
    expect((await c.getAll().prefix('wiremesh/').keys()).length).toBe(before);
    expect(rejections.total).toBe(0); // the labels are the caller's, not a forged entry's
  }, 60_000);
});
