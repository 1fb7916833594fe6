// The KVStore contract: one list of cases run against the in-memory fake
// (src/controlplane/memkv.ts) and a real etcd on loopback, so what unit tests
// learn from the fake holds against etcd: revisions (one per write, create/mod
// revisions, versions), prefix lists, watches replayed from a revision in order,
// leases (expiry and revocation delete their keys, in one revision, seen by
// watches), compare-and-swap, and compaction refusing an old watch.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Etcd3, Lease } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connectEtcd, EtcdStore, type KV, type KVStore } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { startEtcd, type EtcdProcess } from '../../src/testbed/etcd.js';
import { hasCommand } from '../../src/testbed/netns.js';

interface Entry {
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
}

/** The write side of a store, as each backend spells it. */
interface Backend {
  store: KVStore;
  put(key: string, value: string, lease?: string): Promise<void>;
  get(key: string): Promise<Entry | undefined>;
  delete(key: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  /** Puts value only if the key's mod revision is still modRevision (0: the key must not exist). */
  cas(key: string, modRevision: number, value: string): Promise<boolean>;
  grant(ttlSeconds: number): Promise<string>;
  keepAlive(lease: string): Promise<void>;
  revoke(lease: string): Promise<void>;
  compact(revision: number): Promise<void>;
  /** Lets ms pass: real time for etcd, the fake's clock (and its lease expiry) for MemKV. */
  pass(ms: number): Promise<void>;
}

type Ev = ['put', string, string, number] | ['delete', string, number] | ['broken', string];

function collect(store: KVStore, prefix: string, from: number): Promise<{ events: Ev[]; cancel(): Promise<void> }> {
  const events: Ev[] = [];
  return store
    .watch(prefix, String(from), {
      put: (kv: KV, rev) => void events.push(['put', kv.key, kv.value, Number(rev)]),
      delete: (key, rev) => void events.push(['delete', key, Number(rev)]),
      broken: (err) => void events.push(['broken', err.message]),
    })
    .then((w) => ({ events, cancel: () => w.cancel() }));
}

const revisionOf = async (b: Backend, prefix: string) => Number((await b.store.list(prefix)).revision);
const soon = { timeout: 8000, interval: 25 };
// etcd raises a TTL below its minimum (1.5 x the election timeout: 2 s here) to it
const TTL = 2;
// etcd's refusal, as etcd3 reports it on a put or on a keep-alive
const LEASE_GONE = /requested lease not found|is expired or revoked/;

function contract(name: string, setup: () => Backend | Promise<Backend>, enabled = true): void {
  describe.skipIf(!enabled)(`KVStore contract: ${name}`, () => {
    let b: Backend;
    let n = 0;
    let p: string; // every case has a prefix of its own (one etcd serves them all)
    beforeAll(async () => void (b = await setup()), 60_000);
    const fresh = () => (p = `contract/${name}/${++n}/`);

    it('put, get and delete, with create/mod revisions and versions', async () => {
      fresh();
      await b.put(`${p}a`, '1');
      const first = (await b.get(`${p}a`))!;
      expect(first).toMatchObject({ value: '1', version: 1 });
      expect(first.modRevision).toBe(first.createRevision);
      expect(await revisionOf(b, p)).toBe(first.modRevision);
      await b.put(`${p}a`, '2');
      const second = (await b.get(`${p}a`))!;
      expect(second).toMatchObject({ value: '2', version: 2, createRevision: first.createRevision, modRevision: first.modRevision + 1 });
      await b.delete(`${p}a`);
      expect(await b.get(`${p}a`)).toBeUndefined();
      const after = await revisionOf(b, p);
      await b.delete(`${p}a`); // nothing to delete: no new revision
      expect(await revisionOf(b, p)).toBe(after);
      await b.put(`${p}a`, '3');
      expect(await b.get(`${p}a`)).toMatchObject({ version: 1, createRevision: after + 1 });
    });

    it('lists exactly the keys under a prefix, in key order, at the current revision', async () => {
      fresh();
      for (const k of ['b', 'a', 'c/d', 'c/e']) await b.put(`${p}${k}`, k);
      await b.put(`${p.slice(0, -1)}x`, 'sibling'); // shares the text but not the prefix
      const { revision, kvs } = await b.store.list(p);
      expect(kvs.map(({ key, value }) => ({ key, value }))).toEqual(['a', 'b', 'c/d', 'c/e'].map((k) => ({ key: `${p}${k}`, value: k })));
      expect(Number(revision)).toBe((await b.get(`${p.slice(0, -1)}x`))!.modRevision);
      // every listed key carries its create revision (ListWatcher tells a key's incarnations apart by it)
      for (const kv of kvs) expect(Number(kv.createRevision)).toBe((await b.get(kv.key))!.createRevision);
      expect((await b.store.list(`${p}c/`)).kvs.map((kv) => kv.key)).toEqual([`${p}c/d`, `${p}c/e`]);
      await b.deletePrefix(`${p}c/`);
      expect((await b.store.list(p)).kvs.map((kv) => kv.key)).toEqual([`${p}a`, `${p}b`]);
      expect((await b.store.list(`${p}none/`)).kvs).toEqual([]);
    });

    it('a key deleted and put again has a new create revision, in the list and on the watch', async () => {
      fresh();
      await b.put(`${p}k`, '1');
      await b.put(`${p}k`, '2');
      const first = (await b.store.list(p)).kvs[0]!.createRevision;
      const seen: Array<string | undefined> = [];
      const w = await b.store.watch(p, String((await revisionOf(b, p)) + 1), { put: (kv) => void seen.push(kv.createRevision), delete: () => undefined, broken: () => undefined });
      await b.delete(`${p}k`);
      await b.put(`${p}k`, '3');
      const again = (await b.store.list(p)).kvs[0]!.createRevision;
      expect(Number(again)).toBeGreaterThan(Number(first));
      await vi.waitFor(() => expect(seen).toEqual([again]), { timeout: 5000, interval: 10 });
      await w.cancel();
    });

    it('a watch replays from a revision, then follows, puts and deletes in order', async () => {
      fresh();
      await b.put(`${p}before`, 'x');
      const r0 = await revisionOf(b, p);
      await b.put(`${p}a`, '1');
      await b.put(`${p}b`, '1');
      await b.delete(`${p}a`);
      await b.put(`${p.slice(0, -1)}-other`, 'not watched');
      const w = await collect(b.store, p, r0 + 1);
      await b.put(`${p}a`, '2');
      await b.deletePrefix(p);
      const expected: Ev[] = [
        ['put', `${p}a`, '1', r0 + 1],
        ['put', `${p}b`, '1', r0 + 2],
        ['delete', `${p}a`, r0 + 3],
        ['put', `${p}a`, '2', r0 + 5],
        // one delete of a prefix: one revision for every key it removes
        ['delete', `${p}a`, r0 + 6],
        ['delete', `${p}b`, r0 + 6],
        ['delete', `${p}before`, r0 + 6],
      ];
      await vi.waitFor(() => expect(w.events.length).toBeGreaterThanOrEqual(expected.length), soon);
      expect(w.events).toEqual(expected);
      await w.cancel();
      await b.put(`${p}a`, 'after cancel');
      await new Promise((r) => setTimeout(r, 100));
      expect(w.events).toHaveLength(expected.length);
    });

    it('compare-and-swap on the mod revision: only the writer that saw the current revision wins', async () => {
      fresh();
      expect(await b.cas(`${p}k`, 0, 'created')).toBe(true);
      expect(await b.cas(`${p}k`, 0, 'again')).toBe(false); // exists now
      const seen = (await b.get(`${p}k`))!.modRevision;
      const rev = await revisionOf(b, p);
      expect(await b.cas(`${p}k`, seen - 1, 'stale')).toBe(false);
      expect(await revisionOf(b, p)).toBe(rev); // a failed compare writes nothing
      expect(await b.cas(`${p}k`, seen, 'swapped')).toBe(true);
      expect(await b.get(`${p}k`)).toMatchObject({ value: 'swapped', version: 2, modRevision: rev + 1 });
      expect(await b.cas(`${p}k`, seen, 'lost')).toBe(false);
    });

    it("a lease's expiry deletes its keys in one revision, seen by a watch; other keys stay", async () => {
      fresh();
      const lease = await b.grant(TTL);
      await b.put(`${p}leased/1`, 'a', lease);
      await b.put(`${p}leased/2`, 'b', lease);
      await b.put(`${p}moved`, 'c', lease);
      await b.put(`${p}moved`, 'c'); // a put without the lease detaches the key
      await b.put(`${p}plain`, 'd');
      const w = await collect(b.store, p, (await revisionOf(b, p)) + 1);
      await b.pass(TTL * 1000 + 500);
      await vi.waitFor(async () => expect((await b.store.list(p)).kvs.map((kv) => kv.key)).toEqual([`${p}moved`, `${p}plain`]), soon);
      await vi.waitFor(() => expect(w.events).toHaveLength(2), soon);
      const [d1, d2] = w.events as Array<['delete', string, number]>;
      expect([d1[0], d1[1], d2[0], d2[1]]).toEqual(['delete', `${p}leased/1`, 'delete', `${p}leased/2`]);
      expect(d1[2]).toBe(d2[2]);
      await w.cancel();
      await expect(b.put(`${p}late`, 'x', lease)).rejects.toThrow(LEASE_GONE);
    }, 20_000);

    it('keep-alive holds a lease past its TTL; revoke ends it at once', async () => {
      fresh();
      const lease = await b.grant(TTL);
      await b.put(`${p}k`, 'v', lease);
      for (let i = 0; i < 3; i++) {
        await b.pass(TTL * 500);
        await b.keepAlive(lease);
      }
      expect(await b.get(`${p}k`)).toMatchObject({ value: 'v' }); // 3 s on a 2 s lease
      await b.revoke(lease);
      expect(await b.get(`${p}k`)).toBeUndefined();
      await expect(b.keepAlive(lease)).rejects.toThrow(LEASE_GONE);
    }, 20_000);

    it('compaction: a watch from before it breaks at once (the caller relists); from its revision, it replays', async () => {
      fresh();
      await b.put(`${p}a`, '1');
      const r1 = (await b.get(`${p}a`))!.modRevision;
      await b.put(`${p}a`, '2');
      await b.compact(r1 + 1);
      const old = await collect(b.store, p, r1);
      await vi.waitFor(() => expect(old.events).toHaveLength(1), soon);
      expect(old.events[0]).toEqual(['broken', expect.stringMatching(/^Watcher canceled/)]);
      const w = await collect(b.store, p, r1 + 1);
      await vi.waitFor(() => expect(w.events).toEqual([['put', `${p}a`, '2', r1 + 1]]), soon);
      await w.cancel();
    });
  });
}

contract('MemKV', () => {
  let now = 0;
  const kv = new MemKV(() => now);
  return {
    store: kv,
    put: async (k, v, lease) => void (await kv.put(k, v, lease ? { lease } : {})),
    get: async (k) => kv.get(k),
    delete: async (k) => void (await kv.delete(k)),
    deletePrefix: async (prefix) => void (await kv.deletePrefix(prefix)),
    cas: async (k, rev, v) => (await kv.txn([{ key: k, target: 'mod', op: '==', value: rev }], [{ put: k, value: v }])).succeeded,
    grant: (ttl) => kv.grant(ttl),
    keepAlive: (l) => kv.keepAlive(l),
    revoke: (l) => kv.revoke(l),
    compact: async (rev) => kv.compact(rev),
    pass: async (ms) => void ((now += ms), kv.expire()),
  };
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

let etcd: EtcdProcess | undefined;
let client: Etcd3 | undefined;
let dir: string | undefined;
afterAll(async () => {
  client?.close();
  await etcd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

contract('etcd', async () => {
  dir = mkdtempSync(join(tmpdir(), 'wm-contract-'));
  etcd = await startEtcd({ name: 'contract', dataDir: join(dir, 'data'), host: '127.0.0.1', clientPort: await freePort(), peerPort: await freePort() });
  const c = (client = connectEtcd({ endpoints: [etcd.clientUrl] }));
  const leases = new Map<string, Lease>();
  return {
    store: new EtcdStore(c),
    put: async (k, v, lease) => void (await (lease ? c.put(k).value(v).lease(lease) : c.put(k).value(v)).exec()),
    get: async (k) => {
      const kv = (await c.get(k).exec()).kvs[0];
      return kv && { value: kv.value.toString(), createRevision: Number(kv.create_revision), modRevision: Number(kv.mod_revision), version: Number(kv.version) };
    },
    delete: async (k) => void (await c.delete().key(k).exec()),
    deletePrefix: async (prefix) => void (await c.delete().prefix(prefix).exec()),
    cas: async (k, rev, v) => (await c.if(k, 'Mod', '==', rev).then(c.put(k).value(v)).commit()).succeeded,
    grant: async (ttl) => {
      const l = c.lease(ttl, { autoKeepAlive: false });
      const id = await l.grant();
      leases.set(id, l);
      return id;
    },
    keepAlive: async (id) => void (await leases.get(id)!.keepaliveOnce()),
    revoke: (id) => leases.get(id)!.revoke(),
    compact: async (rev) => void (await c.kv.compact({ revision: String(rev), physical: true })),
    pass: (ms) => new Promise((r) => setTimeout(r, ms)),
  };
}, hasCommand('etcd'));
