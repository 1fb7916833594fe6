/**
 * `wiremesh apply -f FILE --cluster NAME`: validates every manifest in FILE
 * (nothing is stored if one is invalid) and stores them in that cluster's etcd
 * under wiremesh/state/{services,policies}/v1/<cluster>/...
 */
import { readFileSync } from 'node:fs';
import { ConfigError, MeshError } from '../errors.js';
import { stateKey, vipKey, vipPrefix } from '../controlplane/keys.js';
import type { Etcd3 } from 'etcd3';
import { formatIP, parseCanonicalIP, parsePrefix, prefixContains } from '../net/ip.js';
import { connectEtcd, type EtcdOptions } from '../controlplane/kvstore.js';
import { serviceCIDR } from '../controlplane/servicecidr.js';
import { manifestName, parseManifests, type Manifest } from './validate.js';
import { clusterConfigOf } from './store.js';

export function loadManifests(files: string[]): Manifest[] {
  return files.flatMap((f) => {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (err) {
      throw new ConfigError(f, `cannot read: ${(err as Error).message}`);
    }
    return parseManifests(text, f);
  });
}

export async function applyManifests(access: EtcdOptions, cluster: string, manifests: Manifest[]): Promise<string[]> {
  const cfg = await clusterConfigOf(access, cluster);
  const c = connectEtcd(access);
  try {
    for (let attempt = 0; ; attempt++) {
      const claims = await allocateVips(c, cluster, serviceCIDR(cfg), manifests);
      let txn = c.if(stateKey('nodes', cluster, '__none__'), 'Version', '==', 0);
      // a VIP claimed by someone else since we listed the claims fails the transaction
      for (const cl of claims.fresh) txn = txn.and(vipKey(cluster, cl.ip), 'Version', '==', 0);
      // and a VIP kept must still be its service's: a `wiremesh delete` of the service in between
      // freed it, and writing the service without its claim would let the next apply hand it out again
      for (const cl of claims.kept) txn = txn.and(vipKey(cluster, cl.ip), 'Value', '==', cl.owner);
      const keys = manifests.map((m) => {
        const { type, name } = manifestName(m);
        return { key: stateKey(type, cluster, name), value: JSON.stringify(m) };
      });
      // one transaction: all manifests (and their VIP claims) land together or none does
      const ops = [
        ...keys.map((k) => c.put(k.key).value(k.value)),
        ...claims.fresh.map((cl) => c.put(vipKey(cluster, cl.ip)).value(cl.owner)),
        ...claims.released.map((ip) => c.delete().key(vipKey(cluster, ip))),
      ];
      const res = await txn.then(...ops).commit();
      if (res.succeeded) break;
      if (attempt >= 4) throw new MeshError('WM_VIP_RACE', 'service VIPs kept changing under us (concurrent applies); try again');
    }
    return manifests.map((m) => `${m.kind.toLowerCase()}/${m.metadata.namespace ? `${m.metadata.namespace}/` : ''}${m.metadata.name}`);
  } finally {
    c.close();
  }
}

/**
 * What the cluster's agents will warn about the policies just applied (a
 * named port no pod declares, a namespace nobody knows, a field not
 * enforced): the agents' own compiler over the cluster's etcd as it is now.
 * Lines of other policies are left out.
 */
export async function appliedPolicyWarnings(access: EtcdOptions, cluster: string, manifests: Manifest[]): Promise<string[]> {
  const { loadMeshState, clusterRules } = await import('../policy/trace.js');
  const names = manifests.filter((m) => manifestName(m).type === 'policies').map((m) => `${cluster}/${manifestName(m).name}`);
  if (names.length === 0) return [];
  const c = connectEtcd(access);
  try {
    const st = await loadMeshState(c);
    const warnings: string[] = [];
    clusterRules(st, cluster, true, warnings, st.acceptsPoliciesOf);
    return [...new Set(warnings)].filter((w) => names.some((n) => w.startsWith(`${n}:`)));
  } finally {
    c.close();
  }
}


/**
 * Gives every Service a cluster IP (spec.clusterIP, in place): an explicit
 * one must be free or already its own; without one a service keeps the VIP it
 * had, else takes the lowest free address of the range. Returns the claims to
 * create, the claims kept (still to be held when the transaction commits) and
 * the VIPs given up (a service moved to another explicit VIP).
 */
async function allocateVips(c: Etcd3, cluster: string, cidr: string, manifests: Manifest[]): Promise<{ fresh: Array<{ ip: string; owner: string }>; kept: Array<{ ip: string; owner: string }>; released: string[] }> {
  const claimed = new Map<string, string>(); // ip -> owner
  const owned = new Map<string, string>(); // owner -> ip
  for (const [k, v] of Object.entries(await c.getAll().prefix(vipPrefix(cluster)).strings())) {
    const ip = k.slice(vipPrefix(cluster).length);
    claimed.set(ip, v);
    owned.set(v, ip);
  }
  const range = parsePrefix(cidr, 'serviceCIDR');
  const size = 2 ** (32 - range.cidr);
  const base = range.addr.readUInt32BE(0);
  const fresh: Array<{ ip: string; owner: string }> = [];
  const kept: Array<{ ip: string; owner: string }> = [];
  const released: string[] = [];
  for (const m of manifests) {
    if (m.kind !== 'Service') continue;
    const spec = (m.spec ??= {}) as { clusterIP?: string };
    const owner = `${m.metadata.namespace}/${m.metadata.name}`;
    if (spec.clusterIP === 'None') continue;
    const had = owned.get(owner);
    // a VIP kept only while the range still holds it (enable may have moved the range since it was claimed)
    const hadInRange = had !== undefined && (() => { const a = parseCanonicalIP(had); return a !== null && prefixContains(range, a); })();
    let ip = spec.clusterIP || (hadInRange ? had : undefined);
    if (spec.clusterIP) {
      // as Kubernetes does: an explicit VIP comes from the service range too, else it could be any pod's or
      // node's address (the load balancer answers a VIP before routing), enable's and connect's checks bypassed
      // one address in the spelling its claim is keyed by (validate checks it too: manifests from the store also come here)
      const vip = parseCanonicalIP(spec.clusterIP);
      if (!vip) throw new ConfigError(`${owner}: spec.clusterIP`, `${spec.clusterIP} is not one IP address in canonical form`);
      if (!prefixContains(range, vip))
        throw new ConfigError(`${owner}: spec.clusterIP`, `${spec.clusterIP} is outside the service CIDR ${cidr} of cluster ${cluster}: VIPs come from it only`);
      const holder = claimed.get(spec.clusterIP);
      if (holder && holder !== owner) throw new ConfigError(`${owner}: spec.clusterIP`, `${spec.clusterIP} is already the VIP of ${holder} in cluster ${cluster}`);
    }
    if (!ip) {
      for (let i = 1; i < size - 1 && !ip; i++) {
        const cand = formatIP(Buffer.from([(base + i) >>> 24, ((base + i) >>> 16) & 255, ((base + i) >>> 8) & 255, (base + i) & 255]));
        if (!claimed.has(cand)) ip = cand;
      }
      if (!ip) throw new ConfigError(`${owner}: spec.clusterIP`, `no free VIP left in ${cidr}`);
    }
    spec.clusterIP = ip;
    if (had && had !== ip) {
      released.push(had);
      claimed.delete(had);
    }
    if (claimed.get(ip) !== owner) {
      fresh.push({ ip, owner });
      claimed.set(ip, owner);
      owned.set(owner, ip);
    } else kept.push({ ip, owner });
  }
  return { fresh, kept, released };
}
