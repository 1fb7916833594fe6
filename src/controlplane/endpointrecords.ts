/**
 * A table of endpoint records by key that can also be read node by node: what the services' index reads of its
 * owner (services/endpoints.ts), so that the index keeps per scope the nodes its endpoints are on (a count each)
 * instead of every endpoint's key (issue 16).
 *
 * Two owners implement it: admission's table (agent/endpointstore.ts, the agent's one table of records, which files
 * each record under the node its key names) and `EndpointRecordsMap` below (a policy data path's own table, unit
 * tests, benchmarks).
 */
import type { EndpointRecord } from './types.js';

export type { EndpointRecord };

export interface EndpointRecords extends ReadonlyMap<string, EndpointRecord> {
  /**
   * The (key, record) pairs of the records of node `nodeId` ("cluster/node": the record's own cluster and node, which
   * is the node its key names: admission refuses a record naming another) in namespace `namespace`, in no promised
   * order; none for a node with none. The caller does not change the table while it iterates. It costs what the
   * owner keeps under that node (admission's table: its candidates too, the ones not admitted skipped unread).
   */
  entriesOfNode(nodeId: string, namespace: string): Iterable<[string, EndpointRecord]>;
}

/** The node id of a record: "cluster/node". */
export const recordNodeId = (rec: EndpointRecord): string => `${rec.cluster}/${rec.node}`;

/**
 * A Map of endpoint records by key that keeps the keys of each node too (a Set per node: a unit test's or a
 * benchmark's table, or a policy data path's own; the agent's is admission's). Built empty: records come by `set`.
 */
export class EndpointRecordsMap extends Map<string, EndpointRecord> implements EndpointRecords {
  /** node id → the keys whose record is that node's. */
  private readonly byNode = new Map<string, Set<string>>();

  constructor() {
    super(); // (no entries: Map's constructor would set them before byNode exists)
  }

  override set(key: string, rec: EndpointRecord): this {
    this.unfile(key);
    super.set(key, rec);
    const id = recordNodeId(rec);
    let keys = this.byNode.get(id);
    if (!keys) this.byNode.set(id, (keys = new Set()));
    keys.add(key);
    return this;
  }

  override delete(key: string): boolean {
    this.unfile(key);
    return super.delete(key);
  }

  override clear(): void {
    this.byNode.clear();
    super.clear();
  }

  *entriesOfNode(nodeId: string, namespace: string): IterableIterator<[string, EndpointRecord]> {
    for (const k of this.byNode.get(nodeId) ?? []) {
      const rec = this.get(k)!;
      if (rec.namespace === namespace) yield [k, rec];
    }
  }

  private unfile(key: string): void {
    const was = super.get(key);
    if (was === undefined) return;
    const id = recordNodeId(was);
    const keys = this.byNode.get(id)!;
    keys.delete(key);
    if (keys.size === 0) this.byNode.delete(id);
  }
}
