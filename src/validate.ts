/**
 * The validation toolkit for what users write: node.yaml, manifests, testbed
 * topologies, the gateway DNS config, agent API bodies and CLI flags. Every
 * check takes the value and its field path (`spec.ingress[0].toPorts[0]`,
 * `gateway.listeners[1].listenPort`), returns the value typed, and throws
 * ConfigError (WM_CONFIG_INVALID: CLI exit status 2, agent API 400) naming
 * that path and the reason.
 *
 * Plain functions rather than zod schemas: the records in etcd are decoded by
 * zod (src/controlplane/records), where a refusal is counted, not read; here
 * the reason is read by a person, and each message is worded for its field
 * (callers may pass their own). The patterns are the records' (fields.ts), so
 * a name accepted here is one a record accepts.
 */
import { ConfigError } from './errors.js';
import { parseIP, parsePrefix, type Prefix } from './net/ip.js';
import { CLUSTER_NAME_RE } from './controlplane/records/fields.js';

export type Obj = Record<string, unknown>;

/** A mapping: an object, not null, not an array. */
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function fail(path: string, reason: string): never {
  throw new ConfigError(path, reason);
}

export function obj(v: unknown, path: string, reason = 'must be a mapping'): Obj {
  if (!isObj(v)) fail(path, reason);
  return v;
}

export function list(v: unknown, path: string, reason = 'must be a list'): unknown[] {
  if (!Array.isArray(v)) fail(path, reason);
  return v;
}

export function nonEmptyList(v: unknown, path: string, reason = 'must be a non-empty list'): unknown[] {
  if (!Array.isArray(v) || v.length === 0) fail(path, reason);
  return v;
}

/** A non-empty string. */
export function str(v: unknown, path: string, reason = 'must be a non-empty string'): string {
  if (typeof v !== 'string' || v === '') fail(path, reason);
  return v;
}

/** A non-empty list of non-empty strings. */
export function strList(v: unknown, path: string): string[] {
  return nonEmptyList(v, path).map((x, i) => str(x, `${path}[${i}]`));
}

/** An integer in min..max; `dflt` when absent (undefined) if given; `hint` is added to the reason in parentheses. */
export function int(v: unknown, path: string, min: number, max: number, dflt?: number, hint?: string): number {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(path, `must be an integer in ${min}..${max}${hint ? ` (${hint})` : ''}`);
  return v;
}

export function bool(v: unknown, path: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') fail(path, 'must be true or false');
  return v;
}

/** One of `allowed` (compared as is); the reason defaults to "must be one of A, B, C". */
export function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[], reason = `must be one of ${allowed.join(', ')}`): T {
  if (!(allowed as readonly unknown[]).includes(v)) fail(path, reason);
  return v as T;
}

/**
 * Refuses a key of `o` not in `allowed`, at path.key (key alone at the root,
 * path ''): "unknown field (LEAD a, b, c)". LEAD is how the file type has
 * always said it: "expected", "expected one of", "allowed:".
 */
export function onlyFields(o: Obj, path: string, allowed: readonly string[], lead = 'expected'): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(path ? `${path}.${k}` : k, `unknown field (${lead} ${allowed.join(', ')})`);
}

/**
 * A prefix as text ("100.64.0.0/10"); `reason` when it is not a string (or,
 * with `needLength`, has no "/"); parsePrefix's reasons for a bad address or
 * length.
 */
export function cidr(v: unknown, path: string, reason = 'must be a CIDR like 100.64.0.0/10', needLength = true): Prefix {
  if (typeof v !== 'string' || (needLength && !v.includes('/'))) fail(path, reason);
  return parsePrefix(v, path);
}

/** An etcd client URL: http(s)://host:port, no path. */
export function etcdEndpoint(v: unknown, path: string): string {
  if (typeof v !== 'string' || !/^https?:\/\/[^/]+$/.test(v)) fail(path, `"${String(v)}" must be http(s)://host:port`);
  return v;
}

export function validateClusterName(name: unknown, field = 'cluster.name'): string {
  if (typeof name !== 'string' || !CLUSTER_NAME_RE.test(name))
    fail(field, `"${String(name)}" must be 1-32 characters of lowercase letters, digits and "-", starting and ending with a letter or digit`);
  return name;
}

/** Cluster ids 1..255 (docs/architecture.md). */
/** A cluster id: 1..255, or 1..511 in a mesh configured for 511 clusters (maxClusters). */
export function validateClusterId(id: unknown, field = 'cluster.id', maxClusters: 255 | 511 = 255): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > maxClusters) fail(field, `${String(id)} must be an integer in 1..${maxClusters}`);
  return id;
}

/** One prefix or a non-empty list of them, each with its length ("/24"). */
export function validatePrefixes(v: unknown, field: string): Prefix[] {
  const items = Array.isArray(v) ? v : [v];
  if (items.length === 0) fail(field, 'at least one CIDR is required');
  return items.map((x, i) => {
    if (typeof x !== 'string') fail(`${field}[${i}]`, 'must be a CIDR string');
    const p = parsePrefix(x, `${field}[${i}]`);
    if (!x.includes('/')) fail(`${field}[${i}]`, `"${x}" needs a prefix length`);
    return p;
  });
}

/** An IP address (v4 or v6) as text; returned as given. */
export function validateAddress(v: unknown, field: string): string {
  if (typeof v !== 'string' || !parseIP(v)) fail(field, `"${String(v)}" is not an IP address`);
  return v;
}

/**
 * A `metrics: { address, port }` section (a Prometheus endpoint: agent node.yaml, gateway-dns): address required,
 * port 1-65535 (default 9962). `example` names the address to give, for the error.
 */
export function metricsListen(m: Obj, example: string): { address: string; port: number } {
  onlyFields(m, 'metrics', ['address', 'port']);
  if (m.address === undefined) throw new ConfigError('metrics.address', `required (the address Prometheus scrapes, e.g. ${example})`);
  return { address: validateAddress(m.address, 'metrics.address'), port: int(m.port, 'metrics.port', 1, 65535, 9962) };
}
