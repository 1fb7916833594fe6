/**
 * One codec per etcd record type: the only place a stored value becomes a
 * typed object. Every reader (kvstoremesh ingest, agent sinks, gateway-dns,
 * `clustermesh status`, `policy trace`) decodes through these, so a value is
 * checked once per key type, the same way everywhere (docs/security.md).
 *
 * decode(key, value) checks, in order: size (before any parsing: a 1 MB value
 * costs nothing), JSON, the schema (zod), then what the key says against what
 * the value says (a record must live under its own cluster and name). It
 * throws RecordError, never anything else: callers reject that one record and
 * go on.
 */
import type { z } from 'zod';
import { RecordError, type RecordType, type RejectReason } from '../../errors.js';
import type { FastPath } from './fast.js';

// The record types and refusal reasons are part of the error catalogue (they label RecordError and metrics).
export type { RecordType, RejectReason };

// The class lives in the error catalogue; exported here too, next to its types.
export { RecordError };

export interface Codec<T> {
  readonly type: RecordType;
  /** Values longer than this (UTF-8 bytes) are refused unparsed. */
  readonly maxBytes: number;
  /** Throws RecordError. */
  decode(key: string, value: string): T;
  encode(v: T): string;
}

/** The default byte limit; policies and services allow more (codecs say so). */
export const DEFAULT_MAX_BYTES = 64 * 1024;

/**
 * A JSON codec from a zod schema (which also normalises: unknown fields are
 * dropped). check(key, v) compares the key with the value and returns why
 * they disagree, or undefined. fast (fast.ts) answers the schema's output for
 * the values it can vouch for without zod; anything it leaves goes to zod.
 */
export function jsonCodec<T>(
  type: RecordType,
  schema: z.ZodType<T>,
  opts: { maxBytes?: number; check?: (key: string, v: T) => string | undefined; encode?: (v: T) => string; fast?: FastPath<T> } = {},
): Codec<T> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const fast = opts.fast;
  return {
    type,
    maxBytes,
    decode(key, value) {
      const raw = parseJson(type, key, value, maxBytes);
      let data = fast?.(raw);
      if (data === undefined) {
        const r = schema.safeParse(raw);
        if (!r.success) throw new RecordError(type, key, 'schema', describeIssue(r.error));
        data = r.data;
      }
      const why = opts.check?.(key, data);
      if (why) throw new RecordError(type, key, 'key', why);
      return data;
    },
    encode: opts.encode ?? ((v) => JSON.stringify(v)),
  };
}

/** Size, then JSON.parse, as every codec does first. */
export function parseJson(type: RecordType, key: string, value: string, maxBytes: number): unknown {
  if (typeof value !== 'string') throw new RecordError(type, key, 'schema', 'value is not text');
  // a string's UTF-8 length is at most 3 bytes per UTF-16 unit: most values need no count
  if (value.length * 3 > maxBytes) {
    const n = Buffer.byteLength(value);
    if (n > maxBytes) throw new RecordError(type, key, 'too-large', `${n} bytes (limit ${maxBytes})`);
  }
  try {
    const v: unknown = JSON.parse(value);
    return v;
  } catch {
    throw new RecordError(type, key, 'not-json', `not a JSON document (${JSON.stringify(value.slice(0, 40))}…)`);
  }
}

function describeIssue(err: z.ZodError): string {
  const i = err.issues[0];
  if (!i) return 'invalid';
  const path = i.path.length ? i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') : '(value)';
  return `${path}: ${i.message}`;
}

/** Runs decode and hands back the RecordError instead of throwing (anything else is a bug, also caught). */
export function tryDecode<T>(codec: Codec<T>, key: string, value: string): { ok: true; value: T } | { ok: false; error: RecordError } {
  try {
    return { ok: true, value: codec.decode(key, value) };
  } catch (err) {
    if (err instanceof RecordError) return { ok: false, error: err };
    return { ok: false, error: new RecordError(codec.type, key, 'schema', `decoder failed: ${(err as Error).message}`) };
  }
}
