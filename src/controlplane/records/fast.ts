/**
 * Hand-written fast paths for the zod schemas of the records kvstoremesh copies
 * most (nodes, endpoints, identities): during churn every write of every remote
 * is decoded once per kvstoremesh, and the zod parse was ~24 % of its thread.
 *
 * A fast path never decides a refusal. It answers the schema's own output for a
 * value it has checked field by field with the schema's own predicates
 * (fields.ts: the same regular expressions, limits and canonical-form tests),
 * or undefined for anything else, and then the zod schema decides and explains
 * (jsonCodec). So the codec accepts exactly what zod accepts, and yields the
 * same object: shape keys in shape order, unknown keys dropped, optional keys
 * only when present, fresh arrays and label objects
 * (test/unit/records-fast.test.ts checks it against zod on seeded random and
 * mutated records).
 */
import { CLUSTER_NAME_RE, DNS_LABEL_RE, isCanonicalIP, isCidr, LABEL_VALUE_RE, MAX_LABELS, NODE_NAME_RE } from './fields.js';

/** The schema's output for `raw`, or undefined: the zod schema decides. */
export type FastPath<T> = (raw: unknown) => T | undefined;

/** A JSON object as z.object takes it: not null, not an array. */
export function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export const isClusterName = (v: unknown): v is string => typeof v === 'string' && CLUSTER_NAME_RE.test(v);
export const isNodeName = (v: unknown): v is string => typeof v === 'string' && v.length >= 1 && v.length <= 253 && NODE_NAME_RE.test(v);
export const isDnsLabel = (v: unknown): v is string => typeof v === 'string' && DNS_LABEL_RE.test(v);

/** An integer in [min, max] (z.number().int().min().max(), bounds within the safe range). */
export function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/**
 * Canonical dotted quads: parseIP takes them and formatIP gives them back unchanged, so isCanonicalIP holds
 * without building a Buffer. Anything else (IPv6, or text this does not match) goes through isCanonicalIP.
 */
const CANONICAL_IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
/** IPv4 prefixes parsePrefix takes (a prefix length of 0-32 without leading zeros); others go through isCidr. */
const IPV4_PREFIX = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\/(?:3[0-2]|[12]?\d)$/;

export const isIP = (v: unknown): v is string => typeof v === 'string' && v.length <= 64 && (CANONICAL_IPV4.test(v) || isCanonicalIP(v));
export const isPrefix = (v: unknown): v is string => typeof v === 'string' && v.length <= 64 && (IPV4_PREFIX.test(v) || isCidr(v));

/** A fresh copy of `v` when it is an array of min..max items that all pass `item`, else undefined. */
export function arrayOf<T>(v: unknown, min: number, max: number, item: (x: unknown) => x is T): T[] | undefined {
  if (!Array.isArray(v) || v.length < min || v.length > max) return undefined;
  for (let i = 0; i < v.length; i++) if (!item(v[i])) return undefined;
  return v.slice() as T[];
}

/**
 * A fresh label set (keys in the input's order) when every key passes `keyOk`, every value LABEL_VALUE_RE and
 * there are at most MAX_LABELS, else undefined. `__proto__` never passes a key test here: z.record skips it
 * silently, so such a set is left to zod.
 */
export function labelSet(v: unknown, keyOk: (k: string) => boolean): Record<string, string> | undefined {
  if (!isObj(v)) return undefined;
  const out: Record<string, string> = {};
  let n = 0;
  for (const k of Object.keys(v)) {
    const x = v[k];
    if (k === '__proto__' || !keyOk(k) || typeof x !== 'string' || !LABEL_VALUE_RE.test(x)) return undefined;
    out[k] = x;
    n++;
  }
  return n <= MAX_LABELS ? out : undefined;
}
