/**
 * One node's table in admission's endpoint table (endpointstore.ts), issue 16: the KeyTable (keytable.ts) of a node
 * whose keys are all short IPv4 forms of one base (compactkeys.ts: `…/ip/v2/<cluster>/<node>/<address>`, every key
 * of an honest node) held as cells of one flat array, without the forms' strings or an object per record.
 *
 * A cell is CELL slots: the key's address (a Smi, signed 32 bits), then
 * - for a packed record (packedendpoint.ts): its name and its Profile, the rest of its fields (namespace, labels,
 *   identity, ports) as one pooled object: the pods of a workload share them. A name whose part after its last '-'
 *   is 1–5 characters of [0-9a-z] (what Kubernetes gives a Deployment's, ReplicaSet's, DaemonSet's or StatefulSet's
 *   pods: `web-7d9f8c6b5-x2kjz`, `ds-4xq8n`, `db-0`; or a whole name of 1–5 such characters) is held as that
 *   suffix's number (suffixCode, a Smi) and the part before it, with the '-', as the profile's stem (a pod name's
 *   40 B string gone) when the pool has or may take a profile of that stem (MAX_STEMS); any other name is held as
 *   its string (the profile's stem then '');
 * - for any other value (a `Held`, a record of another shape, a packed record whose address is not its key's, whose
 *   name is not a string or whose fields no profile holds: profileOf): the value, then AS_IS.
 * A packed record is 24 B here (and its name's string when not a suffix's number) where its key slot, value slot,
 * 24 B form, 64–72 B PackedEndpoint and ~40 B name took 144–152 B; the form's string is gone only when the ipcache
 * holds none either (ipcache.ts holds such an owner as its base).
 * Profiles are pooled weakly (intern.ts): one per distinct set in use (a stem is part of the set: one per workload
 * and revision, at most MAX_STEMS stems per set of the other fields), ~300 B each with its pool entry, its flat key
 * and, for a stemmed one, its count, when stems and namespaces are short; a key holds the stem's and namespace's
 * text, so with 62-character stems and 63-character namespaces (DNS labels are at most 63) a profile costs ~190 B
 * more than b5e0f4c's did (records of a set of their own each, one per node table, as the second review of s29
 * measured them: 618 B per record against 517, their name strings gone). The pool holds at most MAX_POOLED; past
 * that a new set's profile is the record's own, without a stem (64 B, shared with no other; the name held as its
 * string unless it is a whole name of 1–5 such characters), so a cluster giving every record a set of its own pays
 * ~180 B per record past the pool (b5e0f4c ~170: the first review's driver, 16 per node), and ~10.1 MB (10^6 B) for
 * 16,384 records filling the pool (b5e0f4c ~8.5 MB; that many node tables take several remotes, each ≤ 5,000
 * nodes), after which a new honest set shares nothing until entries are reaped. docs/security.md has the table.
 *
 * The functions are KeyTable's, with the same answers (test/unit/nodecells.test.ts against a Map):
 * they take a table and return the one to keep; `undefined` is the empty table; entries iterate in insertion order
 * (a changed value keeps its place). A key that is not a short form of the node's base, or a table past SMALL_MAX
 * entries, turns the table into a KeyTable (its values and order kept); a change that leaves a KeyTable an array
 * whose keys could be cells turns it back into cells. A read gives a packed record back as a new PackedEndpoint, equal field
 * by field (readers compare records by content: packedendpoint.ts), a key as its form made again (a new 24 B
 * string) and a name held as its suffix's number made again too (stem + suffixOf: a new string per read). Cost:
 * O(entries) per lookup or change, as KeyTable's array form (≤ SMALL_MAX), plus the pool's key made per change and
 * the name per read: 1.5–1.6× KeyTable-array cells' time per operation (bench/nodecells.ts, docs/benchmarks.md s29).
 */
import { formAddress, formBase, isShortIPv4Form, shortIPv4Form } from '../controlplane/compactkeys.js';
import { ktDelete, ktEntries, ktGet, ktKeys, ktSet, ktSize, SMALL_MAX, type KeyTable } from './keytable.js';
import { packedOf, PackedEndpoint } from './packedendpoint.js';
import type { EndpointRecord } from '../controlplane/endpointrecords.js';
import { internName, WeakPool } from '../controlplane/records/intern.js';
import { valueDigest } from '../controlplane/valuedigest.js';

const CELL = 3;
/** In a cell's profile slot: the cell holds a value as it is (slot 1), not a packed record. */
const AS_IS = Symbol('as-is');

/** A packed record's fields but its address and name, shared by the records that have them all alike. */
class Profile {
  constructor(
    /** What a name held as a suffix's number starts with (see the file's comment). */
    readonly stem: string,
    readonly namespace: string,
    readonly labels: EndpointRecord['labels'],
    readonly identity: number,
    readonly ports: EndpointRecord['ports'],
  ) {}
}

const profiles = new WeakPool<Profile>((key) => {
  // a stemmed profile collected: its set's count of stems (MAX_STEMS) goes down
  const stem = stemOfKey(key);
  if (stem === undefined) return;
  const h = hashOf(key.slice(0, stem.at) + '0/' + key.slice(stem.end));
  const n = (stemsOf.get(h) ?? 1) - 1;
  if (n > 0) stemsOf.set(h, n);
  else stemsOf.delete(h);
});
/** Profiles pooled at most (live or not yet reaped): distinct workloads × namespaces an honest mesh has, and more. */
export const MAX_POOLED = 16_384;
/** A number per labels or ports object, for the pool's key (those objects are interned: one per content). */
const ids = new WeakMap<object, number>();
let lastId = 0;
function idOf(o: object): number {
  let i = ids.get(o);
  if (i === undefined) ids.set(o, (i = ++lastId));
  return i;
}

/** Profiles in the pool (live or not yet reaped): ≤ MAX_POOLED. */
export const pooledProfiles = (): number => profiles.size;

/**
 * Stemmed profiles pooled at most per set of the other fields (live or not yet reaped): with a `pod-template-hash`
 * label each revision of a workload is a set of its own (one stem); without it a rollout has 2–3 stems at once,
 * and 8 leaves room. Past it, a name of a new stem is held as its string with the stem-less profile: names whose
 * stem is each pod's own (a second generated part, `<set>-<5>-runner-<5>`) or a hostile cluster's take at most 8
 * pool entries per set and then cost what a string name costs, not a pooled profile each (review of s29).
 */
export const MAX_STEMS = 8;
/**
 * Live stemmed profiles per set of the other fields, by a keyed hash of its stem-less key (valueDigest's low 30
 * bits, a Smi on every 64-bit V8: no key string or heap number per entry); counted down when the pool's reaper runs for one (a FinalizationRegistry callback, some time after the
 * GC, and not promised to run: a count left high only holds more names as strings), the entry gone at 0. Two sets
 * sharing a hash share a count: one may meet the bound early, and its new stems' names are then held as strings
 * (their saving lost; nothing read back otherwise).
 */
const stemsOf = new Map<number, number>();
const hashOf = (s: string): number => valueDigest(s) % 2 ** 30;

/** Where a pool key's stem is (`${fields}${len}/${stem}${namespace}`, fields three numbers each ending in '/'), or undefined when it has none. */
function stemOfKey(key: string): { at: number; end: number } | undefined {
  let at = -1;
  for (let k = 0; k < 3; k++) at = key.indexOf('/', at + 1);
  const slash = key.indexOf('/', at + 1);
  const len = Number(key.slice(at + 1, slash));
  return len > 0 ? { at: at + 1, end: slash + 1 + len } : undefined;
}

/**
 * The Profile of a packed record's fields with stem `stem` when one is pooled or may be (MAX_POOLED, MAX_STEMS),
 * else the one without a stem (pooled, or its own past MAX_POOLED): the caller holds the name as its suffix's number
 * only when the profile's stem is `stem`. Undefined when its namespace is not a string, its labels or ports not
 * objects, or its identity not an integer or -0 (then it is held as is).
 */
function profileOf(p: PackedEndpoint, stem: string): Profile | undefined {
  const ports = (p as { ports?: EndpointRecord['ports'] }).ports;
  if (typeof p.namespace !== 'string' || typeof p.labels !== 'object' || p.labels === null || (ports !== undefined && (typeof ports !== 'object' || ports === null))) return undefined;
  // an integer's text is the integer's alone (-0 would write as 0: packEndpoint refuses it; so does this)
  if (!Number.isInteger(p.identity) || Object.is(p.identity, -0)) return undefined;
  // the stem by its length, then the namespace last: the numbers hold no '/', so no two field sets share a key
  const fields = `${p.identity}/${idOf(p.labels)}/${ports === undefined ? 0 : idOf(ports)}/`;
  const key = `${fields}${stem.length}/${stem}${p.namespace}`;
  const hit = profiles.get(key);
  if (hit !== undefined) return hit;
  if (stem !== '') {
    const h = hashOf(`${fields}0/${p.namespace}`);
    const n = stemsOf.get(h) ?? 0;
    if (n >= MAX_STEMS || profiles.size >= MAX_POOLED) return profileOf(p, '');
    // the key a flat copy of its own (internName) and the stem a slice of it (V8 copies a slice under 13
    // characters: cheap): a slice of the name, or a key built from one (a template's cons string keeps its pieces),
    // keeps the first record's whole name (review of s29: 440 B per profile, not 280), and a copy of the stem would
    // hold its text twice (second review: ~40–50 B more per profile with 62-character stems)
    const flat = internName(key);
    const end = flat.length - p.namespace.length;
    stemsOf.set(h, n + 1);
    return profiles.intern(flat, new Profile(flat.slice(end - stem.length, end), p.namespace, p.labels, p.identity, ports));
  }
  const made = new Profile('', p.namespace, p.labels, p.identity, ports);
  // flat too: one string per key, not a template's tree of pieces
  return profiles.size < MAX_POOLED ? profiles.intern(internName(key), made) : Object.freeze(made);
}

/**
 * A node's entries as cells (see the file's comment): the cells are the array's own elements, exactly sized (a
 * subclass of Array: 30 B per node less than an object holding an array, s37). Its species is Array: its
 * constructor takes (base, length), not Array's arguments, so slice, concat or filter must make plain arrays,
 * not a NodeCells of a wrong base; tables are made by `made`.
 */
export class NodeCells extends Array<unknown> {
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }

  /** Array's own makers would call the constructor with Array's arguments (a NodeCells of a wrong base): refused. */
  static override from(): never {
    throw new TypeError('NodeCells.from: tables are made by NodeCells.made');
  }

  static override of(): never {
    throw new TypeError('NodeCells.of: tables are made by NodeCells.made');
  }

  /**
   * How many of its keys have an admitted value: its owner's count (EndpointStore.setCount writes it on the table
   * each change leaves, ntSet and ntDelete making a new one at 0).
   */
  admitted = 0;

  /** `length` slots (CELL per entry, in insertion order), each written by `made`. */
  private constructor(
    /** The base index every key's form has. */
    readonly base: number,
    length: number,
  ) {
    super(length);
  }

  /** A new, exactly sized table of base `base`: `from`'s slots without the CELL starting at `drop` (a cell's first slot; -1: keep all), then `add`'s. */
  static made(base: number, from: ArrayLike<unknown>, drop = -1, add: readonly unknown[] = []): NodeCells {
    const cut = drop < 0 ? from.length : drop;
    const rest = drop < 0 ? from.length : drop + CELL;
    const t = new NodeCells(base, cut + (from.length - rest) + add.length);
    let o = 0;
    for (let i = 0; i < cut; i++) t[o++] = from[i];
    for (let i = rest; i < from.length; i++) t[o++] = from[i];
    for (let i = 0; i < add.length; i++) t[o++] = add[i];
    return t;
  }
}

export type NodeTable = KeyTable<unknown> | NodeCells;

/** Suffix characters, a digit each (1–36: no zero digit, so a code's digits give back its length too). */
const DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz';
const RADIX = DIGITS.length + 1;
/** Longest suffix held as a number: 37^5 - 1 < 2^30, a Smi on every 64-bit V8. */
const SUFFIX_MAX = 5;

/** The number of `s` (1–SUFFIX_MAX characters of DIGITS), or -1 when it is not one. */
export function suffixCode(s: string, from: number): number {
  const n = s.length - from;
  if (n < 1 || n > SUFFIX_MAX) return -1;
  let code = 0;
  for (let i = s.length - 1; i >= from; i--) {
    const c = s.charCodeAt(i);
    const d = c >= 48 && c <= 57 ? c - 47 : c >= 97 && c <= 122 ? c - 86 : 0;
    if (d === 0) return -1;
    code = code * RADIX + d;
  }
  return code;
}

/** A digit's character code. */
const charOf = (d: number): number => (d < 11 ? d + 47 : d + 86);

/** The suffix whose number is `code` (> 0): suffixCode's inverse, as one string (no string per character). */
export function suffixOf(code: number): string {
  const a = code % RADIX;
  if ((code = (code - a) / RADIX) === 0) return String.fromCharCode(charOf(a));
  const b = code % RADIX;
  if ((code = (code - b) / RADIX) === 0) return String.fromCharCode(charOf(a), charOf(b));
  const c = code % RADIX;
  if ((code = (code - c) / RADIX) === 0) return String.fromCharCode(charOf(a), charOf(b), charOf(c));
  const d = code % RADIX;
  if ((code = (code - d) / RADIX) === 0) return String.fromCharCode(charOf(a), charOf(b), charOf(c), charOf(d));
  return String.fromCharCode(charOf(a), charOf(b), charOf(c), charOf(d), charOf(code));
}

/** The cell of (key address, value): a packed record only when its own address is the key's (one number for both). */
function cell(address: number, v: unknown): unknown[] {
  const ip = address | 0;
  if (!(v instanceof PackedEndpoint) || v.ip !== ip || typeof v.name !== 'string') return [ip, v, AS_IS];
  const dash = v.name.lastIndexOf('-') + 1;
  const code = suffixCode(v.name, dash);
  const stem = code < 0 ? '' : v.name.slice(0, dash);
  const profile = profileOf(v, stem);
  return profile === undefined ? [ip, v, AS_IS] : [ip, code < 0 || profile.stem !== stem ? v.name : code, profile];
}

/** Cell `i`'s value (a packed record as a new PackedEndpoint). */
function valueAt(t: NodeCells, i: number): unknown {
  const p = t[i + 2];
  if (!(p instanceof Profile)) return t[i + 1];
  const n = t[i + 1];
  const name = typeof n === 'number' ? p.stem + suffixOf(n) : (n as string);
  return packedOf(t[i] as number, p.namespace, name, p.labels, p.identity, p.ports);
}

const keyAt = (t: NodeCells, i: number): string => shortIPv4Form(t.base, (t[i] as number) >>> 0);

/** The index of `key`'s cell, -1 when it has none (a key of another shape or base: none). */
function find(t: NodeCells, key: string): number {
  if (!isShortIPv4Form(key) || formBase(key) !== t.base) return -1;
  const ip = formAddress(key) | 0;
  for (let i = 0; i < t.length; i += CELL) if (t[i] === ip) return i;
  return -1;
}

/** `t` as a KeyTable array (keys as their forms, packed records as PackedEndpoints), same order. */
function toKeyTable(t: NodeCells): unknown[] {
  const out: unknown[] = [];
  for (let i = 0; i < t.length; i += CELL) out.push(keyAt(t, i), valueAt(t, i));
  return out;
}

/** A KeyTable as cells when it is an array whose keys are all short forms of one base; else itself. */
function compact(t: KeyTable<unknown> | undefined): NodeTable | undefined {
  if (t === undefined || t instanceof Map || t.length === 0) return t;
  const k0 = t[0] as string;
  if (!isShortIPv4Form(k0)) return t;
  const base = formBase(k0);
  // every key first: a table that stays a KeyTable (one key of another base among 32) builds no cell
  for (let i = 2; i < t.length; i += 2) if (!isShortIPv4Form(t[i] as string) || formBase(t[i] as string) !== base) return t;
  const cells: unknown[] = [];
  for (let i = 0; i < t.length; i += 2) cells.push(...cell(formAddress(t[i] as string), t[i + 1]));
  return NodeCells.made(base, cells);
}

export function ntGet(t: NodeTable | undefined, key: string): unknown {
  if (!(t instanceof NodeCells)) return ktGet(t, key);
  const i = find(t, key);
  return i < 0 ? undefined : valueAt(t, i);
}

/** The table with `key` set to `value`. */
export function ntSet(t: NodeTable | undefined, key: string, value: unknown): NodeTable {
  if (t === undefined && isShortIPv4Form(key)) return NodeCells.made(formBase(key), cell(formAddress(key), value));
  if (!(t instanceof NodeCells)) return compact(ktSet(t, key, value))!;
  const i = find(t, key);
  if (i >= 0) {
    const c = cell(formAddress(key), value);
    for (let j = 0; j < CELL; j++) t[i + j] = c[j];
    return t;
  }
  // another base or shape, or past the array form's size: the KeyTable it stands for, changed
  if (!isShortIPv4Form(key) || formBase(key) !== t.base || t.length / CELL >= SMALL_MAX) return ktSet(toKeyTable(t), key, value);
  return NodeCells.made(t.base, t, -1, cell(formAddress(key), value)); // exactly sized
}

/** The table without `key`; undefined once empty. */
export function ntDelete(t: NodeTable | undefined, key: string): NodeTable | undefined {
  if (!(t instanceof NodeCells)) return compact(ktDelete(t, key));
  const i = find(t, key);
  if (i < 0) return t;
  if (t.length === CELL) return undefined;
  return NodeCells.made(t.base, t, i);
}

export function ntSize(t: NodeTable | undefined): number {
  return t instanceof NodeCells ? t.length / CELL : ktSize(t);
}

export function* ntKeys(t: NodeTable | undefined): IterableIterator<string> {
  if (!(t instanceof NodeCells)) {
    yield* ktKeys(t);
    return;
  }
  for (let i = 0; i < t.length; i += CELL) yield keyAt(t, i);
}

/**
 * Entries in insertion order; with `namespace`, a packed record's cell of another namespace is skipped before
 * anything is built for it (a value held as it is comes whatever its namespace: the caller filters those).
 */
export function* ntEntries(t: NodeTable | undefined, namespace?: string): IterableIterator<[string, unknown]> {
  if (!(t instanceof NodeCells)) {
    yield* ktEntries(t);
    return;
  }
  for (let i = 0; i < t.length; i += CELL) {
    const p = t[i + 2];
    if (namespace !== undefined && p instanceof Profile && p.namespace !== namespace) continue;
    yield [keyAt(t, i), valueAt(t, i)];
  }
}
