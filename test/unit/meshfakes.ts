// In-memory stand-ins for kvstoremesh's local store (MeshLocal, MirrorTarget) on a MemKV, shared by its tests.
import { MemKV } from '../../src/controlplane/memkv.js';
import type { MeshLocal, MirrorTarget } from '../../src/controlplane/mirrorwriter.js';

/** The local MemKV as kvstoremesh's MirrorTarget. */
export function mirrorOf(kv: MemKV): MirrorTarget {
  return {
    keys: async (prefix) => kv.entries(prefix).map((e) => e.key),
    write: async (ops) => void (await kv.txn([], ops.map(([key, value]) => (value === null ? { delete: key } : { put: key, value })))),
    deletePrefix: async (prefix) => void (await kv.deletePrefix(prefix)),
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
      keys: async (prefix) => kv.entries(prefix).map((e) => e.key),
      deleteIfUnchanged: async (guard, rev, keys) =>
        (await kv.txn([{ key: guard, target: 'mod', op: '==', value: Number(rev) }], keys.map((k) => ({ delete: k })))).succeeded,
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

