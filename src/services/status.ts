/**
 * What `GET /v1/services`, status, metrics and the UI read of the agent's
 * services: every local service with its ports, backends and their state.
 */
import { localDefinition, type Backend, type ClusterService } from './service.js';

export interface BackendStatus extends Backend {
  /** over-limit: healthy, but past its cluster's bound on this port (tables.ts): not in the table. */
  state: 'selected' | 'standby' | 'dead' | 'over-limit';
}

export interface ServicePortStatus {
  name: string;
  port: number;
  protocol: string;
  tableSize: number;
  /** Healthy backends a cluster may have in this port's table (services.maxBackendsPerCluster; absent from older agents). */
  maxBackendsPerCluster?: number;
  nearest?: string;
  backends: BackendStatus[];
}

export interface ServiceStatus {
  namespace: string;
  name: string;
  vip?: string;
  global: boolean;
  shared: boolean;
  affinity: string;
  /** Clusters that define the service, and which of them export backends to us. */
  clusters: Array<{ cluster: string; exported: boolean; rttMs?: number }>;
  ports: ServicePortStatus[];
}

/**
 * The status of every service with a local definition, sorted by
 * namespace/name. defsByName: every cluster's definitions per service;
 * portStatus(portKey): the installed status of a port; rtt: median RTT in ms per cluster.
 */
export function serviceList(
  cluster: string,
  defsByName: Iterable<ClusterService[]>,
  portStatus: (portKey: string) => ServicePortStatus | undefined,
  rtt: Map<string, number>,
): ServiceStatus[] {
  const out: ServiceStatus[] = [];
  for (const defs of defsByName) {
    const local = localDefinition(cluster, defs);
    if (!local) continue;
    const ports = local.ports.map((p) => portStatus(`${local.namespace}/${local.name}/${p.name || p.port}`)).filter((s): s is ServicePortStatus => s !== undefined);
    out.push({
      namespace: local.namespace,
      name: local.name,
      ...(local.vip ? { vip: local.vip } : {}),
      global: local.global,
      shared: local.shared,
      affinity: local.affinity,
      clusters: defs
        .map((d) => ({ cluster: d.cluster, exported: d.cluster === cluster || (local.global && d.shared), ...(rtt.has(d.cluster) ? { rttMs: Math.round(rtt.get(d.cluster)! * 1000) / 1000 } : {}) }))
        .sort((a, b) => (a.cluster < b.cluster ? -1 : 1)),
      ports,
    });
  }
  return out.sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
}
