/**
 * The agent's status (GET /v1/status, `wiremesh status`), typed, and the views
 * made from it: the health record published for `wiremesh clustermesh status`
 * (healthRecord) and the metrics snapshot (agent.ts metricsSnapshot).
 */
import type { NodeHealth } from '../controlplane/records/index.js';
import type { RejectionEntry } from '../controlplane/records/rejections.js';
import type { GatewayStats } from '../gateway/gateway.js';
import type { NativePeerStats } from '../native/binding.js';
import type { ProxyStats } from '../proxy/proxy.js';
import { clusterCounts } from '../services/counts.js';
import type { ServiceStatus } from '../services/datapath.js';
import type { DnsCounters } from '../services/dns.js';
import type { EndpointQuotaStatus } from './endpointquota.js';
import type { PeerState } from './peers.js';
import type { RegistrationStatus } from './registrationstate.js';

/** One tunnel as GET /v1/status shows it. */
export interface PeerStatus {
  /** "cluster/node". */
  id: string;
  cluster: string;
  /** host:port the peer was last heard from (absent before). */
  endpoint?: string;
  podCIDRs: string[];
  /** Pod CIDRs of other clusters reached through this (hub) node. */
  relayed?: string[];
  /** Seconds since the last handshake; null before the first. */
  lastHandshakeAgeS: number | null;
  /** Seconds we have been initiating without an answer, past 15 s (three RekeyTimeouts). */
  unreachableForS?: number;
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** GET /v1/status. */
export interface AgentStatus {
  cluster: string;
  clusterId: number;
  node: string;
  /** Base64 WireGuard public key. */
  publicKey?: string;
  listenPort: number;
  /** Every watch of etcd is connected. */
  etcdConnected: boolean;
  syncedClusters: string[];
  /** Noise handshakes since start: initiated here, completed (either side), rejected, crossed (a peer initiation that crossed ours: both answered, noise.ts). */
  handshakes: { initiated: number; completed: number; rejected: number; crossed: number };
  /** Endpoint records known (own cluster and cached). */
  endpoints: number;
  localEndpoints: number;
  /** This node's records in etcd: registered, or pending/failed with the reason (retried). */
  registration: RegistrationStatus;
  peers: PeerStatus[];
  /** The native data path's counters (and the pod guard's, with policy). */
  counters: Record<string, number>;
  /** Records refused (docs/security.md): how many, and the latest with key and reason. */
  rejections: { total: number; recent: RejectionEntry[] };
  /** The bound on each node's endpoints and those held back at it (endpointquota.ts). */
  admission?: EndpointQuotaStatus;
  /** Node, relay and local endpoint records held until this cluster's cluster-config is read (admission.ts). */
  awaitingClusterConfig?: number;
  pinnedClusters: Array<{ name: string; id: number; relay: boolean; acceptPolicies: boolean }>;
  proxy?: ProxyStats;
  gateway?: { address: string; routerAddress: string | undefined; listeners: GatewayStats[] };
  services?: { count: number; lastComputeMs: number; dns?: DnsCounters };
  /** flowsNotSent: flow records not sent to followers of the flow stream that read too slowly (agent/api.ts). */
  policy?: { identities: number; localEndpoints: number; lastCompileMs: number; warnings: number; flowsNotSent: number };
}

/**
 * The tunnels' status from the peers and the device's per-peer counters (by
 * peer id); `nowMs` wall clock, `monoMs` the device's monotonic clock.
 */
export function peerStatuses(peers: Iterable<[string, PeerState]>, stats: ReadonlyMap<number, NativePeerStats>, nowMs: number, monoMs: number): PeerStatus[] {
  return [...peers].map(([id, st]) => {
    const s = stats.get(st.peer.id);
    return {
      id,
      cluster: st.record.cluster,
      endpoint: s?.host ? `${s.host}:${s.port}` : undefined,
      podCIDRs: st.record.podCIDRs,
      ...(st.relayed.length ? { relayed: [...st.relayed] } : {}),
      lastHandshakeAgeS: st.peer.lastHandshakeEpochMs ? Math.round((nowMs - st.peer.lastHandshakeEpochMs) / 1000) : null,
      // initiating for more than 15 s (three RekeyTimeouts) without an answer
      unreachableForS: st.peer.initiatingSinceMs && monoMs - st.peer.initiatingSinceMs > 15_000 ? Math.round((monoMs - st.peer.initiatingSinceMs) / 1000) : undefined,
      rxBytes: s?.rxBytes ?? 0,
      txBytes: s?.txBytes ?? 0,
      rxPackets: s?.rxPackets ?? 0,
      txPackets: s?.txPackets ?? 0,
    };
  });
}

/**
 * This node's health record (health/v1/<cluster>/<node>) from its status and
 * its services list: per cluster, tunnels and live tunnels (handshake < 180 s);
 * per tunnel only the active ones, at most 500, so the record stays small with
 * thousands of peers; at most 100 unreachable peers and 200 global services.
 */
export function healthRecord(s: Pick<AgentStatus, 'syncedClusters' | 'peers'>, services: readonly ServiceStatus[], at: Date): NodeHealth {
  const clusters: Record<string, { peers: number; live: number }> = {};
  for (const p of s.peers) {
    const c = (clusters[p.cluster] ??= { peers: 0, live: 0 });
    c.peers++;
    if (p.lastHandshakeAgeS !== null && p.lastHandshakeAgeS < 180) c.live++;
  }
  return healthFrom(s.syncedClusters, clusters, s.peers, services, at);
}

/**
 * The same health record as healthRecord(status()), without status()'s read of every peer's counters: at
 * 16,000 peers that read (the device's peerStats() of every peer, then a PeerStatus each) took ~350 ms of the
 * agent's thread every 5 s. Of most peers the record needs only the cluster and the handshake age, which the
 * peers hold; counters and the endpoint only of the peers it lists (a handshake, or initiating), and those come
 * from `active`, the device's peerStats(true): the peers with anything authenticated sent or received, a
 * handshake requested or a keypair (a peer without any of these has all counters 0). An initiating peer the
 * device does not list yet shows the endpoint we initiate to. One pass over the peers, no allocation for the
 * others. `nowMs` wall clock, `monoMs` the device's monotonic clock.
 */
export function healthOfPeers(
  syncedClusters: string[],
  peers: Iterable<[string, PeerState]>,
  active: ReadonlyMap<number, NativePeerStats>,
  nowMs: number,
  monoMs: number,
  services: readonly ServiceStatus[],
  at: Date,
): NodeHealth {
  const clusters: Record<string, { peers: number; live: number }> = {};
  const listed: Array<[string, PeerState]> = [];
  for (const entry of peers) {
    const { record, peer } = entry[1];
    const c = (clusters[record.cluster] ??= { peers: 0, live: 0 });
    c.peers++;
    // as peerStatuses rounds the age: live while the rounded age is under 180 s
    if (peer.lastHandshakeEpochMs && Math.round((nowMs - peer.lastHandshakeEpochMs) / 1000) < 180) c.live++;
    if (peer.lastHandshakeEpochMs || (peer.initiatingSinceMs && monoMs - peer.initiatingSinceMs > 15_000)) listed.push(entry);
  }
  const statuses = peerStatuses(listed, active, nowMs, monoMs);
  statuses.forEach((st, i) => {
    const ep = listed[i]![1].peer.endpoint;
    if (st.endpoint === undefined && ep) st.endpoint = `${ep.host}:${ep.port}`;
  });
  return healthFrom(syncedClusters, clusters, statuses, services, at);
}

function healthFrom(syncedClusters: string[], clusters: Record<string, { peers: number; live: number }>, peers: PeerStatus[], services: readonly ServiceStatus[], at: Date): NodeHealth {
  const s = { syncedClusters, peers };
  const active = s.peers.filter((p) => p.lastHandshakeAgeS !== null).slice(0, 500);
  const unreachable = s.peers.flatMap((p) => (p.unreachableForS !== undefined ? [{ id: p.id, endpoint: p.endpoint, forS: p.unreachableForS }] : [])).slice(0, 100);
  // global services as this node sees them: backends per cluster, healthy, table size (clustermesh status)
  const global = services.filter((x) => x.global).slice(0, 200).map((x) => ({
    service: `${x.namespace}/${x.name}`,
    vip: x.vip,
    affinity: x.affinity,
    tableSize: x.ports[0]?.tableSize,
    ...(x.ports[0]?.nearest ? { nearest: x.ports[0].nearest } : {}),
    clusters: Object.fromEntries(clusterCounts(x)),
  }));
  return { at: at.toISOString(), syncedClusters: s.syncedClusters, clusters, unreachable, services: global, peers: active.map((p) => ({ id: p.id, cluster: p.cluster, handshakeAgeS: p.lastHandshakeAgeS, rxBytes: p.rxBytes, txBytes: p.txBytes })) };
}
