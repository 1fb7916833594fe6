/**
 * Per-cluster backend counts of one service as a node sees it: shared by the
 * agent's health record (clustermesh status), `wiremesh service list` and the UI.
 */
import type { ServiceStatus } from './datapath.js';

/** Backends per cluster of the service's first port: "c1 2/3" = 2 of 3 healthy (selected, standby or over-limit: not dead). */
export function clusterCounts(svc: ServiceStatus): Map<string, { total: number; healthy: number; selected: number }> {
  const m = new Map<string, { total: number; healthy: number; selected: number }>();
  for (const p of svc.ports.slice(0, 1))
    for (const b of p.backends) {
      const c = m.get(b.cluster) ?? { total: 0, healthy: 0, selected: 0 };
      c.total++;
      if (b.state !== 'dead') c.healthy++;
      if (b.state === 'selected') c.selected++;
      m.set(b.cluster, c);
    }
  return m;
}
