/**
 * `wiremesh clustermesh status` as text lines. What it prints was read from etcd, and much of it was written by
 * others: a remote's refused keys and the refusals' details (kvstoremesh's status), a remote etcd's error texts,
 * every node's health record (a compromised node writes its own). Each line goes through `printable`, so such text
 * cannot drive the operator's terminal (move the cursor, clear or overwrite the WARNING lines, set the title,
 * reorder text with bidi controls): it is shown escaped.
 */
import type { MeshStatus } from '../controlplane/clustermesh.js';
import { printable } from './printable.js';

/** The status as printed lines (without the --json form), each printable. */
export function meshStatusLines(s: MeshStatus): string[] {
  const out: string[] = [];
  out.push(`Cluster ${s.cluster.name} (id ${s.cluster.id}), pod CIDRs ${s.cluster.podCIDRs.join(', ')}, underlay CIDRs ${s.cluster.underlayCIDRs?.join(', ') ?? 'NONE'}`);
  out.push(`Local nodes: ${s.nodes.local}`);
  out.push(`Clusters configured: ${s.remotes.length}, connected: ${s.remotes.filter((r) => r.status?.connected).length}`);
  const cn = s.connectivity;
  out.push(`Nodes connected to all ${cn.configured} clusters: ${Object.values(cn.perNode).filter((n) => n === cn.configured).length}/${Object.keys(cn.perNode).length} (clusters reached per node: min ${cn.min}, avg ${cn.avg.toFixed(1)}, max ${cn.max})`);
  out.push(`Global services: ${s.globalServices}`);
  // per service and cluster: usable backends as the nodes see them (min..max over nodes)
  const agg = new Map<string, { vip?: string; affinity?: string; tableSize?: number; nearest: Set<string>; clusters: Map<string, { total: number; min: number; max: number }> }>();
  for (const h of Object.values(s.health) as Array<{ services?: Array<{ service: string; vip?: string; affinity?: string; tableSize?: number; nearest?: string; clusters: Record<string, { total: number; healthy: number }> }> }>)
    for (const x of h.services ?? []) {
      const a = agg.get(x.service) ?? { vip: x.vip, affinity: x.affinity, tableSize: x.tableSize, nearest: new Set<string>(), clusters: new Map() };
      if (x.nearest) a.nearest.add(x.nearest);
      for (const [c, n] of Object.entries(x.clusters)) {
        const e = a.clusters.get(c);
        a.clusters.set(c, e ? { total: Math.max(e.total, n.total), min: Math.min(e.min, n.healthy), max: Math.max(e.max, n.healthy) } : { total: n.total, min: n.healthy, max: n.healthy });
      }
      agg.set(x.service, a);
    }
  for (const [name, a] of [...agg].sort()) {
    const per = [...a.clusters].sort().map(([c, n]) => `${c} ${n.min === n.max ? n.min : `${n.min}..${n.max}`}/${n.total} healthy`).join(', ');
    out.push(`  ${name}: VIP ${a.vip ?? '-'}, affinity ${a.affinity}${a.nearest.size ? ` (nearest: ${[...a.nearest].join(', ')})` : ''}, table ${a.tableSize}, backends ${per || 'none'}`);
  }
  for (const r of s.remotes) {
    const st = r.status;
    const synced = st?.synced ? Object.entries(st.synced).filter(([, v]) => v).map(([k]) => k).join(',') : '-';
    const hub = r.pinned?.relay ? `, hub relaying ${r.pinned.relayCIDRs?.join(', ') || 'NOTHING'}` : '';
    const pin = r.pinned ? `pinned id ${r.pinned.id}, underlay ${r.pinned.underlayCIDRs?.join(', ') ?? 'NONE'}${hub}, mesh-wide policies ${r.pinned.acceptPolicies ? 'enforced' : 'not enforced'}` : 'NOT pinned';
    out.push(`  ${r.name}: ${st?.connected ? 'connected' : 'NOT connected'}, synced [${synced}], nodes ${s.nodes.byRemote[r.name] ?? 0}, ${pin}${st?.lastError ? `, error: ${st.lastError}` : ''}`);
  }
  for (const w of s.warnings) out.push(`WARNING: ${w}`);
  for (const [node, h] of Object.entries(s.health))
    for (const u of h.unreachable ?? [])
      out.push(`WARNING: node ${node} cannot reach ${u.id} over the underlay (${u.endpoint ?? 'no endpoint'}): no handshake answer for ${u.forS} s; check routing/firewalls for UDP to that address`);
  out.push('Tunnels:');
  for (const [node, h] of Object.entries(s.health))
    for (const p of h.peers)
      out.push(`  ${node} -> ${p.id.padEnd(20)} handshake ${p.handshakeAgeS === null ? 'never' : `${p.handshakeAgeS}s ago`}, rx ${p.rxBytes} B, tx ${p.txBytes} B`);
  return out.map(printable);
}

/**
 * `--json`: the status as JSON, its lines printable too. JSON.stringify escapes C0 controls only; C1 controls (U+009B
 * is CSI where a terminal reads 8-bit controls) and bidi controls are escaped here, inside strings, where `\u`
 * escapes are JSON's own: the text parses back to the same status.
 */
export function meshStatusJson(s: MeshStatus): string {
  return JSON.stringify(s, null, 2).split('\n').map(printable).join('\n');
}

