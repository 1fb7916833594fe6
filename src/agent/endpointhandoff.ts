/**
 * Where an admitted endpoint change goes on an agent with the mesh engine: the policy data path, which keeps
 * every endpoint's record by key (its ipcache owner), and the services' index, which keeps none of its own and
 * reads them in that map (issue 16: one Map per endpoint fewer, docs/benchmarks.md "Tenth pass"). The index is
 * told the record the change replaces, so it is read from the map before the data path takes the new one.
 */
import type { EndpointRecord } from '../controlplane/types.js';
import type { PolicyDatapath } from '../policy/datapath.js';
import type { ServiceDatapath } from '../services/datapath.js';

/** key: the endpoint's etcd key or its form (Admission.endpointKeys); rec: its record, undefined when it went. */
export function handOverEndpoint(datapath: PolicyDatapath, services: ServiceDatapath | undefined, key: string, rec: EndpointRecord | undefined): void {
  const old = services ? datapath.endpoints.get(key) : undefined;
  if (rec) datapath.upsertEndpoint(key, rec);
  else datapath.removeEndpoint(key);
  // recomputes only the services whose selectors pick it (old or new)
  if (rec) services?.upsertEndpoint(key, rec, old);
  else services?.removeEndpoint(key, old);
}
