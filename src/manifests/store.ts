/**
 * The stored objects of one cluster, read and deleted as `wiremesh get` and
 * `wiremesh delete` do: keys from the same mapping apply writes
 * (validate.ts manifestName), values decoded through the record codecs
 * (records/manifest.ts), never trusted as they lie in etcd.
 *
 * Bounds: a listing reads one state type of one cluster (etcd pages it); a
 * record over the codec's size limit is refused unparsed and reported.
 */
import type { Etcd3 } from 'etcd3';
import { readClusterConfig } from '../controlplane/clustermesh.js';
import { connectEtcd, type EtcdOptions } from '../controlplane/kvstore.js';
import { stateKey, statePrefix, vipPrefix, type StateType } from '../controlplane/keys.js';
import { manifestCodecs, tryDecode, type ClusterConfig, type Codec, type RecordError } from '../controlplane/records/index.js';
import { MeshError } from '../errors.js';
import { describeRef, isClusterScoped, storeName, type ObjectRef } from './kinds.js';
import type { Manifest } from './validate.js';

/** The cluster's config, after checking that the etcd at `access` is the cluster's (WM_WRONG_CLUSTER otherwise). */
export async function clusterConfigOf(access: EtcdOptions, cluster: string): Promise<ClusterConfig> {
  const cfg = await readClusterConfig(access);
  if (cfg.name !== cluster) throw new MeshError('WM_WRONG_CLUSTER', `--cluster ${cluster}, but the etcd at ${access.endpoints.join(', ')} belongs to cluster ${cfg.name}`);
  return cfg;
}

async function withCluster<T>(access: EtcdOptions, cluster: string, fn: (c: Etcd3) => Promise<T>): Promise<T> {
  await clusterConfigOf(access, cluster);
  const c = connectEtcd(access);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

function codecFor(type: StateType): Codec<Manifest> {
  const codec = manifestCodecs[type];
  if (!codec) throw new MeshError('WM_NO_CODEC', `no record codec for stored ${type}`);
  return codec;
}

/** A decoded object with the etcd revision that last changed it. */
export interface StoredObject {
  manifest: Manifest;
  key: string;
  revision: number;
}

export interface Listing {
  items: StoredObject[];
  /** Records under the listed keys that did not decode (they are left out of items, never guessed at). */
  rejected: RecordError[];
}

/**
 * Objects of `kind` in `cluster`: one (name given: NotFound is the caller's
 * to say, items is empty), those of one namespace, or all (namespace
 * undefined). Sorted by namespace, then name.
 */
export async function getObjects(access: EtcdOptions, cluster: string, kind: string, sel: { name?: string; namespace?: string }): Promise<Listing> {
  return withCluster(access, cluster, async (c) => {
    const out: Listing = { items: [], rejected: [] };
    const { type } = storeName({ kind, name: 'x', ...(isClusterScoped(kind) ? {} : { namespace: 'x' }) });
    const codec = codecFor(type);
    const kvs = sel.name
      ? (await c.get(stateKey(type, cluster, storeName({ kind, name: sel.name, ...(isClusterScoped(kind) ? {} : { namespace: sel.namespace ?? 'default' }) }).name)).exec()).kvs
      : (await c.getAll().prefix(statePrefix(type, cluster)).exec()).kvs;
    for (const kv of kvs) {
      const key = kv.key.toString();
      const r = tryDecode(codec, key, kv.value.toString());
      if (!r.ok) {
        out.rejected.push(r.error);
        continue;
      }
      const m = r.value;
      if (m.kind !== kind) continue;
      if (!isClusterScoped(kind) && sel.namespace !== undefined && m.metadata.namespace !== sel.namespace) continue;
      out.items.push({ manifest: m, key, revision: Number(kv.mod_revision) });
    }
    out.items.sort((a, b) => (a.manifest.metadata.namespace ?? '').localeCompare(b.manifest.metadata.namespace ?? '') || a.manifest.metadata.name.localeCompare(b.manifest.metadata.name));
    return out;
  });
}

export interface DeleteResult {
  ref: ObjectRef;
  /** `kind/ns/name` as apply and delete print it. */
  what: string;
  deleted: boolean;
}

/**
 * Deletes the objects `refs` name from `cluster` in one transaction (all that
 * exist, or none if etcd changed under us five times running), with the VIP
 * claims of deleted Services, so their addresses can be allocated again.
 * A missing object is reported (deleted: false), not an error: the caller
 * decides (kubectl: NotFound unless --ignore-not-found).
 */
export async function deleteObjects(access: EtcdOptions, cluster: string, refs: ObjectRef[]): Promise<DeleteResult[]> {
  return withCluster(access, cluster, async (c) => {
    for (let attempt = 0; ; attempt++) {
      const keyed = refs.map((ref) => {
        const { type, name } = storeName(ref);
        return { ref, key: stateKey(type, cluster, name) };
      });
      const present = new Map<string, string>(); // key -> mod revision
      for (const { key } of keyed) {
        const kv = (await c.get(key).exec()).kvs[0];
        if (kv) present.set(key, kv.mod_revision);
      }
      // a Service's VIP claim holds "<namespace>/<name>" (apply.ts allocateVips)
      const owners = new Set(keyed.filter((k) => k.ref.kind === 'Service' && present.has(k.key)).map((k) => `${k.ref.namespace}/${k.ref.name}`));
      const claims = owners.size ? Object.entries(await c.getAll().prefix(vipPrefix(cluster)).strings()).filter(([, owner]) => owners.has(owner)) : [];
      let txn = c.if(stateKey('nodes', cluster, '__none__'), 'Version', '==', 0);
      for (const [key, rev] of present) txn = txn.and(key, 'Mod', '==', rev);
      for (const [key, owner] of claims) txn = txn.and(key, 'Value', '==', owner);
      const ops = [...[...present.keys()].map((key) => c.delete().key(key)), ...claims.map(([key]) => c.delete().key(key))];
      if (ops.length === 0 || (await txn.then(...ops).commit()).succeeded) {
        const seen = new Set<string>();
        return keyed.map(({ ref, key }) => {
          const first = !seen.has(key); // the same object twice in the input: deleted once
          seen.add(key);
          return { ref, what: describeRef(ref), deleted: first && present.has(key) };
        });
      }
      if (attempt >= 4) throw new MeshError('WM_DELETE_RACE', 'the objects kept changing under us (concurrent applies); try again');
    }
  });
}
