/**
 * Prometheus metrics of one agent (prom-client), read at scrape time from
 * what the agent already keeps: native counters (one call), per-peer stats,
 * the service table, the proxy's counters, the control plane's sync state.
 * Nothing is counted per packet in JavaScript; a scrape takes one snapshot
 * and every metric's collect() reads from it.
 *
 * Served on GET /metrics of the agent's API socket and, when node.yaml has
 * `metrics: { address, port }`, on that TCP address for Prometheus.
 * Names and labels: docs/metrics.md.
 */
import type { Server } from 'node:net';
import { serveMetrics } from '../net/metricsserver.js';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { ServiceStatus } from '../services/datapath.js';
import type { NativeL7ProxyStats } from '../native/binding.js';
import type { ProxyProcessStatus } from '../proxy/proxy.js';
import type { RouteTableStats } from './routetable.js';
import type { DnsCounters } from '../services/dns.js';
import { registerDnsMetrics } from '../services/dnsmetrics.js';
import type { RegistrationStatus } from './registrationstate.js';
import type { AgentStatus } from './status.js';
import { CONNTRACK_PRESSURE, NATIVE_COUNTERS, ROUTE_COUNTERS, VERDICTS } from './metricrows.js';

/** One scrape's view of the agent (Agent.metricsSnapshot). */
export interface MetricsSnapshot {
  peers: Array<{ id: string; cluster: string; rxBytes: number; txBytes: number; rxPackets: number; txPackets: number; lastHandshakeAgeS: number | null }>;
  counters: Record<string, number>;
  handshakes: AgentStatus['handshakes'];
  services: readonly ServiceStatus[];
  /** The L7 proxy's counters and its process's state (src/proxy/proxy.ts ProxyStats). */
  proxy?: NativeL7ProxyStats & Partial<ProxyProcessStatus>;
  etcdConnected: boolean;
  syncedClusters: string[];
  /**
   * Per remote cluster whose kvstoremesh heartbeat is in our cache (it is leased: gone when that kvstoremesh is):
   * the heartbeat's replication lag on arrival (NaN until one is seen rewritten: the first may predate the
   * connection) and when it arrived (ms since the epoch).
   */
  syncLag: Map<string, { lagMs: number; receivedAtMs: number }>;
  /** kvstoremesh's view of each remote (wiremesh/mesh/v1/status/<remote>); behindSince in ms since the epoch. */
  remotes: Array<{ cluster: string; connected: boolean; behindSince?: number; synced: Record<string, boolean>; entries: Record<string, number>; relists: number; rejected?: Record<string, number> }>;
  /** Records this agent refused, by the cluster the key named, type and reason (records/rejections.ts). */
  rejections: Array<{ origin: string; type: string; reason: string; count: number }>;
  /** Endpoints refused for their node's bound and waiting for room, by origin cluster (endpointquota.ts). */
  endpointsHeldBack?: Record<string, number>;
  /** Records held until this cluster's cluster-config is read (admission.ts). */
  awaitingClusterConfig?: number;
  policy?: { identities: number; localEndpoints: number; lastCompileMs: number; flowsNotSent?: number };
  /** The TUN's route writes (routetable.ts): `ip -batch` runs and lines, and those that failed (each retried). */
  routes?: RouteTableStats;
  /** The node's service DNS server's counters (src/services/dns.ts), when it runs. */
  dns?: DnsCounters;
  /** This node's registration in etcd (registrationstate.ts). */
  registration?: RegistrationStatus;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private snap: MetricsSnapshot | undefined;

  constructor(
    labels: { cluster: string; node: string },
    private readonly snapshot: () => MetricsSnapshot,
  ) {
    this.registry.setDefaultLabels(labels);
    collectDefaultMetrics({ register: this.registry, prefix: 'wiremesh_agent_' });
    const reg = [this.registry];
    const s = () => this.snap!;
    // prom-client counters only go up by inc(); totals read from elsewhere are set with reset() + inc(value).
    const totals = (c: Counter<string>, rows: Array<[Record<string, string>, number]>) => {
      c.reset();
      for (const [l, v] of rows) c.inc(l, Math.max(0, v));
    };
    const perPeer = (name: string, help: string, rx: 'rxBytes' | 'rxPackets', tx: 'txBytes' | 'txPackets') =>
      new Counter({
        name,
        help,
        labelNames: ['peer', 'peer_cluster', 'direction'],
        registers: reg,
        collect() {
          totals(this, s().peers.flatMap((p) => [[{ peer: p.id, peer_cluster: p.cluster, direction: 'rx' }, p[rx]], [{ peer: p.id, peer_cluster: p.cluster, direction: 'tx' }, p[tx]]] as Array<[Record<string, string>, number]>));
        },
      });
    perPeer('wiremesh_peer_bytes_total', 'WireGuard bytes to and from each peer node (UDP payload, encrypted).', 'rxBytes', 'txBytes');
    perPeer('wiremesh_peer_packets_total', 'WireGuard messages (data and keepalives) to and from each peer node.', 'rxPackets', 'txPackets');
    new Gauge({
      name: 'wiremesh_peer_handshake_age_seconds',
      help: 'Seconds since the last completed handshake with each peer (absent: never).',
      labelNames: ['peer', 'peer_cluster'],
      registers: reg,
      collect() {
        this.reset();
        for (const p of s().peers) if (p.lastHandshakeAgeS !== null) this.set({ peer: p.id, peer_cluster: p.cluster }, p.lastHandshakeAgeS);
      },
    });
    new Counter({
      name: 'wiremesh_handshakes_total',
      help: 'Noise IK handshakes: initiated by this node, completed (either side), rejected (bad MACs, replays, unknown keys), crossed (a peer initiation that crossed ours, answered while ours was kept).',
      labelNames: ['result'],
      registers: reg,
      collect() {
        const h = s().handshakes;
        totals(this, [[{ result: 'initiated' }, h.initiated], [{ result: 'completed' }, h.completed], [{ result: 'rejected' }, h.rejected], [{ result: 'crossed' }, h.crossed]]);
      },
    });
    new Counter({
      name: 'wiremesh_packets_total',
      help: 'Packets through the data path: rx = from the UDP socket, tx = to it.',
      labelNames: ['direction'],
      registers: reg,
      collect() {
        const c = s().counters;
        totals(this, [[{ direction: 'rx' }, c.rx_packets ?? 0], [{ direction: 'tx' }, c.tx_packets ?? 0]]);
      },
    });
    new Counter({
      name: 'wiremesh_drops_total',
      help: 'Packets dropped by the data path, by reason (docs/metrics.md lists them).',
      labelNames: ['reason'],
      registers: reg,
      collect() {
        const c = s().counters;
        const rows: Array<[Record<string, string>, number]> = [];
        for (const [k, v] of Object.entries(c)) if (k.startsWith('drop_')) rows.push([{ reason: k.slice(5).replace(/_/g, '-') }, v]);
        totals(this, rows);
      },
    });
    new Counter({
      name: 'wiremesh_policy_verdicts_total',
      help: 'Policy decisions on new flows: forwarded, denied (a deny rule), default-deny, redirected (to the L7 proxy).',
      labelNames: ['verdict'],
      registers: reg,
      collect() {
        const c = s().counters;
        totals(this, Object.entries(VERDICTS).map(([k, v]) => [{ verdict: v }, c[k] ?? 0] as [Record<string, string>, number]));
      },
    });
    new Counter({
      name: 'wiremesh_l7_requests_total',
      help: 'HTTP requests the L7 proxy decided: allowed or denied (403); bad = malformed, answered 400/431/501.',
      labelNames: ['verdict'],
      registers: reg,
      collect() {
        const p = s().proxy;
        if (!p) return this.reset();
        totals(this, [[{ verdict: 'allowed' }, p.requests - p.denied], [{ verdict: 'denied' }, p.denied], [{ verdict: 'bad' }, p.badRequests]]);
      },
    });
    new Counter({
      name: 'wiremesh_registration_failures_total',
      help: "Failed attempts to write this node's registration to etcd (its node record, an endpoint's identity or records), each retried with a doubling pause (1 s to 30 s).",
      registers: reg,
      collect() {
        totals(this, [[{}, s().registration?.failures ?? 0]]);
      },
    });
    new Gauge({
      name: 'wiremesh_registered',
      help: "1 while this node's record and every local endpoint's are written under a live etcd lease; 0 while registration is pending or failed (GET /v1/status `registration` says why).",
      registers: reg,
      collect() {
        this.set(s().registration?.state === 'registered' ? 1 : 0);
      },
    });
    new Counter({
      name: 'wiremesh_proxy_restarts_total',
      help: 'Times the L7 proxy process exited or was killed (a crash, a signal) and the agent started it again.',
      registers: reg,
      collect() {
        totals(this, [[{}, s().proxy?.restarts ?? 0]]);
      },
    });
    new Gauge({
      name: 'wiremesh_proxy_up',
      help: '1 while the L7 proxy process listens; 0 while it is down (redirected flows are refused then).',
      registers: reg,
      collect() {
        const p = s().proxy;
        if (!p) return this.reset();
        this.set(p.up === false ? 0 : 1);
      },
    });
    new Counter({
      name: 'wiremesh_proxy_fd_exhausted_total',
      help: 'Times the L7 proxy ran out of descriptors or memory at accept, or was refused (EPERM, EACCES), and paused accepting (until a descriptor closed on that worker, retried every second).',
      registers: reg,
      collect() {
        totals(this, [[{}, s().proxy?.fdExhausted ?? 0]]);
      },
    });
    new Counter({
      name: 'wiremesh_proxy_lookups_failed_total',
      help: 'Connections the L7 proxy closed at accept for want of their original destination: the agent did not answer in 250 ms (timeout), the lookup could not be sent: channel gone or full (unsent), or the client address had its share (128 of 1024) of lookups in flight on that worker (limited).',
      labelNames: ['reason'],
      registers: reg,
      collect() {
        const p = s().proxy;
        totals(this, [[{ reason: 'timeout' }, p?.lookupTimeouts ?? 0], [{ reason: 'limited' }, p?.lookupsLimited ?? 0], [{ reason: 'unsent' }, p?.lookupsUnsent ?? 0]]);
      },
    });
    new Counter({
      name: 'wiremesh_proxy_messages_rejected_total',
      help: 'Messages from the L7 proxy process the agent refused, by reason (not-json, too-large, schema, records, kind, frame, budget).',
      labelNames: ['reason'],
      registers: reg,
      collect() {
        totals(this, Object.entries(s().proxy?.rejectedMessages ?? {}).map(([reason, n]) => [{ reason }, n] as [Record<string, string>, number]));
      },
    });
    new Counter({
      name: 'wiremesh_service_selections_total',
      help: 'New flows to a service VIP given a backend by Maglev, and flows rejected (no backend, backend dead).',
      labelNames: ['result'],
      registers: reg,
      collect() {
        const c = s().counters;
        totals(this, [[{ result: 'selected' }, c.service_new_flows ?? 0], [{ result: 'no-backend' }, c.service_reject_no_backend ?? 0], [{ result: 'dead-backend' }, c.service_reject_dead_backend ?? 0]]);
      },
    });
    new Gauge({
      name: 'wiremesh_service_backends',
      help: 'Backends of each service per cluster and state (selected, standby, dead, over-limit: healthy but past its cluster\'s bound), first port.',
      labelNames: ['service', 'backend_cluster', 'state'],
      registers: reg,
      collect() {
        this.reset();
        for (const svc of s().services) {
          const counts = new Map<string, number>();
          for (const b of svc.ports[0]?.backends ?? []) counts.set(`${b.cluster}\0${b.state}`, (counts.get(`${b.cluster}\0${b.state}`) ?? 0) + 1);
          for (const [k, n] of counts) {
            const [cl, state] = k.split('\0') as [string, string];
            this.set({ service: `${svc.namespace}/${svc.name}`, backend_cluster: cl, state }, n);
          }
        }
      },
    });
    new Gauge({
      name: 'wiremesh_conntrack_entries',
      help: 'Entries in the policy conntrack and the service NAT table.',
      labelNames: ['table'],
      registers: reg,
      collect() {
        const c = s().counters;
        this.set({ table: 'conntrack' }, c.conntrack_entries ?? 0);
        this.set({ table: 'service-nat' }, c.service_nat_entries ?? 0);
      },
    });
    new Gauge({
      name: 'wiremesh_service_nat_endpoint_entries',
      help: 'Service NAT entries of the client endpoint holding most (now, and the peak since start); each is within policy.conntrack.natPerEndpoint.',
      labelNames: ['stat'],
      registers: reg,
      collect() {
        const c = s().counters;
        this.set({ stat: 'max' }, c.service_nat_endpoint_max_entries ?? 0);
        this.set({ stat: 'peak' }, c.service_nat_endpoint_peak_entries ?? 0);
      },
    });
    new Counter({
      name: 'wiremesh_conntrack_pressure_total',
      help: 'Connection tables under pressure: unreplied entries evicted, eviction sweeps, new flows left without an entry (table or per-endpoint quota full).',
      labelNames: ['table', 'event'],
      registers: reg,
      collect() {
        const c = s().counters;
        totals(this, CONNTRACK_PRESSURE.map(([table, event, k]) => [{ table, event }, c[k] ?? 0] as [Record<string, string>, number]));
      },
    });
    new Gauge({
      name: 'wiremesh_etcd_connected',
      help: '1 when every watch on the local etcd is connected.',
      registers: reg,
      collect() {
        this.set(s().etcdConnected ? 1 : 0);
      },
    });
    new Gauge({
      name: 'wiremesh_controlplane_sync_lag_seconds',
      help: "How long this cluster's copy of each remote cluster's state has not been known current (0 when it is): our kvstoremesh's behindSince (not yet synced, watches down, or a received change unwritten for over 1 s).",
      labelNames: ['remote'],
      registers: reg,
      collect() {
        this.reset();
        const now = Date.now();
        for (const r of s().remotes) this.set({ remote: r.cluster }, r.behindSince === undefined ? 0 : Math.max(0, now - r.behindSince) / 1000);
      },
    });
    new Gauge({
      name: 'wiremesh_controlplane_remote_kvstoremesh_up',
      help: "1 while a remote cluster's kvstoremesh heartbeat (leased: it goes with that process) is in this cluster's cache.",
      labelNames: ['remote'],
      registers: reg,
      collect() {
        this.reset();
        const { remotes, syncLag } = s();
        for (const r of remotes) this.set({ remote: r.cluster }, syncLag.has(r.cluster) ? 1 : 0);
        for (const c of syncLag.keys()) this.set({ remote: c }, 1);
      },
    });
    new Gauge({
      name: 'wiremesh_controlplane_heartbeat_lag_seconds',
      help: "A remote kvstoremesh's last heartbeat's age when this agent's watch delivered it: the whole path's lag, sampled every 5 min from the first rewrite this agent sees (needs synchronized clocks).",
      labelNames: ['remote'],
      registers: reg,
      collect() {
        this.reset();
        for (const [c, l] of s().syncLag) if (Number.isFinite(l.lagMs)) this.set({ remote: c }, l.lagMs / 1000);
      },
    });
    new Gauge({
      name: 'wiremesh_remote_cluster_synced',
      help: "1 when a remote cluster's state is fully synced into this agent (its kvstoremesh sync markers).",
      labelNames: ['remote'],
      registers: reg,
      collect() {
        this.reset();
        for (const c of s().syncedClusters) this.set({ remote: c }, 1);
      },
    });
    new Gauge({
      name: 'wiremesh_kvstoremesh_remote_connected',
      help: "This cluster's kvstoremesh: 1 when every watch on the remote's etcd is connected.",
      labelNames: ['remote'],
      registers: reg,
      collect() {
        this.reset();
        for (const r of s().remotes) this.set({ remote: r.cluster }, r.connected ? 1 : 0);
      },
    });
    new Gauge({
      name: 'wiremesh_kvstoremesh_remote_entries',
      help: "This cluster's kvstoremesh: records mirrored from each remote, by type.",
      labelNames: ['remote', 'type'],
      registers: reg,
      collect() {
        this.reset();
        for (const r of s().remotes) for (const [t, n] of Object.entries(r.entries)) this.set({ remote: r.cluster, type: t }, n);
      },
    });
    new Counter({
      name: 'wiremesh_kvstoremesh_remote_relists_total',
      help: "This cluster's kvstoremesh: full relists of each remote (a watch that lost its place).",
      labelNames: ['remote'],
      registers: reg,
      collect() {
        totals(this, s().remotes.map((r) => [{ remote: r.cluster }, r.relists] as [Record<string, string>, number]));
      },
    });
    new Counter({
      name: 'wiremesh_records_rejected_total',
      help: 'Records this agent refused (decode failures, claims their origin may not make, conflicts), by the cluster the key names, record type and reason (docs/security.md).',
      labelNames: ['origin', 'type', 'reason'],
      registers: reg,
      collect() {
        totals(this, s().rejections.map((r) => [{ origin: r.origin, type: r.type, reason: r.reason }, r.count] as [Record<string, string>, number]));
      },
    });
    new Gauge({
      name: 'wiremesh_endpoints_held_back',
      help: "Endpoints refused for their node's bound (admission.maxEndpointsPerNode) and waiting for room, by the cluster the key names.",
      labelNames: ['origin'],
      registers: reg,
      collect() {
        this.reset();
        for (const [origin, n] of Object.entries(s().endpointsHeldBack ?? {})) this.set({ origin }, n);
      },
    });
    new Gauge({
      name: 'wiremesh_records_awaiting_cluster_config',
      help: "Node, relay and local endpoint records held (neither admitted nor refused) until this cluster's cluster-config is read.",
      registers: reg,
      collect() {
        this.set(s().awaitingClusterConfig ?? 0);
      },
    });
    new Counter({
      name: 'wiremesh_kvstoremesh_records_rejected_total',
      help: "This cluster's kvstoremesh: records of each remote refused at ingest, by type and reason.",
      labelNames: ['remote', 'type', 'reason'],
      registers: reg,
      collect() {
        const rows: Array<[Record<string, string>, number]> = [];
        for (const r of s().remotes)
          for (const [tr, n] of Object.entries(r.rejected ?? {})) {
            const [type, reason] = tr.split('/') as [string, string];
            rows.push([{ remote: r.cluster, type, reason }, n]);
          }
        totals(this, rows);
      },
    });
    const single: Array<[string, string, () => number]> = [
      ...ROUTE_COUNTERS.map(([name, help, field]): [string, string, () => number] => [name, help, () => s().routes?.[field] ?? 0]),
      ...NATIVE_COUNTERS.map(([name, help, c]): [string, string, () => number] => [name, help, () => s().counters[c] ?? 0]),
    ];
    for (const [name, help, read] of single)
      new Counter({
        name,
        help,
        registers: reg,
        collect() {
          totals(this, [[{}, read()]]);
        },
      });
    registerDnsMetrics(this.registry, 'wiremesh_dns', "The node's service DNS", () => s().dns);
    new Counter({
      name: 'wiremesh_flows_not_sent_total',
      help: 'Flow records not sent to followers of the flow stream (GET /v1/flows?follow=1) that read too slowly.',
      registers: reg,
      collect() {
        totals(this, [[{}, s().policy?.flowsNotSent ?? 0]]);
      },
    });
    new Gauge({
      name: 'wiremesh_policy_identities',
      help: 'Identities known to this agent, local endpoints, and the last policy compile time.',
      labelNames: ['what'],
      registers: reg,
      collect() {
        this.reset();
        const p = s().policy;
        if (!p) return;
        this.set({ what: 'identities' }, p.identities);
        this.set({ what: 'local-endpoints' }, p.localEndpoints);
        this.set({ what: 'last-compile-ms' }, p.lastCompileMs);
      },
    });
  }

  /** The exposition text (one snapshot for the whole scrape). */
  async text(): Promise<string> {
    this.snap = this.snapshot();
    try {
      return await this.registry.metrics();
    } finally {
      this.snap = undefined;
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus endpoint on a TCP address (node.yaml metrics). */
  listen(address: string, port: number): Promise<Server> {
    return serveMetrics(this, address, port);
  }
}
