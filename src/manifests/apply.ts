/**
 * `wiremesh apply -f FILE --cluster NAME`: validates every manifest in FILE
 * (nothing is stored if one is invalid) and stores them in that cluster's etcd
 * under wiremesh/state/{services,policies}/v1/<cluster>/...
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { stateKey, vipKey } from '../controlplane/keys.js';
import type { Etcd3, ICompare } from 'etcd3';
import { formatIP, parseCanonicalIP, parsePrefix, prefixContains } from '../net/ip.js';
import { connectEtcd, type EtcdOptions } from '../controlplane/kvstore.js';
import { claimedAddress } from '../controlplane/servicecidr.js';
import { raceLost, readClaims, storedRange, RACE_ATTEMPTS, type RaceHooks } from '../controlplane/vipclaims.js';
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

/**
 * Stores `manifests` in `cluster`'s etcd in one transaction, Services with their VIP claims (allocateVips). The
 * transaction holds only while the claims and the cluster-config it allocated from are as read (vipclaims.ts: an
 * `enable` moving the service range in between fails it); a lost one is read and allocated again from what each
 * Service asked for, at most RACE_ATTEMPTS times (then MeshError WM_VIP_RACE). `hooks`: tests only. Returns
 * "kind/ns/name" per manifest.
 */
export async function applyManifests(access: EtcdOptions, cluster: string, manifests: Manifest[], hooks?: RaceHooks): Promise<string[]> {
  await clusterConfigOf(access, cluster);
  // one definition per object: two would be two writes of one key in the transaction, which etcd refuses as a whole
  // (a raw "duplicate key" gRPC error), and which of them the user meant is not ours to guess
  const keys = new Set<string>();
  for (const m of manifests) {
    const { type, name } = manifestName(m);
    if (keys.has(`${type}/${name}`)) throw new ConfigError(`${m.kind} ${name}`, 'defined twice in the input: one definition per object');
    keys.add(`${type}/${name}`);
  }
  // what each Service asked for: a lost attempt's pick is no request (it may be claimed by the winner, or outside
  // the range that won), so every attempt allocates from these
  const asked = new Map(manifests.filter((m) => m.kind === 'Service').map((m) => [m, (m.spec as { clusterIP?: string } | undefined)?.clusterIP]));
  const c = connectEtcd(access);
  try {
    for (let attempt = 0; ; attempt++) {
      const range = await storedRange(c, cluster);
      const claims = await allocateVips(c, cluster, range.cidr, asked);
      const vip = (ip: string) => Buffer.from(vipKey(cluster, ip));
      const compare: ICompare[] = [
        range.unchanged,
        // a VIP claimed by someone else since we listed the claims fails the transaction
        // (a claim another Service of this apply gives up must still be that one's)
        ...claims.fresh.map((cl): ICompare => (cl.from === undefined ? { key: vip(cl.ip), target: 'Version', result: 'Equal', version: 0 } : { key: vip(cl.ip), target: 'Value', result: 'Equal', value: Buffer.from(cl.from) })),
        // and a VIP kept must still be its service's: a `wiremesh delete` of the service in between
        // freed it, and writing the service without its claim would let the next apply hand it out again
        ...claims.kept.map((cl): ICompare => ({ key: vip(cl.ip), target: 'Value', result: 'Equal', value: Buffer.from(cl.owner) })),
        // and a VIP given up is deleted only while it is still the giver's: deleted and claimed by another Service in
        // between, deleting it would free that one's VIP for a third (two Services on one VIP)
        ...claims.released.map((cl): ICompare => ({ key: vip(cl.ip), target: 'Value', result: 'Equal', value: Buffer.from(cl.owner) })),
      ];
      const put = (key: Buffer, value: string) => ({ request_put: { key, value: Buffer.from(value) } });
      // one transaction: all manifests (and their VIP claims) land together or none does
      const success = [
        ...manifests.map((m) => { const { type, name } = manifestName(m); return put(Buffer.from(stateKey(type, cluster, name)), JSON.stringify(m)); }),
        ...claims.fresh.map((cl) => put(vip(cl.ip), cl.owner)),
        ...claims.released.map((cl) => ({ request_delete_range: { key: vip(cl.ip) } })),
      ];
      await hooks?.beforeCommit?.(attempt);
      if ((await c.kv.txn({ compare, success, failure: [] })).succeeded) break;
      if (attempt + 1 >= RACE_ATTEMPTS) throw raceLost('the service VIPs or the service range (concurrent applies or enables)');
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


/** A VIP claimed by this apply: `from` names the Service of this apply that gave it up (the claim is handed over). */
interface Claim {
  ip: string;
  owner: string;
  from?: string;
}

/**
 * Gives every Service of `asked` (each with the spec.clusterIP it asked for) a
 * cluster IP (spec.clusterIP, in place): an explicit one must be free or already
 * its own, or given up by another Service of this apply; without one a service
 * keeps the VIP it had, else takes the lowest free address of the range. Services
 * asking for an explicit VIP are served first (whatever the input's order), after
 * every one of them moving to another has given up its old one. Returns the claims
 * to create (handed over or new), the claims kept (still to be held when the
 * transaction commits) and the VIPs given up and taken by nobody (each with the owner it was read with). A
 * Service going headless (clusterIP None) gives its VIP up; an explicit VIP is never the range's network or
 * broadcast address (automatic allocation skips both too, as Kubernetes refuses them).
 */
async function allocateVips(c: Etcd3, cluster: string, cidr: string, asked: Map<Manifest, string | undefined>): Promise<{ fresh: Claim[]; kept: Claim[]; released: Claim[] }> {
  const claimed = new Map<string, string>(); // ip -> owner
  const owned = new Map<string, string>(); // owner -> ip
  // a claim stored before canonical spec.clusterIP ("100.80.0.9/32") still holds its address: handed to no other
  const shadowed = new Map<string, string>(); // ip -> owner
  for (const [ip, v] of Object.entries((await readClaims(c, cluster)).owners)) {
    claimed.set(ip, v);
    owned.set(v, ip);
    const a = claimedAddress(ip);
    if (a && formatIP(a) !== ip) shadowed.set(formatIP(a), v);
  }
  const stored = new Map(claimed);
  const range = parsePrefix(cidr, 'serviceCIDR');
  const size = 2 ** (32 - range.cidr);
  const base = range.addr.readUInt32BE(0);
  const fresh: Claim[] = [];
  const kept: Claim[] = [];
  const released = new Set<string>();
  const ownerOf = (m: Manifest) => `${m.metadata.namespace}/${m.metadata.name}`;
  const explicit = (want: string | undefined) => want !== undefined && want !== '' && want !== 'None';
  // an explicit VIP other than the one held, or None, gives the held one up before anyone allocates
  for (const [m, want] of asked) {
    const owner = ownerOf(m);
    const had = owned.get(owner);
    if (had === undefined || !(want === 'None' || (explicit(want) && had !== want))) continue;
    released.add(had);
    claimed.delete(had);
    const a = claimedAddress(had);
    if (a && shadowed.get(formatIP(a)) === owner) shadowed.delete(formatIP(a));
  }
  for (const [m, want] of [...asked].sort(([, a], [, b]) => Number(!explicit(a)) - Number(!explicit(b)))) {
    const spec = (m.spec ??= {}) as { clusterIP?: string };
    const owner = ownerOf(m);
    spec.clusterIP = want;
    if (want === undefined) delete spec.clusterIP;
    if (spec.clusterIP === 'None') continue;
    const had = owned.get(owner);
    // a VIP kept only while the range still holds it (enable may have moved the range since it was claimed); one
    // claimed as a host prefix ("100.80.0.77/32") keeps its address, its claim moved to the canonical key
    const hadAddr = had === undefined ? null : claimedAddress(had);
    const keep = hadAddr && prefixContains(range, hadAddr) ? formatIP(hadAddr) : undefined;
    let ip = spec.clusterIP || (keep && (claimed.get(keep) ?? owner) === owner ? keep : undefined);
    if (spec.clusterIP) {
      // as Kubernetes does: an explicit VIP comes from the service range too, else it could be any pod's or
      // node's address (the load balancer answers a VIP before routing), enable's and connect's checks bypassed
      // one address in the spelling its claim is keyed by (validate checks it too: manifests from the store also come here)
      const vip = parseCanonicalIP(spec.clusterIP);
      if (!vip) throw new ConfigError(`${owner}: spec.clusterIP`, `${spec.clusterIP} is not one IP address in canonical form`);
      if (!prefixContains(range, vip))
        throw new ConfigError(`${owner}: spec.clusterIP`, `${spec.clusterIP} is outside the service CIDR ${cidr} of cluster ${cluster}: VIPs come from it only`);
      const offset = vip.length === 4 && range.addr.length === 4 ? (vip.readUInt32BE(0) - base) >>> 0 : -1;
      if (size > 2 && (offset === 0 || offset === size - 1))
        throw new ConfigError(`${owner}: spec.clusterIP`, `${spec.clusterIP} is the network or broadcast address of the service CIDR ${cidr}: not a VIP`);
      const holder = claimed.get(spec.clusterIP) ?? shadowed.get(spec.clusterIP);
      if (holder && holder !== owner) throw new ConfigError(`${owner}: spec.clusterIP`, `${spec.clusterIP} is already the VIP of ${holder} in cluster ${cluster}`);
    }
    if (!ip) {
      for (let i = 1; i < size - 1 && !ip; i++) {
        const cand = formatIP(Buffer.from([(base + i) >>> 24, ((base + i) >>> 16) & 255, ((base + i) >>> 8) & 255, (base + i) & 255]));
        if (!claimed.has(cand) && !shadowed.has(cand)) ip = cand;
      }
      if (!ip) throw new ConfigError(`${owner}: spec.clusterIP`, `no free VIP left in ${cidr}`);
    }
    spec.clusterIP = ip;
    // (unless another Service of this apply has taken it over since)
    if (had && had !== ip && (claimed.get(had) ?? owner) === owner) {
      released.add(had);
      claimed.delete(had);
    }
    if (claimed.get(ip) !== owner) {
      // one given up in this apply is written over, not deleted: a put and a delete of one key in one transaction
      // is refused by etcd
      const from = released.delete(ip) ? stored.get(ip) : undefined;
      fresh.push(from === undefined ? { ip, owner } : { ip, owner, from });
      claimed.set(ip, owner);
      owned.set(owner, ip);
    } else kept.push({ ip, owner });
  }
  return { fresh, kept, released: [...released].map((ip) => ({ ip, owner: stored.get(ip)! })) };
}
