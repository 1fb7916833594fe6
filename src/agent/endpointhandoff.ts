/**
 * Where an admitted endpoint change goes on an agent with the mesh engine: the policy data path, which keeps
 * every endpoint's record by key (its ipcache owner), and the services' index, which keeps none of its own and
 * reads them in that map (issue 16: one Map per endpoint fewer, docs/benchmarks.md "Tenth pass"). The index is
 * told the record the change replaces, so it is read from the map before the data path takes the new one.
 */
import type { EndpointRecord } from '../controlplane/types.js';
import type { PolicyDatapath } from '../policy/datapath.js';
import type { ServiceDatapath } from '../services/datapath.js';

/**
 * key: the endpoint's etcd key or its form (Admission.endpointKeys); rec: its record, undefined when it went.
 * Throws what the data path throws; the index is told what the map holds for key even then (a data path that
 * stored the new record and then threw would otherwise leave the index on the old one for good).
 */
export function handOverEndpoint(datapath: PolicyDatapath, services: ServiceDatapath | undefined, key: string, rec: EndpointRecord | undefined): void {
  const old = services ? datapath.endpoints.get(key) : undefined;
  try {
    if (rec) datapath.upsertEndpoint(key, rec);
    else datapath.removeEndpoint(key);
  } finally {
    // recomputes only the services whose selectors pick it (old or now)
    const now = services ? datapath.endpoints.get(key) : undefined;
    if (now) services?.upsertEndpoint(key, now, old);
    else services?.removeEndpoint(key, old);
  }
}
