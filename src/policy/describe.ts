/** How a flow record names one end: its identity's text and labels, and the pod record at its address if any. */
import type { EndpointRecord } from '../controlplane/types.js';
import { describeIdentity, identityCluster, LOCAL_SCOPE, type MaxClusters } from '../identity/identity.js';
import type { IdentityUniverse } from './compile.js';
import type { FlowEndpoint } from './flows.js';

/** The flow-endpoint fields of `identity` (rec: the latest endpoint record at the address, if any; max: the mesh's cluster-id layout). */
export function describeEndpoint(u: IdentityUniverse, identity: number, rec: EndpointRecord | undefined, max?: MaxClusters): Omit<FlowEndpoint, 'ip' | 'port'> {
  const e: Omit<FlowEndpoint, 'ip' | 'port'> = { identity };
  const labels = u.identities.get(identity);
  if (identity >= LOCAL_SCOPE) {
    const c = [...u.cidrs.entries()].find(([, v]) => v.id === identity);
    e.identityText = c ? `cidr:${c[0]}` : 'cidr';
  } else e.identityText = describeIdentity(identity, labels);
  if (labels && identity >= 256) e.labels = labels;
  if (rec) Object.assign(e, { cluster: rec.cluster, namespace: rec.namespace, pod: rec.name, node: rec.node });
  else if (identity >= 256 && identity < LOCAL_SCOPE) e.cluster = labels?.['io.cilium.k8s.policy.cluster'] ?? `cluster-id-${identityCluster(identity, max)}`;
  return e;
}
