/**
 * The endpoints services read, indexed once and maintained per change:
 *
 *   scope "cluster/namespace" ──▶ its endpoints and the service definitions of that cluster and namespace
 *   definition ──▶ its members: the endpoints of its scope its selector picks (service.ts selects)
 *
 * An endpoint upsert or removal tests only the definitions of its own scope
 * (old and new record) and reports the services whose members changed; a
 * definition change matches only its scope's endpoints. Nothing walks all
 * endpoints.
 *
 * Compact (issue 16): the index keeps no record of its own. It reads each
 * endpoint's record from the records map its owner keeps (the agent's:
 * admission's table of admitted endpoints, Admission.endpointRecords, which the
 * policy data path reads too), and is told the record a key held before on every change (its
 * scope and members are found from it). Records are replaced, never mutated;
 * their label sets and names are shared (records/intern.ts). Its scope holds
 * the key, a definition's members the key too, and a recompute reads each
 * member's record from the map (admission's table builds it anew on each read:
 * agent/packedendpoint.ts; a member held as its record would be a copy of its
 * own, ~112 B): per endpoint one Set entry, and one per definition that picks
 * it. It held a copy per endpoint before (~64 B), then a Map of the records by
 * key (~46 B; docs/benchmarks.md "Ninth pass", "Tenth pass"). Keys, not
 * records, in the sets: a key is one endpoint by construction, where two keys
 * could hand over one record object.
 *
 * A wrong `old` (a caller's mistake: not the record it last upserted under the
 * key) must not leave the key in two scopes. One that names a record is caught
 * when its scope does not hold the key: the key is then found by a walk over the
 * scopes (O(scopes), only on a miss), dropped there, and the miss counted
 * (`misses`) and reported (`missed`). An `old` of undefined for a key the index
 * holds is caught when the key is in the new record's scope; in another scope
 * it is not (that would cost a walk on every new endpoint): the agent's
 * hand-over reads `old` in the map it tells the index about
 * (agent/endpointhandoff.ts), so the two agree after every change.
 */
import type { EndpointRecord } from '../controlplane/types.js';
import { selects, type ClusterService, type ServiceEndpoint } from './service.js';

interface Scope {
  readonly key: string;
  /** The keys of the endpoints of this cluster and namespace. */
  readonly endpoints: Set<string>;
  readonly defs: Set<ClusterService>;
}

/** Whether two records of one key differ in what services read (cluster, namespace, node, pod name, address, labels). */
function sameForServices(a: EndpointRecord, b: EndpointRecord): boolean {
  if (a.cluster !== b.cluster || a.namespace !== b.namespace || a.node !== b.node || a.name !== b.name || a.ip !== b.ip) return false;
  return a.labels === b.labels || labelsKey(a.labels) === labelsKey(b.labels);
}

function labelsKey(labels: Readonly<Record<string, string>>): string {
  const keys = Object.keys(labels).sort();
  let out = '';
  for (const k of keys) out += `${k}\u0000${labels[k]}\u0000`;
  return out;
}

const scopeKey = (cluster: string, namespace: string): string => `${cluster}/${namespace}`;

/** The service a definition belongs to ("namespace/name"): every cluster's definition of it shares the name. */
export function serviceName(def: ClusterService): string {
  return `${def.namespace}/${def.name}`;
}

export class ServiceEndpoints {
  /** The endpoints held (the records map may hold others: its owner's, not handed over). */
  private count = 0;
  private readonly scopes = new Map<string, Scope>();
  /** Each definition's members: the keys of its scope's endpoints its selector picks. */
  private readonly members = new Map<ClusterService, Set<string>>();

  /**
   * records: every endpoint's latest record by key, kept by the owner (records.get(key) is the record last
   * upserted here once upsert returns, and stays so until the next upsert or remove of that key).
   * touched(service): the members of a definition of that service ("namespace/name") changed.
   * missed(key): a change's old record did not locate key (a caller's mistake, see above; after the repair).
   */
  constructor(
    private readonly records: ReadonlyMap<string, EndpointRecord>,
    private readonly touched: (service: string) => void,
    private readonly missed: (key: string) => void = () => {},
  ) {}

  /** Changes whose old record did not locate their key (each repaired): 0 unless a caller is wrong. */
  misses = 0;

  /** The endpoints held. */
  get size(): number {
    return this.count;
  }

  /**
   * An endpoint record (key: its etcd key or its form) was added or replaced. old: the record last upserted
   * under key and not removed since (undefined: none), i.e. what the records map held for key before rec.
   */
  upsert(key: string, rec: EndpointRecord, old: EndpointRecord | undefined): void {
    const same = old && sameForServices(old, rec) ? this.scopes.get(scopeKey(rec.cluster, rec.namespace)) : undefined;
    if (same?.endpoints.has(key)) return; // nothing services read changed (e.g. its identity): members stay
    if (old) this.drop(key, old);
    else if (this.scopes.get(scopeKey(rec.cluster, rec.namespace))?.endpoints.has(key)) {
      this.miss(key); // "none before" for a key held in rec's scope: dropped there first (its members re-selected)
      this.drop(key, rec);
    }
    const scope = this.scope(rec.cluster, rec.namespace);
    scope.endpoints.add(key); // (not held in any scope now: drop found it wherever old said or not)
    this.count++;
    for (const d of scope.defs)
      if (selects(d.selector, rec, d.namespace)) {
        this.members.get(d)!.add(key);
        this.touched(serviceName(d));
      }
  }

  /** An endpoint went. old: the record last upserted under key (undefined: none, nothing to do). */
  remove(key: string, old: EndpointRecord | undefined): void {
    if (old) this.drop(key, old);
  }

  /** A definition arrived: its members are matched over its scope's endpoints only. */
  addDefinition(def: ClusterService): void {
    const scope = this.scope(def.cluster, def.namespace);
    scope.defs.add(def);
    const m = new Set<string>();
    for (const k of scope.endpoints) {
      const rec = this.records.get(k);
      // (a record of another scope: the owner's map and this index disagree, a caller's mistake; not a member here)
      if (rec && rec.cluster === def.cluster && rec.namespace === def.namespace && selects(def.selector, rec, def.namespace)) m.add(k);
    }
    this.members.set(def, m);
    this.touched(serviceName(def));
  }

  removeDefinition(def: ClusterService): void {
    const scope = this.scopes.get(scopeKey(def.cluster, def.namespace));
    if (!scope?.defs.delete(def)) return;
    this.members.delete(def);
    this.gc(scope);
    this.touched(serviceName(def));
  }

  /** The endpoints def's selector picks (empty for a definition not added), read from the records map. */
  *membersOf(def: ClusterService): IterableIterator<ServiceEndpoint> {
    for (const [, rec] of this.memberEntriesOf(def)) yield rec;
  }

  /**
   * The same as (key, record) pairs: which key each member is held under. A member whose key the records map does
   * not hold (its owner and this index disagree: a caller's mistake) is left out, not served.
   */
  *memberEntriesOf(def: ClusterService): IterableIterator<[string, EndpointRecord]> {
    for (const k of this.members.get(def) ?? []) {
      const rec = this.records.get(k);
      if (rec) yield [k, rec];
    }
  }

  /** Drops key from the scope that holds it: old's, else (a wrong old, counted) the one a walk finds, if any. */
  private drop(key: string, old: EndpointRecord): void {
    let scope = this.scopes.get(scopeKey(old.cluster, old.namespace));
    if (!scope?.endpoints.has(key)) {
      this.miss(key);
      scope = undefined;
      for (const s of this.scopes.values()) if (s.endpoints.has(key)) scope = s; // (at most one: the invariant)
      if (!scope) return; // held nowhere: nothing to drop
    }
    scope.endpoints.delete(key);
    this.count--;
    for (const d of scope.defs) if (this.members.get(d)!.delete(key)) this.touched(serviceName(d));
    this.gc(scope);
  }

  private scope(cluster: string, namespace: string): Scope {
    const key = scopeKey(cluster, namespace);
    let s = this.scopes.get(key);
    if (!s) this.scopes.set(key, (s = { key, endpoints: new Set(), defs: new Set() }));
    return s;
  }

  private miss(key: string): void {
    this.misses++;
    this.missed(key);
  }

  private gc(scope: Scope): void {
    if (scope.endpoints.size === 0 && scope.defs.size === 0) this.scopes.delete(scope.key);
  }
}
