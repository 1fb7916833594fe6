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
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { WiremeshError } from '../errors.js';
import { parsePrefix } from '../net/ip.js';
import { clusterConfigKey, healthPrefix, remoteKey, remotesPrefix, remoteStatusPrefix, cachePrefix, statePrefix, syncedPrefix } from './keys.js';
import { connectEtcd, type EtcdOptions } from './kvstore.js';
import type { RemoteSpec } from './kvstoremesh.js';
import { issueRemoteReader } from './pki.js';
import { prefixesOverlap, validateClusterId, validateClusterName, validatePrefixes, type ClusterConfig } from './types.js';

export interface ClusterAccess extends EtcdOptions {
  /** How other clusters' kvstoremesh reach this etcd (defaults to `endpoints`). */
  advertise?: EtcdOptions;
  /** The cluster's PKI folder (pki.ts): its CA issues read-only certificates for remotes. */
  pkiDir?: string;
}

export const REMOTE_READER_ROLE = 'wiremesh-remote-reader';
const remoteUser = (reader: string) => `remote-${reader}`;

/** etcd answers "already exists" to a repeated create: that is fine here. */
async function idempotent(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!/already exists|already granted/i.test((err as Error).message)) throw err;
  }
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
    const msg = (err as Error).message;
    if (/certificate|SSL|TLS|handshake/i.test(msg))
      throw new MeshError('WM_ETCD_TLS', `TLS with etcd at ${access.endpoints.join(', ')} failed (${msg}): check that the CA (${access.caFile ?? 'inline'}) signed etcd's certificate and that the client certificate is from etcd's CA`);
    throw new MeshError('WM_ETCD_UNREACHABLE', `etcd at ${access.endpoints.join(', ')}: ${msg}`);
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
    const others = Object.values(await c.getAll().prefix('wiremesh/cluster-config/').strings()).map((j) => JSON.parse(j) as ClusterConfig).filter((o) => o.name !== cfg.name);
    if (others.length) throw new MeshError('WM_CLUSTER_MISMATCH', `this etcd already belongs to cluster ${others[0]!.name}`);
    await c.put(clusterConfigKey(cfg.name)).value(JSON.stringify(cfg));
    if (access.ca || access.caFile) {
      // RBAC: remote clusters get a role that reads wiremesh/state/ and nothing else.
      const reader = c.role(REMOTE_READER_ROLE);
      await idempotent(reader.create());
      await idempotent(reader.grant({ permission: 'Read', range: c.range({ prefix: 'wiremesh/state/' }) }));
      await idempotent(c.role('root').create());
      await idempotent(c.user('root').create(randomBytes(24).toString('base64')));
      await idempotent(c.user('root').addRole('root'));
      await c.auth.authEnable({});
    }
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

/**
 * How `reader`'s kvstoremesh reaches `cfg`'s etcd. With a PKI, the target
 * cluster's CA issues a CN=remote-<reader> certificate and an etcd user of that
 * name gets the read-only role; the credentials travel inline in the spec.
 */
async function remoteSpecFor(cfg: ClusterConfig, access: ClusterAccess, reader: string): Promise<RemoteSpec> {
  const adv = access.advertise ?? access;
  if (!access.pkiDir) return { name: cfg.name, endpoints: adv.endpoints, caFile: adv.caFile, certFile: adv.certFile, keyFile: adv.keyFile };
  const pem = issueRemoteReader(access.pkiDir, reader);
  await withEtcd(access, async (c) => {
    await idempotent(c.user(remoteUser(reader)).create(randomBytes(24).toString('base64')));
    await idempotent(c.user(remoteUser(reader)).addRole(REMOTE_READER_ROLE));
  });
  const spec: RemoteSpec = { name: cfg.name, endpoints: adv.endpoints, ...pem };
  // Pre-flight with the very credentials the remote will use: reading works, writing does not.
  await withEtcd(spec, async (c) => {
    await c.getAll().prefix(`wiremesh/state/nodes/v1/${cfg.name}/`).keys();
    const denied = await c.put('wiremesh/state/preflight').value('x').then(() => false, () => true);
    if (!denied) throw new MeshError('WM_RBAC', `the credentials issued for ${reader} can write to ${cfg.name}'s etcd: is auth enabled (clustermesh enable)?`);
  });
  return spec;
}

export async function connectClusters(aAccess: ClusterAccess, bAccess: ClusterAccess): Promise<{ a: ClusterConfig; b: ClusterConfig }> {
  const [a, b] = await Promise.all([readClusterConfig(aAccess), readClusterConfig(bAccess)]);
  preflight(a, b);
  const bForA = await remoteSpecFor(b, bAccess, a.name);
  const aForB = await remoteSpecFor(a, aAccess, b.name);
  await withEtcd(aAccess, (c) => c.put(remoteKey(b.name)).value(JSON.stringify(bForA)).exec());
  await withEtcd(bAccess, (c) => c.put(remoteKey(a.name)).value(JSON.stringify(aForB)).exec());
  return { a, b };
}

/** Removes both remote entries and, with PKIs, the read-only users (their certificates stop working). */
export async function disconnectClusters(aAccess: ClusterAccess, bAccess: ClusterAccess): Promise<void> {
  const [a, b] = await Promise.all([readClusterConfig(aAccess), readClusterConfig(bAccess)]);
  await withEtcd(aAccess, (c) => c.delete().key(remoteKey(b.name)).exec());
  await withEtcd(bAccess, (c) => c.delete().key(remoteKey(a.name)).exec());
  for (const [access, reader] of [[aAccess, b.name], [bAccess, a.name]] as const) {
    if (!access.pkiDir) continue;
    await withEtcd(access, (c) => c.user(remoteUser(reader)).delete().catch(() => undefined));
  }
}

interface NodeHealth {
  at: string;
  clusters: Record<string, { peers: number; live: number }>;
  /** Peers this node has been trying to reach for over 15 s without an answer. */
  unreachable?: Array<{ id: string; endpoint?: string; forS: number }>;
  peers: Array<{ id: string; cluster: string; handshakeAgeS: number | null; rxBytes: number; txBytes: number }>;
}

export interface MeshStatus {
  cluster: ClusterConfig;
  remotes: Array<{ name: string; status: Record<string, unknown> | null }>;
  nodes: { local: number; byRemote: Record<string, number> };
  synced: string[];
  /** Per local node: how many of the configured remote clusters it has a live tunnel into (handshake < 180 s). */
  connectivity: { configured: number; perNode: Record<string, number>; min: number; avg: number; max: number };
  globalServices: number;
  health: Record<string, NodeHealth>;
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
    const health: Record<string, NodeHealth> = {};
    for (const [k, v] of Object.entries(await c.getAll().prefix(healthPrefix(cluster.name)).strings())) health[k.slice(healthPrefix(cluster.name).length)] = JSON.parse(v) as NodeHealth;
    const perNode: Record<string, number> = {};
    for (const [node, h] of Object.entries(health)) {
      perNode[node] = remotes.filter((r) => (h.clusters?.[r.name]?.live ?? 0) > 0).length;
    }
    const counts = Object.values(perNode);
    let globalServices = 0;
    for (const prefix of [statePrefix('services', cluster.name), cachePrefix('services')])
      for (const v of Object.values(await c.getAll().prefix(prefix).strings())) {
        const m = JSON.parse(v) as { metadata?: { annotations?: Record<string, string> } };
        if (m.metadata?.annotations?.['service.cilium.io/global'] === 'true') globalServices++;
      }
    return {
      connectivity: {
        configured: remotes.length,
        perNode,
        min: counts.length ? Math.min(...counts) : 0,
        avg: counts.length ? counts.reduce((a, b) => a + b, 0) / counts.length : 0,
        max: counts.length ? Math.max(...counts) : 0,
      },
      globalServices,
      health,
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
