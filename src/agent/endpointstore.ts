/**
 * Admission's endpoint state in one table (issue 16, bench/memory.ts): the
 * candidate record of each endpoint key, the value admitted for it, and the
 * keys of each node — formerly three maps with an entry per endpoint each
 * (candidates, admitted, endpoints by node: ~135 B per endpoint), now one
 * entry in a per-node map.
 *
 * Shape: node id ("cluster/node", taken from the key
 * `…/ip/v2/<cluster>/<node>/<ip>`) → endpoint key → value, where the value is
 * - the record itself when it is both the candidate and the admitted value
 *   (the common case), and its `cluster` is the cluster it came from: packed
 *   (packedendpoint.ts: 64 B where the record and its address string take
 *   ~112 B) when it has the codec's shape, so that every read builds an equal
 *   record anew (readers compare records by content, never by `===`);
 * - a `Held` otherwise (not admitted yet, refused, an older value still in
 *   force, or a record naming another cluster than its source).
 *
 * The node id comes from the key so that `remove(key)` finds the entry
 * without its record; the endpoint codec refuses a record whose node differs
 * from its key's, and admission refuses such a record again (fail closed,
 * `nodeIdOf`). Keys that are not endpoint keys share the bucket "".
 * A node's table is a flat array while it holds ≤ 32 endpoints, a Map above
 * (src/agent/keytable.ts: ~31 B per endpoint less than a Map at 10 per node),
 * and the array is cells without the keys' strings or a PackedEndpoint each
 * while its keys are short IPv4 forms of one base (nodecells.ts: 24 B per
 * packed record and its share of a pooled profile, where the array form took
 * 104–112).
 */
import { cachePrefix, statePrefix } from '../controlplane/keys.js';
import { CompactKeys } from '../controlplane/compactkeys.js';
import { admittedView, Held, type Candidate } from './admissionslots.js';
import { internName } from '../controlplane/records/intern.js';
import { NodeCells, ntDelete, ntEntries, ntGet, ntKeys, ntSet, type NodeTable } from './nodecells.js';
import { packEndpoint, PackedEndpoint, shallowSame, unpackEndpoint } from './packedendpoint.js';
import type { EndpointRecord } from '../controlplane/records/index.js';

export type { Candidate } from './admissionslots.js';

/**
 * The node id an endpoint key's text names ("cluster/node"), or "" when it is not an endpoint key. Throws on a
 * key form (compactkeys.ts: starts with a character ≤ \x02), which would read as "" and file the key under no
 * node: a form's node is EndpointStore.nodeOf's.
 */
export function nodeIdOf(key: string): string {
  if (key.length > 0 && key.charCodeAt(0) <= 2) throw new Error('nodeIdOf: a key form, not a key text (EndpointStore.nodeOf)');
  // what stateLocation + the codec's split give, without their allocations: it runs several times per record
  const p = PREFIXES.find((x) => key.startsWith(x));
  if (p === undefined) return '';
  const c = key.indexOf('/', p.length);
  const last = key.lastIndexOf('/');
  return c > p.length && last > c + 1 ? key.slice(p.length, last) : '';
}
const PREFIXES = [statePrefix('ip'), cachePrefix('ip')];

/**
 * nodeIdOf of a base `<prefix><tail>/` (the prefix one of PREFIXES, the first it starts with), from its tail alone:
 * the tail itself when it reads `<cluster>/<node…>` with both parts non-empty (its first '/' at index ≥ 1 and not
 * its last character), else "" (as nodeIdOf).
 */
function idOfTail(tail: string): string {
  const c = tail.indexOf('/');
  return c > 0 && tail.length > c + 1 ? tail : '';
}

export class EndpointStore {
  private readonly byNode = new Map<string, NodeTable>();
  /** Keys with an admitted value (the size of `records`). */
  private admittedCount = 0;
  /**
   * Keys with an admitted value per node whose table is not NodeCells (which counts its own: `admitted`): a node past
   * the cells' size (32 endpoints) or with keys of another shape (IPv6 endpoints, a form kept plain). No entry at 0.
   * EndpointQuota reads these counts (admittedOfNodeCount), where it kept a Map entry for every node with admitted
   * endpoints (issue 16): never more entries than that, none for a node in cells (the bench's 10 per node).
   */
  private readonly otherCounts = new Map<string, number>();
  /**
   * The forms its keys come in (compactkeys.ts: the watch, this table and the data path hold an endpoint key as
   * ~32 B instead of its ~100 B of text); a compact key's node is read from its base's tail, the node id itself (the
   * same interned string this table's byNode keys the node by), no text built.
   */
  readonly forms = new CompactKeys({ prefixes: PREFIXES });

  /**
   * The node id of endpoint key `key` (its text or its form), as nodeIdOf. Throws on a compact form whose base is not
   * held (CompactKeys.tail, then .base). A compact form's base under an endpoint prefix is held as its tail, which is
   * the node id itself when nodeIdOf would find one in it (idOfTail): read without a string made.
   */
  nodeOf(key: string): string {
    const tail = this.forms.tail(key);
    return tail !== undefined ? idOfTail(tail) : this.nodeOfText(this.forms.base(key));
  }

  /** nodeOf, or undefined for a form whose base is released: a key no entry holds (the records view's lookups). */
  private nodeOfHeld(key: string): string | undefined {
    return this.forms.holds(key) ? this.nodeOf(key) : undefined;
  }

  /**
   * nodeOf's last answer for a base read as text (text → id, compared by content: plain forms, and compact ones whose
   * base has no prefix), so a node's keys in a row read one base text once.
   */
  private lastText = '';
  private lastId = '';

  private nodeOfText(text: string): string {
    if (text === this.lastText) return this.lastId;
    // an escaped form's text may start with a control character: no endpoint key does
    const id = text.length > 0 && text.charCodeAt(0) <= 2 ? '' : nodeIdOf(text);
    this.lastText = text;
    this.lastId = id;
    return id;
  }

  /** The admitted value of `key` (its text or any form, held or released), or undefined. */
  admittedIfHeld(key: string): unknown {
    const id = this.nodeOfHeld(key);
    return id === undefined ? undefined : admittedIn(ntGet(this.byNode.get(id), key), id);
  }

  /** The candidate table's view (records by key, with their source cluster). */
  readonly candidates = {
    get: (key: string): Candidate<unknown> | undefined => {
      const id = this.nodeOf(key);
      const v = unpacked(ntGet(this.byNode.get(id), key), id);
      if (v === undefined) return undefined;
      if (!(v instanceof Held)) return { cluster: (v as { cluster: string }).cluster, rec: v };
      return v.cand === undefined ? undefined : { cluster: v.cluster, rec: v.cand };
    },
    set: (key: string, cluster: string, rec: unknown): void => this.put(key, cluster, rec, this.admittedOf(key)),
    delete: (key: string): void => {
      const v = this.raw(key);
      if (v !== undefined) this.put(key, '', undefined, this.admittedOf(key));
    },
    [Symbol.iterator]: (): IterableIterator<[string, Candidate<unknown>]> => this.entries(),
  };

  /** The admitted table's view (the value in force by key). */
  readonly admitted = admittedView<unknown>(
    this.candidates.get,
    (key) => this.admittedOf(key),
    (key, cluster, cand, admitted) => this.put(key, cluster, cand, admitted),
    () => [...this.admittedWalk((k) => k)],
  );

  /**
   * The admitted values by key, as a read-only Map: the one table of endpoint records the agent keeps (the policy
   * data path, the services' index and registration read it; issue 16: no Map of their own, ~46 B per endpoint).
   * Its order is admittedWalk's (by node, then as keys came; a changed value keeps its place); it changes as admission
   * decides, before the sinks hear of the change.
   */
  readonly records: ReadonlyMap<string, unknown> = new AdmittedRecords(this);

  /** Keys whose key names node `nodeId` ("cluster/node"), snapshot (callers change the table meanwhile). */
  keysOfNode(nodeId: string): string[] {
    return [...ntKeys(this.byNode.get(nodeId))];
  }

  /** How many keys of node `nodeId` ("cluster/node") have an admitted value. */
  admittedOfNodeCount(nodeId: string): number {
    return countIn(this.byNode.get(nodeId), this.otherCounts, nodeId);
  }

  /** How many keys have an admitted value. */
  get admittedSize(): number {
    return this.admittedCount;
  }

  /**
   * Every key with its admitted value (`pick`'s of each: no pair made where a reader wants one half): nodes in the
   * order their first key came (a node whose keys all went and came back goes last), each node's keys in the order
   * they came. Callers must not change the table during a walk: a change may be seen or missed, and a key withdrawn
   * and admitted again meanwhile may be seen twice.
   */
  *admittedWalk<T>(pick: (key: string, value: unknown) => T): IterableIterator<T> {
    for (const id of this.byNode.keys()) yield* this.admittedOfNode(id, pick);
  }

  /**
   * The admitted values of node `nodeId`'s keys through `pick`, in the order its keys came (none: no such node); with
   * `namespace`, only the records of that namespace (a packed one tested before it is unpacked).
   */
  *admittedOfNode<T>(nodeId: string, pick: (key: string, value: unknown) => T, namespace?: string): IterableIterator<T> {
    const of = (v: unknown): unknown => {
      const a = v instanceof Held ? v.admitted : v; // (packed or not: a record's namespace is a field of both)
      return namespace === undefined || (a as { namespace?: unknown } | undefined)?.namespace === namespace ? admittedIn(v, nodeId) : undefined;
    };
    for (const [k, v] of ntEntries(this.byNode.get(nodeId), namespace)) {
      const a = of(v);
      if (a !== undefined) yield pick(k, a);
    }
  }

  private raw(key: string): unknown {
    return ntGet(this.byNode.get(this.nodeOf(key)), key);
  }

  private admittedOf(key: string): unknown {
    const id = this.nodeOf(key);
    return admittedIn(ntGet(this.byNode.get(id), key), id);
  }

  private put(key: string, cluster: string, cand: unknown, admitted: unknown): void {
    const id = this.nodeOf(key);
    const m = this.byNode.get(id);
    const was = ntGet(m, key);
    const delta = (admitted !== undefined ? 1 : 0) - (was !== undefined && admittedIn(was, id) !== undefined ? 1 : 0);
    this.admittedCount += delta;
    const count = countIn(m, this.otherCounts, id) + delta;
    if (cand === undefined && admitted === undefined) {
      if (m === undefined) return;
      const left = ntDelete(m, key);
      if (left === undefined) this.byNode.delete(id); // bounded by the endpoints held
      else if (left !== m) this.byNode.set(id, left);
      return this.setCount(id, left, count);
    }
    // the same record (or one read back from this table, a new object saying the same: packedendpoint.ts)
    const same = cand !== undefined && shallowSame(cand, admitted);
    const plain = same && (cand as { cluster?: unknown }).cluster === cluster;
    const next = ntSet(m, key, plain ? (packEndpoint(cand as EndpointRecord, id) ?? cand) : new Held(internName(cluster), cand, admitted));
    if (next !== m) this.byNode.set(m === undefined ? internName(id) : id, next);
    this.setCount(id, next, count);
  }

  /** Node `id`'s count of admitted keys, `count`, where its table `t` keeps it (t: its table after the change). */
  private setCount(id: string, t: NodeTable | undefined, count: number): void {
    if (t instanceof NodeCells) {
      t.admitted = count;
      this.otherCounts.delete(id);
    } else if (t === undefined || count === 0) this.otherCounts.delete(id);
    else this.otherCounts.set(id, count);
  }

  private *entries(): IterableIterator<[string, Candidate<unknown>]> {
    for (const k of [...this.allKeys()]) {
      const c = this.candidates.get(k);
      if (c) yield [k, c];
    }
  }

  private *allKeys(): IterableIterator<string> {
    for (const m of this.byNode.values()) yield* ntKeys(m);
  }
}

/** Node `id`'s count of admitted keys: its cells' own, else `other`'s entry (0: none). */
const countIn = (t: NodeTable | undefined, other: ReadonlyMap<string, number>, id: string): number => (t instanceof NodeCells ? t.admitted : (other.get(id) ?? 0));

/** A table value's admitted record (undefined: none), that of node `id`. */
const admittedIn = (v: unknown, id: string): unknown => (v instanceof Held ? v.admitted : unpacked(v, id));
/** A table value with a packed record unpacked (node `id`'s). */
const unpacked = (v: unknown, id: string): unknown => (v instanceof PackedEndpoint ? unpackEndpoint(v, id) : v);

/** EndpointStore.records: its admitted values as a ReadonlyMap (no copy). */
class AdmittedRecords implements ReadonlyMap<string, unknown> {
  constructor(private readonly store: EndpointStore) {}
  get size(): number {
    return this.store.admittedSize;
  }
  get(key: string): unknown {
    return this.store.admittedIfHeld(key);
  }
  has(key: string): boolean {
    return this.store.admittedIfHeld(key) !== undefined;
  }
  entries(): IterableIterator<[string, unknown]> {
    return this.store.admittedWalk((k, v): [string, unknown] => [k, v]);
  }
  keys(): IterableIterator<string> {
    return this.store.admittedWalk((k) => k);
  }
  values(): IterableIterator<unknown> {
    return this.store.admittedWalk((_k, v) => v);
  }
  forEach(fn: (value: unknown, key: string, map: ReadonlyMap<string, unknown>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }
  [Symbol.iterator](): IterableIterator<[string, unknown]> {
    return this.entries();
  }
  /** EndpointRecords.entriesOfNode: the admitted values filed under node `nodeId` (the node their keys name) of `namespace`. */
  entriesOfNode(nodeId: string, namespace: string): IterableIterator<[string, unknown]> {
    return this.store.admittedOfNode(nodeId, (k, v): [string, unknown] => [k, v], namespace);
  }
}
