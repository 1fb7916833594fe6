// The identity collector's bound on one node's identity references (src/identity/refs.ts), against a real etcd, with
// the attacker a node of our own cluster that writes as many keys under its identity-refs prefix as it likes (RBAC
// grants it that prefix): some to identities others use, some to identities only it names, some not valid UTF-8.
// Oracle: the node counts for its first `max` keys in etcd's byte order and no more; every identity an honest node
// references survives, whatever the attacker wrote; what the sweep reads does not grow with the attacker's keys;
// the refusal is reported once (key, reason), not on every sweep.
import { afterAll, describe, expect, it } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { identityRefKey, identityRefsPrefix, stateKey } from '../../src/controlplane/keys.js';
import { Rejections } from '../../src/controlplane/records/index.js';
import { etcdCollectorStore, IdentityCollector, type CollectorStore } from '../../src/identity/allocator.js';
import { readRefs, REF_PAGE } from '../../src/identity/refs.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { silentLogger } from '../../src/log.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';

const MAX = 8;
const C = 'c1';

/** Puts `keys` (empty values) in transactions of 128. */
async function putAll(c: Etcd3, keys: Array<string | Buffer>): Promise<void> {
  for (let i = 0; i < keys.length; i += 128) await c.if('wiremesh/none', 'Create', '==', 0).then(...keys.slice(i, i + 128).map((k) => c.put(k).value(''))).commit();
}

/** The store, counting the keys its pages handed over. */
function counting(store: CollectorStore): CollectorStore & { read: number } {
  const s = { ...store, read: 0 };
  s.keys = async (prefix, from, limit) => {
    const keys = await store.keys(prefix, from, limit);
    s.read += keys.length;
    return keys;
  };
  return s;
}

describe.skipIf(!hasCommand('etcd'))('a node\'s identity references are bounded per node (docs/security.md, Bounds)', () => {
  const etcd = loopbackEtcd('idrefs', 49000);
  afterAll(() => etcd.stop());

  it('the attacker counts for its first max refs; honest nodes\' identities all survive; the cost does not grow with its keys', async () => {
    const c = await etcd.client();
    const ids = Array.from({ length: 40 }, (_, i) => 1000 + i);
    for (const id of ids) await c.put(stateKey('identities', C, String(id))).value(JSON.stringify({ id, labels: { app: `a${id}` } }));
    // honest nodes on both sides of "evil" in key order ("evil-a/" < "evil/" < "evil0/"): the skip past evil's keys
    // must skip neither; each at exactly the bound
    const honest = { 'evil-a': ids.slice(0, MAX), evil0: ids.slice(8, 8 + MAX) };
    for (const [node, mine] of Object.entries(honest)) await putAll(c, mine.map((id) => identityRefKey(C, id, node)));
    // the attacker: every identity (its first MAX keys in byte order: 1000..1007, which honest nodes use anyway),
    // then 1016..1039 that only it names, then keys that are not valid UTF-8
    const evil = ids.map((id) => identityRefKey(C, id, 'evil'));
    const binary = Array.from({ length: 300 }, (_, i) => Buffer.concat([Buffer.from(identityRefsPrefix(C, 'evil')), Buffer.from([0xff, i >> 8, i & 0xff])]));
    await putAll(c, [...evil, ...binary]);

    const rejections = new Rejections(silentLogger);
    const store = counting(etcdCollectorStore(c));
    const collector = new IdentityCollector(store, C, silentLogger, rejections, undefined, MAX);
    expect(await collector.sweep()).toBe(0); // candidates
    expect(await collector.sweep()).toBe(24); // 1016..1039: named only by evil's refused refs
    const left = (await c.getAll().prefix(stateKey('identities', C, '')).keys()).map((k) => Number(k.slice(k.lastIndexOf('/') + 1))).sort();
    expect(left).toEqual(ids.slice(0, 16)); // every identity an honest node references
    // the refusal: once, naming the first key past the bound (evil's 9th in byte order)
    const sorted = evil.slice().sort();
    expect(rejections.recent.map((e) => [e.origin, e.type, e.reason, e.key])).toEqual([[C, 'identity-ref', 'budget', sorted[MAX]]]);
    expect(rejections.recent[0]!.detail).toContain(`node evil references more than ${MAX} identities`);

    // 30 000 more keys of the attacker, twice: a sweep reads one page past its bound, however many it wrote
    const more = (n: number) => Array.from({ length: 30_000 }, (_, i) => `${identityRefsPrefix(C, 'evil')}${n}${String(i).padStart(8, '0')}`);
    const reads: number[] = [];
    for (const n of [8, 9]) {
      await putAll(c, more(n));
      store.read = 0;
      await collector.sweep();
      reads.push(store.read);
    }
    expect(reads[0]).toBeLessThanOrEqual(2 * MAX + REF_PAGE); // the honest refs and a page of evil's at most
    expect(reads[1]).toBe(reads[0]);
    expect(rejections.total).toBe(1); // not counted again while the node stays over
    // regression (review of s14gaps): one key before its boundary written before each sweep changes which key is
    // the first refused; the node is still counted once while it stays over (main of the branch: 2, 3, 4)
    for (const i of [1, 2, 3]) {
      await c.put(`${identityRefsPrefix(C, 'evil')}0${i}`).value('');
      await collector.sweep();
    }
    expect(rejections.total).toBe(1);
  }, 120_000);

  it('pages past keys that are not valid UTF-8 (a page may end on one): every key read once, the read ends', async () => {
    const c = await etcd.client();
    const node = identityRefsPrefix('c2', 'bin');
    await putAll(c, Array.from({ length: 2 * REF_PAGE + 5 }, (_, i) => Buffer.concat([Buffer.from(node), Buffer.from([0xc3, 0xff, i >> 8, i & 0xff])])));
    const store = counting(etcdCollectorStore(c));
    const { referenced, over } = await readRefs(store.keys, 'c2', new Set(), 10 * REF_PAGE);
    expect([store.read, referenced.size, over.size]).toEqual([2 * REF_PAGE + 5, 0, 0]);
  });

  it('a store that ignores the range asked fails the read instead of paging forever', async () => {
    const all = Array.from({ length: REF_PAGE }, (_, i) => `${identityRefsPrefix(C, 'n1')}${1000 + i}`);
    await expect(readRefs(async () => all, C, new Set(), 10 * REF_PAGE)).rejects.toThrow(/out of order/);
  });
});
