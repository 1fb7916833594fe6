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
 * Compact: an entry keeps only what services read (node, pod name, address,
 * labels) and points at its scope for cluster and namespace; node names and
 * label sets are interned (one object per distinct value, reference-counted
 * so churn does not grow them). At 160k remote endpoints that is one small
 * object and two collection slots per endpoint; the label objects and
 * strings are shared.
 */
import type { EndpointRecord } from '../controlplane/types.js';
import { selects, type ClusterService, type ServiceEndpoint } from './service.js';

/** Reference-counted interning: one value per distinct key while something uses it. */
class Interner<T> {
  private readonly values = new Map<string, { value: T; refs: number }>();

  acquire(key: string, make: () => T): T {
    const v = this.values.get(key);
    if (v) {
      v.refs++;
      return v.value;
    }
    const value = make();
    this.values.set(key, { value, refs: 1 });
    return value;
  }

  release(key: string): void {
    const v = this.values.get(key);
    if (v && --v.refs === 0) this.values.delete(key);
  }

  get size(): number {
    return this.values.size;
  }
}

interface Scope {
  readonly key: string;
  readonly cluster: string;
  readonly namespace: string;
  readonly endpoints: Set<Entry>;
  readonly defs: Set<ClusterService>;
}

/** One distinct label set, shared by every endpoint that carries it. */
interface LabelSet {
  readonly key: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** One endpoint as services see it; cluster and namespace come from its scope, labels from the shared set (no per-entry copies). */
class Entry implements ServiceEndpoint {
  constructor(
    readonly scope: Scope,
    readonly node: string,
    readonly name: string,
    readonly ip: string,
    readonly labelSet: LabelSet,
  ) {}

  get labels(): Readonly<Record<string, string>> {
    return this.labelSet.labels;
  }

  get cluster(): string {
    return this.scope.cluster;
  }

  get namespace(): string {
    return this.scope.namespace;
  }
}

function labelsKey(labels: Readonly<Record<string, string>>): string {
  const keys = Object.keys(labels).sort();
  let out = '';
  for (const k of keys) out += `${k}\u0000${labels[k]}\u0000`;
  return out;
}

/** The service a definition belongs to ("namespace/name"): every cluster's definition of it shares the name. */
export function serviceName(def: ClusterService): string {
  return `${def.namespace}/${def.name}`;
}

export class ServiceEndpoints {
  private readonly byKey = new Map<string, Entry>();
  private readonly scopes = new Map<string, Scope>();
  private readonly members = new Map<ClusterService, Set<Entry>>();
  private readonly nodes = new Interner<string>();
  private readonly labelSets = new Interner<LabelSet>();

  /** touched(service): the members of a definition of that service ("namespace/name") changed. */
  constructor(private readonly touched: (service: string) => void) {}

  get size(): number {
    return this.byKey.size;
  }

  /** Distinct label sets and node names held (the index's shared part). */
  get interned(): { labelSets: number; nodes: number } {
    return { labelSets: this.labelSets.size, nodes: this.nodes.size };
  }

  /** An endpoint record (key: its etcd key) was added or replaced. */
  upsert(key: string, rec: EndpointRecord): void {
    const old = this.byKey.get(key);
    const lk = labelsKey(rec.labels);
    if (old && old.cluster === rec.cluster && old.namespace === rec.namespace && old.node === rec.node && old.name === rec.name && old.ip === rec.ip && old.labelSet.key === lk) return; // nothing services read changed (e.g. its identity)
    if (old) this.drop(key, old);
    const scope = this.scope(rec.cluster, rec.namespace);
    const e = new Entry(
      scope,
      this.nodes.acquire(rec.node, () => rec.node),
      rec.name,
      rec.ip,
      this.labelSets.acquire(lk, () => ({ key: lk, labels: Object.freeze({ ...rec.labels }) })),
    );
    this.byKey.set(key, e);
    scope.endpoints.add(e);
    for (const d of scope.defs)
      if (selects(d.selector, e, d.namespace)) {
        this.members.get(d)!.add(e);
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
    const m = new Set<Entry>();
    for (const e of scope.endpoints) if (selects(def.selector, e, def.namespace)) m.add(e);
    this.members.set(def, m);
    this.touched(serviceName(def));
  }

  removeDefinition(def: ClusterService): void {
    const scope = this.scopes.get(`${def.cluster}/${def.namespace}`);
    if (!scope?.defs.delete(def)) return;
    this.members.delete(def);
    this.gc(scope);
    this.touched(serviceName(def));
  }

  /** The endpoints def's selector picks (empty for a definition not added). */
  membersOf(def: ClusterService): Iterable<ServiceEndpoint> {
    return this.members.get(def) ?? [];
  }

  private drop(key: string, e: Entry): void {
    this.byKey.delete(key);
    e.scope.endpoints.delete(e);
    for (const d of e.scope.defs) if (this.members.get(d)!.delete(e)) this.touched(serviceName(d));
    this.nodes.release(e.node);
    this.labelSets.release(e.labelSet.key);
    this.gc(e.scope);
  }

  private scope(cluster: string, namespace: string): Scope {
    const key = `${cluster}/${namespace}`;
    let s = this.scopes.get(key);
    if (!s) this.scopes.set(key, (s = { key, cluster, namespace, endpoints: new Set(), defs: new Set() }));
    return s;
  }

  private gc(scope: Scope): void {
    if (scope.endpoints.size === 0 && scope.defs.size === 0) this.scopes.delete(scope.key);
  }
}
