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
 * Compact (issue 16): the index holds each endpoint's record itself (records are
 * replaced, never mutated; their label sets and names are already shared,
 * records/intern.ts), by key, and its scope and its definitions' members hold
 * the key (a definition's members the key and the record, so that a recompute
 * reads its members without a lookup each): per endpoint one Map entry, one Set
 * entry and a Map entry per definition that picks it, no object of its own. It held a copy per endpoint before (node, name, address,
 * a label set reference, its scope: ~64 B, docs/benchmarks.md "Ninth pass").
 * Keys, not records, in the sets: a key is one endpoint by construction, where
 * two keys could hand over one record object.
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
  /** Each endpoint's record (the latest upserted), by key. */
  private readonly byKey = new Map<string, EndpointRecord>();
  private readonly scopes = new Map<string, Scope>();
  /** Each definition's members: the keys of its scope's endpoints its selector picks, with their records. */
  private readonly members = new Map<ClusterService, Map<string, EndpointRecord>>();

  /** touched(service): the members of a definition of that service ("namespace/name") changed. */
  constructor(private readonly touched: (service: string) => void) {}

  get size(): number {
    return this.byKey.size;
  }

  /** An endpoint record (key: its etcd key or its form) was added or replaced. */
  upsert(key: string, rec: EndpointRecord): void {
    const old = this.byKey.get(key);
    if (old && sameForServices(old, rec)) {
      // nothing services read changed (e.g. its identity): the new record, in its place (no stale record kept)
      this.byKey.set(key, rec);
      for (const d of this.scopes.get(scopeKey(rec.cluster, rec.namespace))!.defs) {
        const m = this.members.get(d)!;
        if (m.has(key)) m.set(key, rec);
      }
      return;
    }
    if (old) this.drop(key, old);
    const scope = this.scope(rec.cluster, rec.namespace);
    this.byKey.set(key, rec);
    scope.endpoints.add(key);
    for (const d of scope.defs)
      if (selects(d.selector, rec, d.namespace)) {
        this.members.get(d)!.set(key, rec);
        this.touched(serviceName(d));
      }
  }

  remove(key: string): void {
    const old = this.byKey.get(key);
    if (old) this.drop(key, old);
  }

  /** A definition arrived: its members are matched over its scope's endpoints only. */
  addDefinition(def: ClusterService): void {
    const scope = this.scope(def.cluster, def.namespace);
    scope.defs.add(def);
    const m = new Map<string, EndpointRecord>();
    for (const k of scope.endpoints) {
      const rec = this.byKey.get(k)!;
      if (selects(def.selector, rec, def.namespace)) m.set(k, rec);
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

  /** The endpoints def's selector picks (empty for a definition not added). */
  membersOf(def: ClusterService): Iterable<ServiceEndpoint> {
    return this.members.get(def)?.values() ?? [];
  }

  private drop(key: string, old: EndpointRecord): void {
    this.byKey.delete(key);
    const scope = this.scopes.get(scopeKey(old.cluster, old.namespace))!;
    scope.endpoints.delete(key);
    for (const d of scope.defs) if (this.members.get(d)!.delete(key)) this.touched(serviceName(d));
    this.gc(scope);
  }

  private scope(cluster: string, namespace: string): Scope {
    const key = scopeKey(cluster, namespace);
    let s = this.scopes.get(key);
    if (!s) this.scopes.set(key, (s = { key, endpoints: new Set(), defs: new Set() }));
    return s;
  }

  private gc(scope: Scope): void {
    if (scope.endpoints.size === 0 && scope.defs.size === 0) this.scopes.delete(scope.key);
  }
}
