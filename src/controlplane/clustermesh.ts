/**
 * Connecting clusters: `wiremesh clustermesh enable|connect|disconnect|status`
 * and the testbed use these functions.
 *
 * enable  writes wiremesh/cluster-config/<name> into the cluster's own etcd.
 * connect A B  pre-flight checks both clusters (reachable etcd, distinct names
 *              and IDs, non-overlapping pod CIDRs), then writes each one's
 *              remote entry into the other's etcd; their kvstoremesh picks it up.
 * disconnect   deletes the entries; kvstoremesh purges the cached state.
 */
import type { Etcd3 } from 'etcd3';
import { WiremeshError } from '../errors.js';
import { parsePrefix } from '../net/ip.js';
import { clusterConfigKey, remoteKey, remotesPrefix, remoteStatusPrefix, cachePrefix, statePrefix, syncedPrefix } from './keys.js';
import { connectEtcd, type EtcdOptions } from './kvstore.js';
import type { RemoteSpec } from './kvstoremesh.js';
import { prefixesOverlap, validateClusterId, validateClusterName, validatePrefixes, type ClusterConfig } from './types.js';

export interface ClusterAccess extends EtcdOptions {
  /** How other clusters' kvstoremesh reach this etcd (defaults to `endpoints`). */
  advertise?: EtcdOptions;
}

export class MeshError extends WiremeshError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

async function withEtcd<T>(access: EtcdOptions, fn: (c: Etcd3) => Promise<T>): Promise<T> {
  const c = connectEtcd({ ...access, dialTimeoutMs: access.dialTimeoutMs ?? 3000 });
  try {
    return await Promise.race([
      fn(c),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new MeshError('WM_ETCD_UNREACHABLE', `etcd at ${access.endpoints.join(', ')} did not answer within 5 s`)), 5000).unref(),
      ),
    ]);
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError('WM_ETCD_UNREACHABLE', `etcd at ${access.endpoints.join(', ')}: ${(err as Error).message}`);
  } finally {
    c.close();
  }
}

export async function enableCluster(access: EtcdOptions, cfg: ClusterConfig): Promise<void> {
  validateClusterName(cfg.name);
  validateClusterId(cfg.id);
  validatePrefixes(cfg.podCIDRs, 'podCIDRs');
  await withEtcd(access, async (c) => {
    const existing = await c.get(clusterConfigKey(cfg.name)).string();
    if (existing) {
      const old = JSON.parse(existing) as ClusterConfig;
      if (old.id !== cfg.id) throw new MeshError('WM_CLUSTER_ID_CHANGED', `cluster ${cfg.name} is already enabled with id ${old.id}, not ${cfg.id}`);
    }
    await c.put(clusterConfigKey(cfg.name)).value(JSON.stringify(cfg));
  });
}

export async function readClusterConfig(access: EtcdOptions): Promise<ClusterConfig> {
  return withEtcd(access, async (c) => {
    const all = await c.getAll().prefix('wiremesh/cluster-config/').strings();
    const values = Object.values(all);
    if (values.length !== 1)
      throw new MeshError('WM_CLUSTER_NOT_ENABLED', `etcd at ${access.endpoints.join(', ')} holds ${values.length} cluster configs; run \`wiremesh clustermesh enable\` first`);
    return JSON.parse(values[0]!) as ClusterConfig;
  });
}

/** Checks that two clusters can be connected; throws MeshError saying why not. */
export function preflight(a: ClusterConfig, b: ClusterConfig): void {
  if (a.name === b.name) throw new MeshError('WM_DUPLICATE_CLUSTER_NAME', `both clusters are named "${a.name}": cluster names must be unique in a mesh`);
  if (a.id === b.id) throw new MeshError('WM_DUPLICATE_CLUSTER_ID', `clusters ${a.name} and ${b.name} both have id ${a.id}: cluster IDs must be unique in a mesh`);
  for (const pa of a.podCIDRs)
    for (const pb of b.podCIDRs)
      if (prefixesOverlap(parsePrefix(pa), parsePrefix(pb)))
        throw new MeshError('WM_POD_CIDR_OVERLAP', `pod CIDR ${pa} of ${a.name} overlaps ${pb} of ${b.name}: pod CIDRs must not overlap`);
}

function remoteSpecFor(cfg: ClusterConfig, access: ClusterAccess): RemoteSpec {
  const adv = access.advertise ?? access;
  return { name: cfg.name, endpoints: adv.endpoints, caFile: adv.caFile, certFile: adv.certFile, keyFile: adv.keyFile, username: adv.username, password: adv.password };
}

export async function connectClusters(aAccess: ClusterAccess, bAccess: ClusterAccess): Promise<{ a: ClusterConfig; b: ClusterConfig }> {
  const [a, b] = await Promise.all([readClusterConfig(aAccess), readClusterConfig(bAccess)]);
  preflight(a, b);
  await withEtcd(aAccess, (c) => c.put(remoteKey(b.name)).value(JSON.stringify(remoteSpecFor(b, bAccess))).exec());
  await withEtcd(bAccess, (c) => c.put(remoteKey(a.name)).value(JSON.stringify(remoteSpecFor(a, aAccess))).exec());
  return { a, b };
}

export async function disconnectClusters(aAccess: EtcdOptions, bAccess: EtcdOptions): Promise<void> {
  const [a, b] = await Promise.all([readClusterConfig(aAccess), readClusterConfig(bAccess)]);
  await withEtcd(aAccess, (c) => c.delete().key(remoteKey(b.name)).exec());
  await withEtcd(bAccess, (c) => c.delete().key(remoteKey(a.name)).exec());
}

export interface MeshStatus {
  cluster: ClusterConfig;
  remotes: Array<{ name: string; status: Record<string, unknown> | null }>;
  nodes: { local: number; byRemote: Record<string, number> };
  synced: string[];
}

export async function meshStatus(access: EtcdOptions): Promise<MeshStatus> {
  const cluster = await readClusterConfig(access);
  return withEtcd(access, async (c) => {
    const remotes = Object.values(await c.getAll().prefix(remotesPrefix()).strings()).map((j) => JSON.parse(j) as RemoteSpec);
    const status = await c.getAll().prefix(remoteStatusPrefix()).strings();
    const localNodes = await c.getAll().prefix(statePrefix('nodes', cluster.name)).keys();
    const cached = await c.getAll().prefix(cachePrefix('nodes')).keys();
    const byRemote: Record<string, number> = {};
    for (const k of cached.map(String)) {
      const name = k.slice(cachePrefix('nodes').length).split('/')[0]!;
      byRemote[name] = (byRemote[name] ?? 0) + 1;
    }
    const synced = (await c.getAll().prefix(syncedPrefix()).keys()).map(String).map((k) => k.slice(syncedPrefix().length));
    return {
      cluster,
      remotes: remotes.map((r) => {
        const s = status[`${remoteStatusPrefix()}${r.name}`];
        return { name: r.name, status: s ? (JSON.parse(s) as Record<string, unknown>) : null };
      }),
      nodes: { local: localNodes.length, byRemote },
      synced,
    };
  });
}
