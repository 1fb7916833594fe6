/**
 * Connecting clusters: `wiremesh clustermesh enable|connect|disconnect|status`
 * and the testbed use these functions.
 *
 * enable  writes wiremesh/cluster-config/<name> into the cluster's own etcd.
 * connect A B  pre-flight checks both clusters (reachable etcd, distinct names
 *              and IDs, non-overlapping pod CIDRs, underlay CIDRs overlapping
 *              neither each other nor any pod CIDR), then writes into each
 *              one's etcd what it pins about the other (mesh/v1/clusters/: id,
 *              pod and underlay CIDRs, hub, whether its mesh-wide policies are accepted)
 *              and the other's remote entry; their kvstoremesh picks it up.
 *              Everything the other cluster's records claim is checked against
 *              the pin from then on (records/trust.ts), never against what the
 *              other cluster says about itself later.
 * disconnect   deletes the entries; kvstoremesh purges the cached state.
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3, ICompare } from 'etcd3';
import { MeshError } from '../errors.js';
import { formatPrefix, parseIP, parsePrefix, prefixContains } from '../net/ip.js';
import { clusterConfigKey, clusterConfigPrefix, healthPrefix, pinnedKey, pinnedPrefix, remoteKey, remotesPrefix, remoteStatusPrefix, cachePrefix, statePrefix, syncedPrefix } from './keys.js';
import { connectEtcd, type EtcdOptions } from './kvstore.js';
import { issueRemoteReader } from './pki.js';
import { ensureRole, idempotent, kvstoremeshRole, observerRole, REMOTE_READER_ROLE, remoteReaderRole } from './rbac.js';
import { prefixesOverlap } from './types.js';
import { serviceCIDR, serviceClear, serviceClearOfPin, servicesApart, vipsInside } from './servicecidr.js';
import { modIs, putIf, raceLost, readClaims, unchangedSince, RACE_ATTEMPTS, type RaceHooks } from './vipclaims.js';
import { validateClusterId, validateClusterName, validatePrefixes } from '../validate.js';
import { isCidr } from './records/fields.js';
import {
  clusterConfigCodec,
  nodeCodec,
  nodeHealthCodec,
  pinnedClusterCodec,
  remoteSpecCodec,
  remoteStatusCodec,
  serviceCodec,
  tryDecode,
  MAX_RELAY_PIN,
  defaultRelayCIDRError,
  relayCIDRError,
  type ClusterConfig,
  type Codec,
  type NodeHealth,
  type NodeRecord,
  type PinnedCluster,
  type RemoteSpec,
  type RemoteStatus,
} from './records/index.js';

/**
 * Decodes every value under a prefix; what fails is listed as a warning, never thrown. `guards`: gets a compare that
 * holds while no key under the prefix was written after this read (vipclaims.unchangedSince).
 */
async function decodeAll<T>(c: Etcd3, prefix: string, codec: Codec<T>, warnings?: string[], guards?: ICompare[]): Promise<Array<{ key: string; value: T }>> {
  const out: Array<{ key: string; value: T }> = [];
  const res = await c.getAll().prefix(prefix).exec();
  for (const kv of res.kvs) {
    const key = kv.key.toString();
    const r = tryDecode(codec, key, kv.value.toString());
    if (r.ok) out.push({ key, value: r.value });
    else warnings?.push(r.error.message);
  }
  guards?.push(unchangedSince(prefix, res.header.revision));
  return out;
}

export interface ClusterAccess extends EtcdOptions {
  /** How other clusters' kvstoremesh reach this etcd (defaults to `endpoints`). */
  advertise?: EtcdOptions;
  /** The cluster's PKI folder (pki.ts): its CA issues read-only certificates for remotes. */
  pkiDir?: string;
}

export { REMOTE_READER_ROLE };
const remoteUser = (reader: string) => `remote-${reader}`;

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

/**
 * Enable run again over an enabled cluster: `cfg`'s ranges against every cluster this etcd pinned (pod and
 * underlay CIDRs apart, both ways: as connect's pre-flight; throws MeshError WM_UNDERLAY_CIDR_OVERLAP /
 * WM_POD_CIDR_OVERLAP), and a warning per own node record with an address outside the new underlay CIDRs (its
 * readers will refuse it: claim).
 */
export function enableAgainst(cfg: ClusterConfig, pins: PinnedCluster[], nodes: NodeRecord[]): string[] {
  for (const p of pins) {
    for (const pa of cfg.podCIDRs)
      for (const pb of p.podCIDRs)
        if (prefixesOverlap(parsePrefix(pa), parsePrefix(pb))) throw new MeshError('WM_POD_CIDR_OVERLAP', `pod CIDR ${pa} of ${cfg.name} overlaps ${pb} of pinned ${p.name}`);
    underlayApart(cfg, p);
    underlayApart(p, cfg);
    serviceClearOfPin(cfg, p);
  }
  const inside = (a: string) => (cfg.underlayCIDRs ?? []).some((c) => prefixContains(parsePrefix(c), parseIP(a)!));
  return nodes.flatMap((n) => n.addresses.filter((a) => !inside(a)).map((a) => `node ${cfg.name}/${n.name}: address ${a} is outside the underlay CIDRs ${(cfg.underlayCIDRs ?? []).join(', ')}: its readers will refuse it`));
}

/**
 * Writes `cfg` as this etcd's cluster-config (first time or again); returns warnings (enableAgainst). A `cfg`
 * without serviceCIDR keeps the one stored by an earlier enable (VIPs already handed out come from it). A range
 * that changes is written only if it holds every VIP claim (MeshError WM_SERVICE_CIDR_IN_USE) and no claim was
 * made since they were read (vipclaims.ts; read again at most RACE_ATTEMPTS times, then WM_VIP_RACE). `hooks`:
 * tests only.
 */
export async function enableCluster(access: EtcdOptions, given: ClusterConfig, hooks?: RaceHooks): Promise<string[]> {
  let cfg = given;
  validateClusterName(cfg.name);
  validateClusterId(cfg.id, 'id', cfg.maxConnectedClusters ?? 255);
  validatePrefixes(cfg.podCIDRs, 'podCIDRs');
  if (!cfg.underlayCIDRs) throw new MeshError('WM_UNDERLAY_CIDRS_MISSING', `cluster ${cfg.name}: underlay CIDRs are required (--underlay-cidrs: where its nodes' addresses live)`);
  // decoded as every reader will decode it: what the schema refuses is never stored
  const checked = tryDecode(clusterConfigCodec, clusterConfigKey(cfg.name), clusterConfigCodec.encode(cfg));
  if (!checked.ok) throw new MeshError('WM_CLUSTER_CONFIG_INVALID', checked.error.message);
  underlayApart(cfg, cfg);
  if (cfg.serviceCIDR) serviceClear(cfg, cfg); // else once the stored one is known
  return withEtcd(access, async (c) => {
    let warnings: string[] = [];
    for (let attempt = 0; ; attempt++) {
      cfg = given; // each attempt from a fresh read (a stored range is taken again)
      const all = (await c.getAll().prefix(clusterConfigPrefix()).exec()).kvs;
      const other = all.find((kv) => kv.key.toString() !== clusterConfigKey(cfg.name));
      if (other) throw new MeshError('WM_CLUSTER_MISMATCH', `this etcd already belongs to cluster ${other.key.toString().slice(clusterConfigPrefix().length)}`);
      // the write holds only while the config is as read here (still absent: mod revision 0), so the checks below
      // were made against what it replaces (another enable in between fails it)
      const guards = [modIs(clusterConfigKey(cfg.name), all[0]?.mod_revision ?? '0')];
      const old = all[0] && tryDecode(clusterConfigCodec, clusterConfigKey(cfg.name), all[0].value.toString());
      if (old?.ok && old.value.id !== cfg.id) throw new MeshError('WM_CLUSTER_ID_CHANGED', `cluster ${cfg.name} is already enabled with id ${old.value.id}, not ${cfg.id}`);
      if (old?.ok && (old.value.maxConnectedClusters ?? 255) !== (cfg.maxConnectedClusters ?? 255))
        throw new MeshError('WM_MAX_CLUSTERS_MISMATCH', `cluster ${cfg.name} is enabled with maxConnectedClusters ${old.value.maxConnectedClusters ?? 255}: its identities are laid out for it`);
      if (old?.ok && old.value.serviceCIDR && !cfg.serviceCIDR) cfg = { ...cfg, serviceCIDR: old.value.serviceCIDR };
      serviceClear(cfg, cfg);
      // what this etcd pinned, and its own node records (undecodable ones: warned about as well); a pin written
      // after this read (a connect in between, checked against the range it read) fails the write, and the next
      // attempt checks the range against that pin
      const warned: string[] = [];
      const pins = (await decodeAll(c, pinnedPrefix(), pinnedClusterCodec, warned, guards)).map((e) => e.value);
      warnings = [...enableAgainst(cfg, pins, (await decodeAll(c, statePrefix('nodes', cfg.name), nodeCodec, warned)).map((e) => e.value)), ...warned];
      // a new range must hold every VIP handed out, and no VIP may be claimed between this read and the write
      // (vipclaims.ts: a claim made in between fails the write, and the next attempt sees it); read last, so an
      // apply has the shortest window in which it makes this attempt fail
      if (!old?.ok || serviceCIDR(old.value) !== serviceCIDR(cfg)) {
        const claims = await readClaims(c, cfg.name);
        vipsInside(cfg, Object.keys(claims.owners));
        guards.push(claims.unchanged);
      }
      await hooks?.beforeCommit?.(attempt);
      if (await putIf(c, guards, clusterConfigKey(cfg.name), clusterConfigCodec.encode(cfg))) break;
      if (attempt + 1 >= RACE_ATTEMPTS) throw raceLost('the cluster-config or the service VIPs (concurrent enables, applies or connects)');
    }
    if (access.ca || access.caFile) {
      // RBAC (rbac.ts): remote clusters get a role that reads wiremesh/state/ and nothing else;
      // kvstoremesh and observers their own users; agents get theirs from `clustermesh node-credentials`.
      for (const spec of [remoteReaderRole(), kvstoremeshRole(cfg.name), observerRole()]) await ensureRole(c, spec);
      await idempotent(c.role('root').create());
      await idempotent(c.user('root').create(randomBytes(24).toString('base64')));
      await idempotent(c.user('root').addRole('root'));
      await c.auth.authEnable({});
    }
    return warnings;
  });
}

export const readClusterConfig = async (access: EtcdOptions): Promise<ClusterConfig> => (await readConfigGuarded(access)).cfg;

/** readClusterConfig's config (and errors), with a compare that holds while it is unchanged (modIs). */
async function readConfigGuarded(access: EtcdOptions): Promise<{ cfg: ClusterConfig; unchanged: ICompare }> {
  return withEtcd(access, async (c) => {
    const all = (await c.getAll().prefix(clusterConfigPrefix()).exec()).kvs;
    if (all.length !== 1)
      throw new MeshError('WM_CLUSTER_NOT_ENABLED', `etcd at ${access.endpoints.join(', ')} holds ${all.length} cluster configs; run \`wiremesh clustermesh enable\` first`);
    const key = all[0]!.key.toString();
    const r = tryDecode(clusterConfigCodec, key, all[0]!.value.toString());
    if (!r.ok) throw new MeshError('WM_CLUSTER_CONFIG_INVALID', `${r.error.message}: run \`wiremesh clustermesh enable\` again`);
    return { cfg: r.value, unchanged: modIs(key, all[0]!.mod_revision) };
  });
}

/** Checks that two clusters can be connected; throws MeshError saying why not. */
export function preflight(a: ClusterConfig, b: ClusterConfig): void {
  if (a.name === b.name) throw new MeshError('WM_DUPLICATE_CLUSTER_NAME', `both clusters are named "${a.name}": cluster names must be unique in a mesh`);
  if (a.id === b.id) throw new MeshError('WM_DUPLICATE_CLUSTER_ID', `clusters ${a.name} and ${b.name} both have id ${a.id}: cluster IDs must be unique in a mesh`);
  const [ma, mb] = [a.maxConnectedClusters ?? 255, b.maxConnectedClusters ?? 255];
  if (ma !== mb)
    throw new MeshError('WM_MAX_CLUSTERS_MISMATCH', `${a.name} has maxConnectedClusters ${ma}, ${b.name} ${mb}: one mesh reads identities one way`);
  for (const pa of a.podCIDRs)
    for (const pb of b.podCIDRs)
      if (prefixesOverlap(parsePrefix(pa), parsePrefix(pb)))
        throw new MeshError('WM_POD_CIDR_OVERLAP', `pod CIDR ${pa} of ${a.name} overlaps ${pb} of ${b.name}: pod CIDRs must not overlap`);
  underlayApart(a, b);
  underlayApart(b, a);
}

type CIDRsOf = Pick<ClusterConfig, 'name' | 'podCIDRs' | 'underlayCIDRs'>;

/**
 * Throws when a's underlay CIDRs overlap b's pod CIDRs, or (two clusters) b's underlay CIDRs: each node address
 * must be one cluster's, and no node's a pod's. Called with a === b, a cluster's own ranges. A pin that predates
 * underlay CIDRs has none to compare (its node addresses are refused: records/trust.ts).
 */
function underlayApart(a: CIDRsOf, b: CIDRsOf): void {
  for (const ua of a.underlayCIDRs ?? []) {
    const p = parsePrefix(ua);
    const pod = b.podCIDRs.find((c) => prefixesOverlap(p, parsePrefix(c)));
    if (pod) throw new MeshError('WM_UNDERLAY_CIDR_OVERLAP', `underlay CIDR ${ua} of ${a.name} overlaps pod CIDR ${pod} of ${b.name}: node addresses must not lie in pod CIDRs`);
    const under = a === b ? undefined : b.underlayCIDRs?.find((c) => prefixesOverlap(p, parsePrefix(c)));
    if (under) throw new MeshError('WM_UNDERLAY_CIDR_OVERLAP', `underlay CIDR ${ua} of ${a.name} overlaps ${under} of ${b.name}: underlay CIDRs must not overlap (each node address is one cluster's)`);
  }
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

/**
 * What a cluster pins about a remote at connect (records/cluster.ts). `relayCIDRs`: what a hub may relay to this
 * side (relayCIDRsFor); ignored for a remote that is no hub.
 */
export function pinFor(remote: ClusterConfig, acceptPolicies: boolean, relayCIDRs: string[] = []): PinnedCluster {
  const layout = remote.maxConnectedClusters === 511 ? { maxConnectedClusters: 511 as const } : {};
  const underlay = remote.underlayCIDRs ? { underlayCIDRs: [...remote.underlayCIDRs] } : {};
  const relay = remote.relay === true ? { relayCIDRs: [...relayCIDRs] } : {};
  return { name: remote.name, id: remote.id, podCIDRs: [...remote.podCIDRs], ...underlay, relay: remote.relay === true, ...relay, acceptPolicies, ...layout };
}

/**
 * What `self` lets `hub` relay to it (records/relaypin.ts), as `cidrs` (canonical text), with `skipped`: a line per
 * range of the default left out, and why. The operator's `explicit` list (throws MeshError WM_RELAY_CIDR_INVALID
 * for a range relaypin refuses, or a list for a remote that is no hub), else the pod CIDRs of the clusters the hub
 * has pinned now (`hubPins`, read from the hub's own etcd; `self` left out): only those inside shared/private space
 * that relaypin takes (defaultRelayCIDRError), at most MAX_RELAY_PIN. Clusters the hub connects later are relayed
 * only after `self` connects to it again.
 */
export function relayCIDRsFor(self: string, hub: ClusterConfig, hubPins: PinnedCluster[], explicit?: string[]): { cidrs: string[]; skipped: string[] } {
  if (explicit) {
    if (hub.relay !== true) throw new MeshError('WM_RELAY_CIDR_INVALID', `relay CIDRs given for ${hub.name}, which is no hub (enabled without --relay)`);
    const bad = explicit.map((c) => (isCidr(c) ? relayCIDRError(c) : `"${c}" is not a CIDR`)).find((w) => w !== undefined);
    if (bad || explicit.length > MAX_RELAY_PIN) throw new MeshError('WM_RELAY_CIDR_INVALID', `relay CIDRs for ${self} from ${hub.name}: ${bad ?? `more than ${MAX_RELAY_PIN}`}`);
    return { cidrs: explicit.map((c) => formatPrefix(parsePrefix(c))), skipped: [] };
  }
  if (hub.relay !== true) return { cidrs: [], skipped: [] }; // no hub: nothing relayed, nothing to warn of
  const cidrs: string[] = [];
  const skipped: string[] = [];
  for (const p of hubPins.filter((x) => x.name !== self)) {
    for (const c of p.podCIDRs) {
      const why = defaultRelayCIDRError(c) ?? (cidrs.length >= MAX_RELAY_PIN ? `more than ${MAX_RELAY_PIN} ranges` : undefined);
      if (why) skipped.push(`${self} does not let hub ${hub.name} relay ${c} (${hub.name}'s pin of ${p.name}): ${why}; to relay it, name it in ${self}'s --a-relay-cidrs/--b-relay-cidrs`);
      else cidrs.push(c);
    }
  }
  return { cidrs, skipped };
}

/**
 * Options of connect: whether each side enforces the other's mesh-wide
 * policies (`--a-accept-policies`: A enforces B's). Default off: a remote's
 * policies are replicated (policy trace shows them) but not enforced.
 */
export interface ConnectOptions {
  aAcceptsPolicies?: boolean;
  bAcceptsPolicies?: boolean;
  /** What A lets hub B relay to it (`--a-relay-cidrs`; default: relayCIDRsFor's), and B hub A. */
  aRelayCIDRs?: string[];
  bRelayCIDRs?: string[];
  /** Tests only: beforeCommit(0) runs after every check and before the first pin is written. */
  hooks?: RaceHooks;
}

/**
 * Connects A and B; returns their configs, what each pinned about the other (aPin: A's pin of B) and `warnings`
 * (a line per range a default relay list skipped, and why).
 */
export async function connectClusters(aAccess: ClusterAccess, bAccess: ClusterAccess, opts: ConnectOptions = {}): Promise<{ a: ClusterConfig; b: ClusterConfig; aPin: PinnedCluster; bPin: PinnedCluster; warnings: string[] }> {
  const read = await Promise.all([readConfigGuarded(aAccess), readConfigGuarded(bAccess)]);
  const [a, b] = [read[0].cfg, read[1].cfg];
  for (const c of [a, b])
    if (!c.underlayCIDRs)
      throw new MeshError('WM_UNDERLAY_CIDRS_MISSING', `cluster ${c.name} was enabled without underlay CIDRs: run \`wiremesh clustermesh enable\` again with --underlay-cidrs, then connect`);
  preflight(a, b);
  for (const [x, y] of [[a, b], [b, a]] as const) serviceClear(x, y);
  servicesApart(a, b);
  // the operator's relay lists are checked before anything changes (relayCIDRsFor throws WM_RELAY_CIDR_INVALID)
  for (const [self, hub, list] of [[a, b, opts.aRelayCIDRs], [b, a, opts.bRelayCIDRs]] as const) if (list) relayCIDRsFor(self.name, hub, [], list);
  // and against every cluster either side is already connected to: ids and pod CIDRs are unique mesh-wide,
  // or a newcomer could speak with the identities of a cluster it shares an id with
  const pinsOf = new Map<string, PinnedCluster[]>();
  for (const [access, self, other] of [[aAccess, a, b], [bAccess, b, a]] as const) {
    pinsOf.set(self.name, (await withEtcd(access, (c) => decodeAll(c, pinnedPrefix(), pinnedClusterCodec))).map((e) => e.value));
    for (const pin of pinsOf.get(self.name)!)
      if (pin.name !== other.name) {
        preflight({ name: pin.name, id: pin.id, podCIDRs: pin.podCIDRs, ...(pin.underlayCIDRs ? { underlayCIDRs: pin.underlayCIDRs } : {}) }, other);
        serviceClearOfPin(other, pin); // other's VIPs would shadow the pods of a cluster it may reach through self
      }
    // the other's pod CIDRs become routes into the tunnels here: they must not hold our own infrastructure
    const nodes = await withEtcd(access, (c) => decodeAll(c, statePrefix('nodes', self.name), nodeCodec));
    const infra = [...nodes.flatMap((n) => n.value.addresses), ...access.endpoints.map((u) => new URL(u).hostname.replace(/^\[|\]$/g, ''))];
    for (const cidr of other.podCIDRs)
      for (const ip of infra) {
        const addr = parseIP(ip);
        if (addr && prefixContains(parsePrefix(cidr), addr))
          throw new MeshError('WM_POD_CIDR_OVERLAP', `pod CIDR ${cidr} of ${other.name} holds ${ip}, an address of ${self.name}'s nodes or etcd: pod CIDRs must not cover underlay addresses`);
      }
  }
  const aRelay = relayCIDRsFor(a.name, b, pinsOf.get(b.name)!, opts.aRelayCIDRs);
  const bRelay = relayCIDRsFor(b.name, a, pinsOf.get(a.name)!, opts.bRelayCIDRs);
  const aPin = pinFor(b, opts.aAcceptsPolicies === true, aRelay.cidrs);
  const bPin = pinFor(a, opts.bAcceptsPolicies === true, bRelay.cidrs);
  const bForA = await remoteSpecFor(b, bAccess, a.name);
  const aForB = await remoteSpecFor(a, aAccess, b.name);
  await opts.hooks?.beforeCommit?.(0);
  // the pin first: kvstoremesh replicates a remote only once both exist. Each is written only while its side's
  // cluster-config is the one checked above: an enable that changed it in between fails the write (as a pin
  // written after enable read the pins fails enable's); A's pin then stays if B's write failed (docs/errors.md)
  for (const [access, self, pin] of [[aAccess, read[0], aPin], [bAccess, read[1], bPin]] as const) {
    if (!(await withEtcd(access, (c) => putIf(c, [self.unchanged], pinnedKey(pin.name), pinnedClusterCodec.encode(pin)))))
      throw new MeshError('WM_CONNECT_RACE', `the cluster-config of ${self.cfg.name} changed (a concurrent enable) after connect checked it: connect again`);
  }
  await withEtcd(aAccess, (c) => c.put(remoteKey(b.name)).value(remoteSpecCodec.encode(bForA)).exec());
  await withEtcd(bAccess, (c) => c.put(remoteKey(a.name)).value(remoteSpecCodec.encode(aForB)).exec());
  return { a, b, aPin, bPin, warnings: [...aRelay.skipped, ...bRelay.skipped] };
}

/** Removes both remote entries and, with PKIs, the read-only users (their certificates stop working). */
export async function disconnectClusters(aAccess: ClusterAccess, bAccess: ClusterAccess): Promise<void> {
  const [a, b] = await Promise.all([readClusterConfig(aAccess), readClusterConfig(bAccess)]);
  await withEtcd(aAccess, (c) => c.delete().key(remoteKey(b.name)).exec());
  await withEtcd(bAccess, (c) => c.delete().key(remoteKey(a.name)).exec());
  await withEtcd(aAccess, (c) => c.delete().key(pinnedKey(b.name)).exec());
  await withEtcd(bAccess, (c) => c.delete().key(pinnedKey(a.name)).exec());
  for (const [access, reader] of [[aAccess, b.name], [bAccess, a.name]] as const) {
    if (!access.pkiDir) continue;
    await withEtcd(access, (c) => c.user(remoteUser(reader)).delete().catch(() => undefined));
  }
}

export interface MeshStatus {
  cluster: ClusterConfig;
  /** Each remote with kvstoremesh's view (its rejections included) and what this side pinned about it. */
  remotes: Array<{ name: string; status: RemoteStatus | null; pinned: PinnedCluster | null }>;
  nodes: { local: number; byRemote: Record<string, number> };
  synced: string[];
  /** Per local node: how many of the configured remote clusters it has a live tunnel into (handshake < 180 s). */
  connectivity: { configured: number; perNode: Record<string, number>; min: number; avg: number; max: number };
  globalServices: number;
  health: Record<string, NodeHealth>;
  /**
   * What needs a look: records a remote sent that were refused (naming the
   * remote, the type, the reason), remotes without a pin, records here that
   * do not decode.
   */
  warnings: string[];
}

export async function meshStatus(access: EtcdOptions): Promise<MeshStatus> {
  const cluster = await readClusterConfig(access);
  return withEtcd(access, async (c) => {
    const warnings: string[] = [];
    const remotes = (await decodeAll(c, remotesPrefix(), remoteSpecCodec, warnings)).map((r) => r.value);
    const status = new Map((await decodeAll(c, remoteStatusPrefix(), remoteStatusCodec, warnings)).map((r) => [r.value.cluster, r.value]));
    const pins = new Map((await decodeAll(c, pinnedPrefix(), pinnedClusterCodec, warnings)).map((r) => [r.value.name, r.value]));
    const localNodes = await c.getAll().prefix(statePrefix('nodes', cluster.name)).keys();
    const cached = await c.getAll().prefix(cachePrefix('nodes')).keys();
    const byRemote: Record<string, number> = {};
    for (const k of cached.map(String)) {
      const name = k.slice(cachePrefix('nodes').length).split('/')[0]!;
      byRemote[name] = (byRemote[name] ?? 0) + 1;
    }
    const synced = (await c.getAll().prefix(syncedPrefix()).keys()).map(String).map((k) => k.slice(syncedPrefix().length));
    const health: Record<string, NodeHealth> = {};
    for (const { key, value } of await decodeAll(c, healthPrefix(cluster.name), nodeHealthCodec, warnings)) health[key.slice(healthPrefix(cluster.name).length)] = value;
    const perNode: Record<string, number> = {};
    for (const [node, h] of Object.entries(health)) {
      perNode[node] = remotes.filter((r) => (h.clusters[r.name]?.live ?? 0) > 0).length;
    }
    const counts = Object.values(perNode);
    let globalServices = 0;
    for (const prefix of [statePrefix('services', cluster.name), cachePrefix('services')])
      for (const { value: m } of await decodeAll(c, prefix, serviceCodec, warnings))
        if (m.metadata.annotations?.['service.cilium.io/global'] === 'true') globalServices++;
    if (!cluster.underlayCIDRs) warnings.push(`cluster ${cluster.name}: its cluster-config names no underlay CIDRs: its nodes are refused; run \`clustermesh enable\` again with --underlay-cidrs`);
    for (const p of pins.keys()) if (!remotes.some((r) => r.name === p)) warnings.push(`cluster ${p}: pinned here but no remote entry (a connect that did not finish, e.g. WM_CONNECT_RACE): nothing replicated; connect again or disconnect`);
    for (const r of remotes) {
      if (!pins.has(r.name)) warnings.push(`remote ${r.name}: nothing pinned about it (wiremesh/mesh/v1/clusters/${r.name}): not replicated; connect again`);
      else if (!pins.get(r.name)!.underlayCIDRs) warnings.push(`remote ${r.name}: pinned without underlay CIDRs (connected before they existed): its nodes are refused; connect again`);
      if (pins.get(r.name)?.relay && !pins.get(r.name)!.relayCIDRs?.length) warnings.push(`remote ${r.name}: a hub pinned with no relay CIDRs: it relays nothing here; connect again (--a-relay-cidrs/--b-relay-cidrs for this side)`);
      const st = status.get(r.name);
      for (const [what, n] of Object.entries(st?.rejected ?? {})) warnings.push(`remote ${r.name}: ${n} ${what.replace('/', ' record(s) refused: ')}`);
      for (const e of st?.recentRejections?.slice(-5) ?? []) warnings.push(`remote ${r.name}: refused ${e.type} ${e.key}: ${e.reason}: ${e.detail}`);
      if (st?.budget && st.budget.records >= st.budget.maxRecords) warnings.push(`remote ${r.name}: at its record budget (${st.budget.maxRecords}): new records are refused`);
      if (st?.budget?.maxNodes !== undefined && (st.budget.nodes ?? 0) >= st.budget.maxNodes) warnings.push(`remote ${r.name}: at its node budget (${st.budget.maxNodes}): new nodes are refused`);
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
      remotes: remotes.map((r) => ({ name: r.name, status: status.get(r.name) ?? null, pinned: pins.get(r.name) ?? null })),
      nodes: { local: localNodes.length, byRemote },
      synced,
      warnings,
    };
  });
}
