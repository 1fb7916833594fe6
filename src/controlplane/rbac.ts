/**
 * Least privilege in a cluster's etcd: who may read and write which keys.
 * etcd (with --client-cert-auth) maps a client certificate's CN to the etcd
 * user of that name; each user below has one role, defined here as data so
 * that `clustermesh enable`, `clustermesh node-credentials` and the docs
 * (docs/etcd-keys.md, "Who may write what") agree.
 *
 *   user (CN)            role                          who
 *   root                 root                          operator commands only: enable, connect, apply, status, disconnect, node-credentials
 *   node-<node>          wiremesh-node-<node>          the agent of <node>: writes its own records only
 *   kvstoremesh          wiremesh-kvstoremesh          the cluster's replicator and identity garbage collector
 *   observer             wiremesh-observer             gateway-dns, dashboards: reads state, never writes
 *   remote-<cluster>     wiremesh-remote-reader        another cluster's kvstoremesh: reads wiremesh/state/ only
 *
 * What etcd 3.4 checks (measured, test/netns/compromised-node.test.ts): a put,
 * also one with a lease, needs Write on its key; a transaction needs Read on
 * every key it compares and Write/Read on every operation; a watch and a range
 * need Read on the whole range; LeaseGrant and LeaseKeepAlive need no
 * permission; LeaseRevoke needs Write on every key still attached to the lease.
 *
 * Residual risk, documented: identity allocation is shared by a cluster's
 * agents (state/identities and identity-index of the cluster are writable by
 * every node), so a compromised node can rewrite or delete the cluster's
 * identities, though not the endpoints that map addresses to them.
 */
import { boundedName } from '../boundedname.js';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Etcd3, IPermissionRequest } from 'etcd3';
import { ConfigError } from '../errors.js';
import {
  clusterConfigPrefix,
  epochsPrefix,
  healthKey,
  identityIndexPrefix,
  identityRefsPrefix,
  pinnedPrefix,
  remotesPrefix,
  remoteStatusPrefix,
  stateKey,
  statePrefix,
  syncedPrefix,
} from './keys.js';
import { connectEtcd, type EtcdOptions } from './kvstore.js';
import { issue } from './pki.js';
import { validateClusterName } from '../validate.js';

export type Permission = 'Read' | 'Write' | 'ReadWrite';
/** One permission: on a single key, or on every key that starts with a prefix. */
export type Grant = { permission: Permission; key: string } | { permission: Permission; prefix: string };

export interface RoleSpec {
  /** etcd role name. */
  role: string;
  /** etcd user (= certificate CN) that gets the role; none for a role shared by per-remote users. */
  user?: string;
  grants: Grant[];
}

const STATE_ROOT = 'wiremesh/state/';
const CACHE_ROOT = 'wiremesh/cache/';

export const NODE_USER_PREFIX = 'node-';
/** ub-common-name (RFC 5280): the longest CN a certificate may carry. */
const X509_CN_MAX = 64;
export const KVSTOREMESH_USER = 'kvstoremesh';
export const OBSERVER_USER = 'observer';
export const REMOTE_READER_ROLE = 'wiremesh-remote-reader';

const NODE_NAME_RE = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;

export function validateNodeName(node: unknown, field = 'node'): string {
  if (typeof node !== 'string' || !NODE_NAME_RE.test(node)) throw new ConfigError(field, `"${String(node)}" must be a DNS label`);
  return node;
}

/**
 * A node's etcd user, which is also its certificate's CN (etcd takes the user
 * from the CN): node-<node>, shortened past X.509's 64 characters for a CN
 * (node names are DNS labels up to 63); the role still grants the full name.
 */
// 32 hex digits (128 bits): two long node names sharing a user would share each other's rights
export const nodeUser = (node: string): string => boundedName(NODE_USER_PREFIX, node, X509_CN_MAX, 32);

/** The agent of node `node` in `cluster`: its own records, the cluster's identity allocation, and reading what it needs. */
export function nodeRole(cluster: string, node: string): RoleSpec {
  validateClusterName(cluster, 'cluster');
  validateNodeName(node);
  return {
    role: `wiremesh-node-${node}`,
    user: nodeUser(node),
    grants: [
      { permission: 'ReadWrite', key: stateKey('nodes', cluster, node) },
      { permission: 'ReadWrite', key: stateKey('gateways', cluster, node) },
      { permission: 'ReadWrite', key: stateKey('relays', cluster, node) },
      { permission: 'ReadWrite', key: healthKey(cluster, node) },
      { permission: 'ReadWrite', prefix: `${statePrefix('ip', cluster)}${node}/` },
      { permission: 'ReadWrite', prefix: identityRefsPrefix(cluster, node) },
      // shared by every agent of the cluster (allocation is a transaction over both): a residual risk
      { permission: 'ReadWrite', prefix: statePrefix('identities', cluster) },
      { permission: 'ReadWrite', prefix: identityIndexPrefix(cluster) },
      { permission: 'Read', prefix: STATE_ROOT },
      { permission: 'Read', prefix: CACHE_ROOT },
      { permission: 'Read', prefix: syncedPrefix() },
      { permission: 'Read', prefix: clusterConfigPrefix() },
      { permission: 'Read', prefix: pinnedPrefix() },
      { permission: 'Read', prefix: remoteStatusPrefix() },
      // not remotesPrefix(): it holds the credentials for remote clusters' etcds
    ],
  };
}

/** The cluster's kvstoremesh: the cache, sync markers, remote status, purge epochs, its heartbeat, identity garbage collection. */
export function kvstoremeshRole(cluster: string): RoleSpec {
  validateClusterName(cluster, 'cluster');
  return {
    role: 'wiremesh-kvstoremesh',
    user: KVSTOREMESH_USER,
    grants: [
      { permission: 'ReadWrite', prefix: CACHE_ROOT },
      { permission: 'ReadWrite', prefix: syncedPrefix() },
      { permission: 'ReadWrite', prefix: remoteStatusPrefix() },
      // the fence of each remote's copy (fence.ts): its copy transactions compare it (Read), its purges put it;
      // no other principal may write it, so nobody else can fence a replication or unfence a purged one's writes
      { permission: 'ReadWrite', prefix: epochsPrefix() },
      { permission: 'ReadWrite', key: stateKey('heartbeat', cluster, 'kvstoremesh') },
      { permission: 'Read', prefix: remotesPrefix() },
      { permission: 'Read', prefix: pinnedPrefix() },
      { permission: 'Read', prefix: clusterConfigPrefix() },
      // identity garbage collection
      { permission: 'ReadWrite', prefix: statePrefix('identities', cluster) },
      { permission: 'ReadWrite', prefix: identityIndexPrefix(cluster) },
      { permission: 'Read', prefix: identityRefsPrefix(cluster) },
    ],
  };
}

/** gateway-dns and other observers: read the cluster's and the replicated state, write nothing. */
export function observerRole(): RoleSpec {
  return {
    role: 'wiremesh-observer',
    user: OBSERVER_USER,
    grants: [
      { permission: 'Read', prefix: STATE_ROOT },
      { permission: 'Read', prefix: CACHE_ROOT },
      { permission: 'Read', prefix: syncedPrefix() },
      { permission: 'Read', prefix: pinnedPrefix() },
      { permission: 'Read', prefix: clusterConfigPrefix() },
    ],
  };
}

/** Other clusters' kvstoremesh (users remote-<cluster>, made at connect): wiremesh/state/ only. */
export function remoteReaderRole(): RoleSpec {
  return { role: REMOTE_READER_ROLE, grants: [{ permission: 'Read', prefix: STATE_ROOT }] };
}

/** etcd answers "already exists" to a repeated create (user, role, grant): that is fine here. Other errors reject. */
export async function idempotent(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!/already exists|already granted/i.test((err as Error).message)) throw err;
  }
}

/** etcd's form of a grant: [start, end) with an empty end for a single key. */
function grantRange(g: Grant): { start: string; end: string } {
  if ('key' in g) return { start: g.key, end: '' };
  // a prefix ends where the prefix with its last byte incremented begins (the etcd3 client's Range.prefix)
  const b = Buffer.from(g.prefix);
  let i = b.length - 1;
  while (i >= 0 && b[i] === 0xff) i--;
  const end = i < 0 ? Buffer.from([0]) : Buffer.concat([b.subarray(0, i), Buffer.from([b[i]! + 1])]);
  return { start: g.prefix, end: end.toString('latin1') };
}

/** The etcd3 client spells ReadWrite "Readwrite". */
const clientPermission = (p: Permission) => (p === 'ReadWrite' ? 'Readwrite' : p);

function toRequest(c: Etcd3, g: Grant): IPermissionRequest {
  const permission = clientPermission(g.permission);
  return 'key' in g ? { permission, key: g.key } : { permission, range: c.range({ prefix: g.prefix }) };
}

/**
 * Creates or updates a role to exactly `spec.grants` (extra permissions are
 * revoked, changed ones regranted), and its user with that role. Idempotent;
 * needs root credentials once auth is enabled.
 */
export async function ensureRole(c: Etcd3, spec: RoleSpec): Promise<void> {
  const role = c.role(spec.role);
  await idempotent(role.create());
  const want = new Map<string, Grant>(
    spec.grants.map((g) => {
      const r = grantRange(g);
      return [`${r.start}\u0000${r.end}`, g];
    }),
  );
  const have = new Map<string, string>(); // range id -> the client's permission name
  for (const p of await role.permissions()) {
    const id = `${p.range.start.toString('latin1')}\u0000${p.range.end.toString('latin1')}`;
    if (!want.has(id)) await role.revoke({ permission: p.permission, range: p.range });
    else have.set(id, p.permission);
  }
  for (const [id, g] of want) if (have.get(id) !== clientPermission(g.permission)) await role.grant(toRequest(c, g));
  if (spec.user) {
    // with client certificates the password is never used: a random one keeps password logins out
    await idempotent(c.user(spec.user).create(randomBytes(24).toString('base64')));
    await idempotent(c.user(spec.user).addRole(spec.role));
  }
}

/** Deletes a node's user and role (its certificate stops working). */
export async function revokeNode(c: Etcd3, cluster: string, node: string): Promise<void> {
  const spec = nodeRole(cluster, node);
  await c.user(spec.user!).delete().catch(() => undefined);
  await c.role(spec.role).delete().catch(() => undefined);
}

export interface NodeCredentials {
  caFile: string;
  certFile: string;
  keyFile: string;
  user: string;
}

/**
 * `wiremesh clustermesh node-credentials`: a CN=node-<node> certificate from the
 * cluster's CA in `pkiDir` (node.crt, node.key, ca.crt in `outDir`, keys 0600),
 * and its etcd user and role, created with `root` (operator) access.
 */
export async function issueNodeCredentials(opts: { cluster: string; node: string; pkiDir: string; outDir: string; root: EtcdOptions }): Promise<NodeCredentials> {
  const spec = nodeRole(opts.cluster, opts.node);
  if (!existsSync(join(opts.pkiDir, 'ca.key'))) throw new ConfigError('--dir', `${opts.pkiDir} has no ca.key: pass the cluster's PKI folder (clustermesh pki)`);
  mkdirSync(opts.outDir, { recursive: true, mode: 0o700 });
  const c = connectEtcd({ ...opts.root, dialTimeoutMs: opts.root.dialTimeoutMs ?? 3000 });
  try {
    await ensureRole(c, spec);
  } finally {
    c.close();
  }
  issue(opts.pkiDir, opts.outDir, 'node', spec.user!);
  const caFile = join(opts.outDir, 'ca.crt');
  copyFileSync(join(opts.pkiDir, 'ca.crt'), caFile);
  const keyFile = join(opts.outDir, 'node.key');
  chmodSync(keyFile, 0o600);
  return { caFile, certFile: join(opts.outDir, 'node.crt'), keyFile, user: spec.user! };
}
