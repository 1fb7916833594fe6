/**
 * `wiremesh service list`: every service an agent translates, with its
 * frontends, backends per cluster and their state as that node sees them
 * (selected / standby / dead / over-limit: past its cluster's bound), the Maglev table size and, for affinity
 * nearest, the chosen cluster and measured round-trip times.
 */
import { callAgent } from '../agent/client.js';
import { AgentError } from '../errors.js';
import type { ServiceStatus } from '../services/datapath.js';
import { clusterCounts } from '../services/counts.js';

export interface ServiceListing {
  cluster: string;
  node: string;
  services: ServiceStatus[];
}

export async function listServices(sockets: string[]): Promise<ServiceListing[]> {
  const out: ServiceListing[] = [];
  for (const s of sockets) {
    const res = await callAgent(s, 'GET', '/v1/services').catch((err: Error) => ({ status: 0, body: { error: err.message } }));
    if (res.status !== 200) throw new AgentError('WM_AGENT_API', `${s}: ${(res.body as { error?: string }).error ?? `HTTP ${res.status}`}`);
    out.push(res.body as ServiceListing);
  }
  return out;
}

export function formatServices(listings: ServiceListing[], wide: boolean): string[] {
  const lines: string[] = [];
  for (const l of listings) {
    lines.push(`${l.cluster}/${l.node}:`);
    if (l.services.length === 0) lines.push('  (no services)');
    for (const s of l.services) {
      const ports = s.ports.map((p) => `${p.port}/${p.protocol}`).join(',');
      const rtt = s.clusters.filter((c) => c.rttMs !== undefined).map((c) => `${c.cluster} ${c.rttMs} ms`).join(', ');
      const nearest = s.ports[0]?.nearest ? ` -> ${s.ports[0].nearest}` : '';
      lines.push(`  ${s.namespace}/${s.name}  VIP ${s.vip ?? '-'}  ports ${ports}  ${s.global ? 'global' : 'local'}${s.global && !s.shared ? ' (not shared)' : ''}  affinity ${s.affinity}${nearest}  table ${s.ports[0]?.tableSize ?? '-'}${rtt ? `  rtt ${rtt}` : ''}`);
      const over = new Map<string, number>();
      for (const b of s.ports[0]?.backends ?? []) if (b.state === 'over-limit') over.set(b.cluster, (over.get(b.cluster) ?? 0) + 1);
      const overText = (c: string) => (over.has(c) ? `, ${over.get(c)} left out (over the bound of ${s.ports[0]!.maxBackendsPerCluster ?? '?'})` : '');
      const counts = [...clusterCounts(s)].map(([c, n]) => `${c} ${n.healthy}/${n.total} healthy, ${n.selected} selected${overText(c)}`).join('; ');
      lines.push(`    backends: ${counts || 'none'}`);
      if (wide)
        for (const p of s.ports)
          for (const b of p.backends) lines.push(`    ${String(p.port).padEnd(6)} ${b.cluster.padEnd(8)} ${b.pod.padEnd(24)} ${`${b.ip}:${b.port}`.padEnd(22)} ${b.state}${b.weight !== 1 ? ` weight ${b.weight}` : ''}`);
    }
  }
  return lines;
}
