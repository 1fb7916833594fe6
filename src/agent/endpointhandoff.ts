/**
 * Where an admitted endpoint change goes on an agent with the mesh engine: the policy data path and the services'
 * index. Neither keeps a table of records of its own on the agent: both read admission's
 * (Admission.endpointRecords, issue 16), which holds the new record before this is called, so each is told the
 * record the change replaces. A data path with a table of its own (PolicyDatapath without opts.records: tests,
 * `policy trace`) is read for it instead, before it takes the new one.
 */
import type { EndpointRecord } from '../controlplane/types.js';
import type { PolicyDatapath } from '../policy/datapath.js';
import type { ServiceDatapath } from '../services/datapath.js';

/**
 * key: the endpoint's etcd key or its form (Admission.endpointKeys); rec: its record, undefined when it went;
 * previous: the record the records' table held for key before (undefined: none), read only when the data path
 * keeps no table of its own; not optional, as in PolicyDatapath.upsertEndpoint (a caller that left it out skipped
 * the old address's removal). Throws what the data path throws; the index is told what the table holds for key
 * even then (a data path that stored the new record and then threw would otherwise leave the index on the old
 * one for good).
 */
export function handOverEndpoint(
  datapath: PolicyDatapath,
  services: ServiceDatapath | undefined,
  key: string,
  rec: EndpointRecord | undefined,
  previous: EndpointRecord | undefined,
): void {
  const old = datapath.ownsEndpoints ? (services ? datapath.endpoints.get(key) : undefined) : previous;
  try {
    if (rec) datapath.upsertEndpoint(key, rec, old);
    else datapath.removeEndpoint(key, old);
  } finally {
    // recomputes only the services whose selectors pick it (old or now)
    const now = services ? datapath.endpoints.get(key) : undefined;
    if (now) services?.upsertEndpoint(key, now, old);
    else services?.removeEndpoint(key, old);
  }
}
