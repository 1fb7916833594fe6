// In-memory stand-ins for kvstoremesh's local store (MeshLocal, MirrorTarget) on a MemKV, shared by its tests.
import { MemKV } from '../../src/controlplane/memkv.js';
import { cachePrefix, clusterConfigKey, pinnedKey, remoteStatusKey, stateKey, syncedPrefix } from '../../src/controlplane/keys.js';
import { REPLICATED_TYPES } from '../../src/controlplane/kvstoremesh.js';
import type { MeshLocal, MirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { FencedError } from '../../src/controlplane/fence.js';
import { remoteStatusCodec, tryDecode, type PinnedCluster } from '../../src/controlplane/records/index.js';
import { Trust } from '../../src/controlplane/records/trust.js';

/** The local MemKV as kvstoremesh's MirrorTarget. */
export function mirrorOf(kv: MemKV): MirrorTarget {
  return {
    keys: async (prefix) => kv.entries(prefix).map((e) => e.key),
    entries: async (prefix, page) => page(kv.entries(prefix).map(({ key, value }) => ({ key, value }))),
    write: async (ops, fences = []) => {
      const compares = fences.map((f) => ({ key: f.key, target: 'mod' as const, op: '==' as const, value: Number(f.revision) }));
      const { succeeded } = await kv.txn(compares, ops.map(([key, value]) => (value === null ? { delete: key } : { put: key, value })));
      if (!succeeded) throw new FencedError(fences); // as etcdMirrorTarget (etcdtxn.ts)
    },
    deletePrefix: async (prefix) => void (await kv.deletePrefix(prefix)),
    revision: async (key) => String(kv.get(key)?.modRevision ?? 0),
  };
}

/**
 * A MemKV as all of KVStoreMesh's local store; the lease is renewed by every put under it, until released.
 * lose() ends the current lease as etcd would (its keys go) and tells its owner.
 */
export function meshLocalOf(kv: MemKV): MeshLocal & { released: () => boolean; lose: () => Promise<void>; leases: () => number } {
  let released = false;
  let current: { id: Promise<string>; lost: Array<(err: Error) => void> } | undefined;
  let leases = 0;
  return {
    store: kv,
    mirror: mirrorOf(kv),
    identities: {
      list: async (prefix) => kv.entries(prefix).map((e) => ({ key: e.key, value: e.value, modRevision: String(e.modRevision) })),
      // a page as etcd's (refs.ts KeyPage; the keys here are ASCII, so their byte strings are themselves)
      keys: async (prefix, from, limit) => kv.entries(prefix).flatMap((e) => (e.key >= from ? [e.key] : [])).slice(0, limit),
      // two MemKV transactions where etcd nests one (nothing runs between them here)
      release: async (guard, rev, index) => {
        if (!(await kv.txn([{ key: guard, target: 'mod', op: '==', value: Number(rev) }], [{ delete: guard }])).succeeded) return false;
        await kv.txn([{ key: index.key, target: 'value', op: '==', value: index.value }], [{ delete: index.key }]);
        return true;
      },
    },
    lease: (ttl) => {
      const id = kv.grant(ttl);
      const l: { id: Promise<string>; lost: Array<(err: Error) => void> } = (current = { id, lost: [] });
      leases++;
      return {
        onLost: (fn) => void l.lost.push(fn),
        put: async (key, value) => {
          if (!released) await kv.keepAlive(await id);
          await kv.put(key, value, { lease: await id });
        },
        release: () => void (released = true),
      };
    },
    released: () => released,
    leases: () => leases,
    lose: async () => {
      const l = current!;
      await kv.revoke(await l.id);
      for (const fn of l.lost) fn(new Error('lease lost'));
    },
  };
}

// Fixtures of the kvstoremesh tests: records of clusters c<id>, the local cluster c1.
const KEY = Buffer.alloc(32, 7).toString('base64');
export const node = (cluster: string, id: number, name: string) =>
  JSON.stringify({ cluster, clusterId: id, name, addresses: [`198.18.${id}.10`], port: 51820, publicKey: KEY, podCIDRs: [`100.${64 + id}.1.0/24`], bootId: '1' });
export const spec = (name: string) => JSON.stringify({ name, endpoints: ['http://198.18.0.2:2379'] });
export const pin = (name: string, id: number) => JSON.stringify({ name, id, podCIDRs: [`100.${64 + id}.0.0/16`], underlayCIDRs: [`198.18.${id}.0/24`], relay: false, acceptPolicies: false });
export const soon = { timeout: 5000, interval: 10 };
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Everything the local etcd holds of a remote: its cache, markers and status. */
export const heldOf = (local: MemKV, remote: string) =>
  [...REPLICATED_TYPES.flatMap((t) => local.entries(cachePrefix(t, remote))), ...local.entries(`${syncedPrefix()}${remote}/`), ...(local.get(remoteStatusKey(remote)) ? [remoteStatusKey(remote)] : [])];

export const statusOf = (local: MemKV, remote: string) => {
  const e = local.get(remoteStatusKey(remote));
  const r = e ? tryDecode(remoteStatusCodec, e.key, e.value) : undefined;
  return r?.ok ? r.value : undefined;
};

export async function cluster() {
  const local = new MemKV();
  await local.put(clusterConfigKey('c1'), JSON.stringify({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'] }));
  return local;
}

/** Cluster c1 with remotes c2 and c3 pinned (not yet connected), each remote's etcd holding one node n1. */
export async function pinnedPair(): Promise<{ local: MemKV; remotes: Record<string, MemKV> }> {
  const local = await cluster();
  const remotes: Record<string, MemKV> = { c2: new MemKV(), c3: new MemKV() };
  await remotes.c2!.put(stateKey('nodes', 'c2', 'n1'), node('c2', 2, 'n1'));
  await remotes.c3!.put(stateKey('nodes', 'c3', 'n1'), node('c3', 3, 'n1'));
  await local.put(pinnedKey('c2'), pin('c2', 2));
  await local.put(pinnedKey('c3'), pin('c3', 3));
  return { local, remotes };
}

/** c1's trust with c2 pinned (100.66.0.0/16, underlay 198.18.2.0/24), and c2's pin: a RemoteReplication's inputs. */
export function c2Pinned(): { pinned: PinnedCluster; trust: Trust } {
  const pinned: PinnedCluster = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin(pinned);
  return { pinned, trust };
}
