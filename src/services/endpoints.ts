/**
 * The endpoints services read, indexed once and maintained per change:
 *
 *   scope "cluster/namespace" ──▶ the nodes its endpoints are on (a count each) and the service definitions of that
 *                                 cluster and namespace
 *   definition ──▶ its members: the keys of the endpoints of its scope its selector picks (service.ts selects)
 *
 * An endpoint upsert or removal tests only the definitions of its own scope
 * (old and new record) and reports the services whose members changed, reading
 * no other record. A definition's arrival reads the records of its namespace on
 * its scope's nodes, from the owner's table node by node: it costs what the
 * owner keeps under those nodes (admission's table: each node's admitted
 * endpoints, at most its endpoint bound, and the candidates it holds there not
 * admitted, skipped unread; at worst a remote's record budget, the same order as
 * a scope of that many endpoints cost before). The owner indexes only the
 * definitions its services read (services/datapath.ts reindex). Nothing walks
 * all endpoints.
 *
 * Compact (issue 16): the index keeps no record and no key of an endpoint that
 * no definition picks. It reads records from the table its owner keeps (the
 * agent's: admission's table of admitted endpoints, Admission.endpointRecords,
 * which the policy data path reads too; it builds a record anew on each read,
 * agent/packedendpoint.ts) and is told the record a key held before on every
 * change (its scope, node and members are found from it). Per endpoint: a Set
 * entry per definition that picks it, and its share of its scope's per-node
 * count. It held a copy per endpoint before (~64 B), then a Map of the records
 * by key (~46 B; docs/benchmarks.md "Ninth pass", "Tenth pass"), then each
 * scope's keys (~44 B per remote endpoint at 4 × 1000 × 10, s25). Keys, not
 * records, in the member sets: a key is one endpoint by construction, where two
 * keys could hand over one record object.
 *
 * What a definition's members read is checked against the owner's table (the
 * record still there, of the definition's scope, picked by its selector):
 * a member set may hold a key too many, never serve one. A wrong `old` (a
 * caller's mistake: not the record it last upserted under the key) is caught
 * when its scope has no endpoint counted on its node, when a new key ("none
 * before") is a member of a definition of its scope already, or when a read
 * finds a member that no longer qualifies: each counted (`misses`), reported
 * (`missed`) and repaired (the key dropped from every definition that does not
 * pick its record now: O(definitions), only on a miss). One naming a scope with
 * other endpoints on the same node goes unnoticed: the counts then drift (one
 * too many: a node walked for nothing when a definition arrives; one too few: a
 * node left out of it while the scope still has endpoints there, until they
 * change), and the key's services are recomputed at their next change, reading
 * only what the table holds. A count is never checked against the table: that
 * would read a node's records (up to its endpoint bound) whenever a scope's last
 * endpoint leaves it, which a node churning one endpoint per namespace could
 * make every change. The agent's hand-over tells the index what the table holds
 * after every change, even when the data path throws, and reads `old` in that
 * table (agent/endpointhandoff.ts), so the two always agree there.
 */
import type { EndpointRecord } from '../controlplane/types.js';
import { recordNodeId, type EndpointRecords } from '../controlplane/endpointrecords.js';
import { internName } from '../controlplane/records/intern.js';
import { selects, type ClusterService, type ServiceEndpoint } from './service.js';

interface Scope {
  readonly key: string;
  /** node id ("cluster/node") → how many of this scope's endpoints the index was told of there (≥ 1). */
  readonly nodes: Map<string, number>;
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

/** Whether definition `def` picks record `rec`: of its cluster and namespace, and its selector's. */
const picks = (def: ClusterService, rec: EndpointRecord): boolean => rec.cluster === def.cluster && rec.namespace === def.namespace && selects(def.selector, rec, def.namespace);

/** The service a definition belongs to ("namespace/name"): every cluster's definition of it shares the name. */
export function serviceName(def: ClusterService): string {
  return `${def.namespace}/${def.name}`;
}

export class ServiceEndpoints {
  private readonly scopes = new Map<string, Scope>();
  /** Each definition's members: the keys of its scope's endpoints its selector picks (a key too many at most: above). */
  private readonly members = new Map<ClusterService, Set<string>>();

  /**
   * records: every endpoint's latest record by key, kept by the owner, and readable node by node (records.get(key)
   * is the record last upserted here, or one equal to it, once upsert returns, and stays so until the next upsert or
   * remove of that key).
   * touched(service): the members of a definition of that service ("namespace/name") changed.
   * missed(key): a change's old record did not match what the index holds, or a member no longer qualified (a
   * caller's mistake, see above; after the repair).
   */
  constructor(
    private readonly records: EndpointRecords,
    private readonly touched: (service: string) => void,
    private readonly missed: (key: string) => void = () => {},
  ) {}

  /** Changes whose old record was found wrong, and members found not to qualify (each repaired): 0 unless a caller is wrong. */
  misses = 0;

  /**
   * An endpoint record (key: its etcd key or its form) was added or replaced. old: the record last upserted
   * under key and not removed since (undefined: none), i.e. what the records map held for key before rec.
   */
  upsert(key: string, rec: EndpointRecord, old: EndpointRecord | undefined): void {
    if (old && sameForServices(old, rec) && this.holds(key, rec)) return; // nothing services read changed (e.g. its identity)
    if (old) this.drop(key, old);
    else if (this.memberIn(key, rec)) this.repair(key); // "none before" for a key a definition of rec's scope holds
    const scope = this.scope(rec.cluster, rec.namespace); // (after drop: it may have let the scope go)
    const node = recordNodeId(rec);
    const n = scope.nodes.get(node);
    // (a node's first: its id interned, one copy with admission's table's; later sets keep the key the Map holds)
    scope.nodes.set(n === undefined ? internName(node) : node, (n ?? 0) + 1);
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

  /** A definition arrived: its members are matched over the records of its scope's nodes only. */
  addDefinition(def: ClusterService): void {
    const scope = this.scope(def.cluster, def.namespace);
    scope.defs.add(def);
    const m = new Set<string>();
    for (const node of scope.nodes.keys()) for (const [k, rec] of this.records.entriesOfNode(node, def.namespace)) if (picks(def, rec)) m.add(k);
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
   * The same as (key, record) pairs: which key each member is held under. A member the table no longer holds, or
   * holds as a record def does not pick (the owner and this index disagree: a caller's mistake), is dropped and
   * counted, not served.
   */
  *memberEntriesOf(def: ClusterService): IterableIterator<[string, EndpointRecord]> {
    const m = this.members.get(def);
    if (!m) return;
    for (const k of m) {
      const rec = this.records.get(k);
      if (rec && picks(def, rec)) yield [k, rec];
      else {
        m.delete(k); // (a Set iterates on past an entry deleted under it)
        this.miss(k);
      }
    }
  }

  /** Whether the index holds key as rec says: its node counted in rec's scope, a member of every definition there that picks it. */
  private holds(key: string, rec: EndpointRecord): boolean {
    const scope = this.scopes.get(scopeKey(rec.cluster, rec.namespace));
    if (!scope?.nodes.has(recordNodeId(rec))) return false;
    for (const d of scope.defs) if (selects(d.selector, rec, d.namespace) && !this.members.get(d)!.has(key)) return false;
    return true;
  }

  /** Whether a definition of rec's scope holds key. */
  private memberIn(key: string, rec: EndpointRecord): boolean {
    for (const d of this.scopes.get(scopeKey(rec.cluster, rec.namespace))?.defs ?? []) if (this.members.get(d)!.has(key)) return true;
    return false;
  }

  /** Drops key as old says: its node's count in old's scope, its membership of that scope's definitions. */
  private drop(key: string, old: EndpointRecord): void {
    const scope = this.scopes.get(scopeKey(old.cluster, old.namespace));
    const node = recordNodeId(old);
    const n = scope?.nodes.get(node);
    if (scope === undefined || n === undefined) return this.repair(key); // nothing of old's scope on its node: a wrong old
    if (n > 1) scope.nodes.set(node, n - 1);
    else scope.nodes.delete(node);
    for (const d of scope.defs) if (this.members.get(d)!.delete(key)) this.touched(serviceName(d));
    this.gc(scope);
  }

  /** A wrong old for key: key leaves every definition that does not pick its record now (O(definitions), on a miss only). */
  private repair(key: string): void {
    this.miss(key);
    const rec = this.records.get(key);
    for (const [d, m] of this.members) if (m.has(key) && !(rec && picks(d, rec))) {
      m.delete(key);
      this.touched(serviceName(d));
    }
  }

  private scope(cluster: string, namespace: string): Scope {
    const key = scopeKey(cluster, namespace);
    let s = this.scopes.get(key);
    if (!s) this.scopes.set(key, (s = { key, nodes: new Map(), defs: new Set() }));
    return s;
  }

  private miss(key: string): void {
    this.misses++;
    this.missed(key);
  }

  private gc(scope: Scope): void {
    if (scope.nodes.size === 0 && scope.defs.size === 0) this.scopes.delete(scope.key);
  }
}
