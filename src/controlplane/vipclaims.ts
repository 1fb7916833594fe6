/**
 * The service range (the cluster-config's serviceCIDR) and the VIP claims (keys.vipKey) serialised through etcd
 * itself, never a lock of ours: `clustermesh enable` writes a new range only if no claim changed since it checked
 * them (claimsUnchanged), and `apply` claims VIPs only while the cluster-config it allocated from is still the stored
 * one (storedRange's guard). Whichever commits second fails its transaction and the caller reads again (at most
 * RACE_ATTEMPTS times, then MeshError WM_VIP_RACE): enable then sees the claim and refuses
 * (WM_SERVICE_CIDR_IN_USE), apply sees the new range and allocates inside it (or refuses the Service).
 */
import { Range, type Etcd3, type ICompare } from 'etcd3';
import { MeshError } from '../errors.js';
import { clusterConfigKey, vipPrefix } from './keys.js';
import { clusterConfigCodec, tryDecode } from './records/index.js';
import { serviceCIDR } from './servicecidr.js';

/** Attempts of a guarded write (enable's range, apply's claims) before WM_VIP_RACE. */
export const RACE_ATTEMPTS = 5;

/**
 * For tests that force an interleaving (never set in production): `beforeCommit` runs after the reads and checks
 * of each attempt (0-based) and before its guarded transaction, so a racer's write lands in between.
 */
export interface RaceHooks {
  beforeCommit?(attempt: number): Promise<void>;
}

/** Holds while `key`'s mod revision is `modRevision` (etcd's int64 as a decimal string; "0": the key is absent). */
export const modIs = (key: string, modRevision: string): ICompare => ({ key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: modRevision });

/**
 * The cluster's VIP claims, read at one revision: `owners` maps each claim's name (the key after vipPrefix) to its
 * owner ("<namespace>/<name>"); `unchanged` holds while no claim key was created or changed after that revision
 * (one compare over the prefix's range: every key's mod revision below revision + 1; a claim deleted since does
 * not fail it, as a VIP given up cannot be outside any range).
 */
export async function readClaims(c: Etcd3, cluster: string): Promise<{ owners: Record<string, string>; unchanged: ICompare }> {
  const prefix = vipPrefix(cluster);
  const res = await c.getAll().prefix(prefix).exec();
  const owners: Record<string, string> = {};
  for (const kv of res.kvs) owners[kv.key.toString().slice(prefix.length)] = kv.value.toString();
  return { owners, unchanged: unchangedSince(prefix, res.header.revision) };
}

/**
 * Holds while no key under `prefix` was created or changed after `revision` (the header revision of the read that
 * listed them): one compare over the prefix's range, every key's mod revision below revision + 1. A key deleted
 * since does not fail it.
 */
export function unchangedSince(prefix: string, revision: string): ICompare {
  const { start, end } = Range.prefix(prefix);
  return { key: start, range_end: end, target: 'Mod', result: 'Less', mod_revision: String(BigInt(revision) + 1n) };
}

/**
 * The cluster's service range as stored now (serviceCIDR of its cluster-config, decoded as every reader decodes it)
 * and a compare that holds while that config is unchanged. Throws MeshError WM_CLUSTER_NOT_ENABLED (no config)
 * or WM_CLUSTER_CONFIG_INVALID (it does not decode).
 */
export async function storedRange(c: Etcd3, cluster: string): Promise<{ cidr: string; unchanged: ICompare }> {
  const key = clusterConfigKey(cluster);
  const kv = (await c.get(key).exec()).kvs[0];
  if (!kv) throw new MeshError('WM_CLUSTER_NOT_ENABLED', `cluster ${cluster} has no cluster-config; run \`wiremesh clustermesh enable\` first`);
  const cfg = tryDecode(clusterConfigCodec, key, kv.value.toString());
  if (!cfg.ok) throw new MeshError('WM_CLUSTER_CONFIG_INVALID', `${cfg.error.message}: run \`wiremesh clustermesh enable\` again`);
  return { cidr: serviceCIDR(cfg.value), unchanged: modIs(key, kv.mod_revision) };
}

/** Puts `value` at `key` in one transaction that holds only while every compare does; whether it was written. */
export async function putIf(c: Etcd3, compare: ICompare[], key: string, value: string): Promise<boolean> {
  const put = { request_put: { key: Buffer.from(key), value: Buffer.from(value) } };
  return (await c.kv.txn({ compare, success: [put], failure: [] })).succeeded;
}

/** The MeshError of a guarded write that lost RACE_ATTEMPTS times running (`what`: who kept changing what). */
export const raceLost = (what: string): MeshError => new MeshError('WM_VIP_RACE', `${what} kept changing under us ${RACE_ATTEMPTS} times; try again`);
