/**
 * `wiremesh ui`: a small web dashboard of the whole mesh, built from the
 * agents' API sockets (every agent of the testbed by default).
 *
 *   GET /           the page (src/ui/page.ts: plain HTML + script, no build step)
 *   GET /api/mesh   one snapshot: nodes (cluster, sync, endpoints), tunnels with
 *                   handshake age and throughput (bytes/s between two polls),
 *                   global services with backends per cluster and health, the
 *                   latest flow verdicts of every agent
 *
 * The page polls /api/mesh every second. The server keeps the previous byte
 * counters per tunnel to turn them into rates; everything else is read fresh.
 * A request whose Host header does not name the dashboard is refused with 421 (DNS rebinding: hostcheck.ts).
 */
import { listen } from '../net/listen.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { agentRequest } from '../agent/client.js';
import { clusterCounts } from '../services/counts.js';
import type { ServiceStatus } from '../services/datapath.js';
import type { Flow } from '../policy/flows.js';
import { PAGE } from './page.js';
import { hostAllowed } from './hostcheck.js';
import { AgentError } from '../errors.js';
import { agentStatusSchema, decodeAnswer, flowSchema, servicesAnswerSchema } from '../agent/wire.js';

/**
 * How long /api/mesh answers with the same snapshot after it was read (the page polls every second). Until s15
 * every request read every agent anew: 100 requests at once were 300 requests to each agent's API.
 */
export const SNAPSHOT_REUSE_MS = 500;

/** One flow line, or none when it does not decode (one bad line never hides the rest). */
function decodeLine(line: string): Flow[] {
  try {
    return [decodeAnswer(flowSchema, line, 'flow')];
  } catch {
    return [];
  }
}

export interface MeshSnapshot {
  at: string;
  clusters: string[];
  nodes: Array<{ id: string; cluster: string; node: string; up: boolean; error?: string; etcdConnected?: boolean; syncedClusters?: string[]; endpoints?: number; localEndpoints?: number; drops?: number }>;
  tunnels: Array<{ from: string; to: string; toCluster: string; endpoint?: string; handshakeAgeS: number | null; unreachableForS?: number; rxBps: number; txBps: number; rxBytes: number; txBytes: number }>;
  services: Array<{ name: string; vip?: string; global: boolean; affinity: string; tableSize?: number; clusters: Array<{ cluster: string; healthy: [number, number]; total: number; selected: [number, number] }> }>;
  flows: Flow[];
}

/** A GET to an agent that must answer 200 (2 s timeout). */
async function get(socket: string, path: string): Promise<string> {
  const r = await agentRequest(socket, 'GET', path, undefined, 2000);
  if (r.status !== 200) throw new AgentError('WM_AGENT_API', `${path}: HTTP ${r.status}`);
  return r.text;
}

export class MeshDashboard {
  private readonly lastBytes = new Map<string, { at: number; rx: number; tx: number; rxBps: number; txBps: number }>();

  /**
   * @param clock milliseconds on a monotonic clock (the snapshot's reuse time must not stretch or vanish when the
   *   wall clock is set back or forward); tests inject their own.
   */
  constructor(
    private readonly sockets: string[],
    private readonly flowsPerAgent = 30,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  async snapshot(): Promise<MeshSnapshot> {
    const now = this.clock(); // byte rates: monotonic, like the snapshot's reuse time
    const per = await Promise.all(
      this.sockets.map(async (socket) => {
        try {
          const [status, services, flows] = await Promise.all([
            get(socket, '/v1/status').then((t) => decodeAnswer(agentStatusSchema, t, '/v1/status')),
            get(socket, '/v1/services').then((t) => decodeAnswer(servicesAnswerSchema, t, '/v1/services').services as ServiceStatus[]).catch(() => [] as ServiceStatus[]),
            get(socket, `/v1/flows?last=${this.flowsPerAgent}`).then((t) => t.split('\n').filter(Boolean).flatMap((l) => decodeLine(l))).catch(() => [] as Flow[]),
          ]);
          return { socket, status, services, flows };
        } catch (err) {
          return { socket, error: (err as Error).message };
        }
      }),
    );
    const snap: MeshSnapshot = { at: new Date().toISOString(), clusters: [], nodes: [], tunnels: [], services: [], flows: [] };
    const clusters = new Set<string>();
    const svc = new Map<string, { s: ServiceStatus; per: Map<string, Array<{ healthy: number; total: number; selected: number }>> }>();
    for (const p of per) {
      if (!('status' in p) || !p.status) {
        snap.nodes.push({ id: p.socket, cluster: '?', node: p.socket, up: false, error: p.error });
        continue;
      }
      const st = p.status;
      const id = `${st.cluster}/${st.node}`;
      clusters.add(st.cluster);
      const drops = Object.entries(st.counters).filter(([k]) => k.startsWith('drop_')).reduce((a, [, v]) => a + v, 0);
      snap.nodes.push({ id, cluster: st.cluster, node: st.node, up: true, etcdConnected: st.etcdConnected, syncedClusters: st.syncedClusters, endpoints: st.endpoints, localEndpoints: st.localEndpoints, drops });
      for (const peer of st.peers) {
        const key = `${id}>${peer.id}`;
        const prev = this.lastBytes.get(key);
        let rxBps = prev?.rxBps ?? 0, txBps = prev?.txBps ?? 0;
        if (prev && now - prev.at >= 500) {
          const dt = (now - prev.at) / 1000;
          rxBps = Math.max(0, (peer.rxBytes - prev.rx) / dt);
          txBps = Math.max(0, (peer.txBytes - prev.tx) / dt);
        }
        if (!prev || now - prev.at >= 500) this.lastBytes.set(key, { at: now, rx: peer.rxBytes, tx: peer.txBytes, rxBps, txBps });
        snap.tunnels.push({ from: id, to: peer.id, toCluster: peer.cluster, endpoint: peer.endpoint, handshakeAgeS: peer.lastHandshakeAgeS, ...(peer.unreachableForS ? { unreachableForS: peer.unreachableForS } : {}), rxBps, txBps, rxBytes: peer.rxBytes, txBytes: peer.txBytes });
      }
      for (const s of p.services) {
        const name = `${s.namespace}/${s.name}`;
        const e = svc.get(name) ?? { s, per: new Map() };
        for (const [cl, c] of clusterCounts(s)) e.per.set(cl, [...(e.per.get(cl) ?? []), c]);
        svc.set(name, e);
      }
      snap.flows.push(...p.flows);
    }
    snap.clusters = [...clusters].sort();
    const range = (xs: number[]): [number, number] => [Math.min(...xs), Math.max(...xs)];
    for (const [name, { s, per }] of [...svc.entries()].sort()) {
      snap.services.push({
        name,
        ...(s.vip ? { vip: s.vip } : {}),
        global: s.global,
        affinity: s.affinity,
        ...(s.ports[0] ? { tableSize: s.ports[0].tableSize } : {}),
        clusters: [...per.entries()].sort().map(([cluster, xs]) => ({ cluster, healthy: range(xs.map((x) => x.healthy)), total: Math.max(...xs.map((x) => x.total)), selected: range(xs.map((x) => x.selected)) })),
      });
    }
    snap.nodes.sort((a, b) => (a.id < b.id ? -1 : 1));
    snap.flows.sort((a, b) => (a.time < b.time ? 1 : -1));
    snap.flows.splice(50);
    return snap;
  }

  /** The snapshot /api/mesh answers with, while it is read and for SNAPSHOT_REUSE_MS after. */
  private served: { at: number; snap: Promise<MeshSnapshot> } | undefined;
  /** Snapshots read for /api/mesh since the start (each is three requests to every agent). */
  snapshotsRead = 0;

  /**
   * What /api/mesh answers: one snapshot in flight, shared by every request that comes while it is read and in
   * the SNAPSHOT_REUSE_MS after it completed, so the agents answer at most three requests each per that time,
   * however many requests the dashboard gets (a web page the operator visits can send it any number:
   * `fetch('http://127.0.0.1:8300/api/mesh', {mode: 'no-cors'})` passes the Host check, and it needs no answer).
   */
  private shared(): Promise<MeshSnapshot> {
    const now = this.clock();
    const s = this.served;
    if (s && now - s.at < SNAPSHOT_REUSE_MS) return s.snap;
    this.snapshotsRead++;
    const snap = this.snapshot();
    const entry = { at: Number.POSITIVE_INFINITY, snap };
    this.served = entry;
    const settled = () => void (entry.at = this.clock());
    snap.then(settled, settled);
    return snap;
  }

  /** Host headers refused since the start (421: hostcheck.ts, DNS rebinding); the first few are logged to stderr. */
  refusedHosts = 0;

  async listen(port: number, host = '127.0.0.1'): Promise<Server> {
    const server = createServer((req, res) => {
      const bound = (server.address() as AddressInfo).port;
      if (!hostAllowed(req.headers.host, host, bound)) {
        if (this.refusedHosts++ < 10) process.stderr.write(`dashboard: refused Host ${JSON.stringify(req.headers.host ?? null)} (not this dashboard's host:port ${host}:${bound})\n`);
        res.writeHead(421, { 'content-type': 'text/plain', connection: 'close' }).end('misdirected request: this dashboard answers only its own host:port\n');
        return;
      }
      if (req.url === '/' || req.url === '/index.html') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
        return;
      }
      if (req.url === '/api/mesh') {
        this.shared().then(
          (s) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(s)),
          (err: Error) => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.message })),
        );
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    });
    await listen(server, port, host);
    return server;
  }
}
