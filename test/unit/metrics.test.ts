// The agent's Prometheus metrics from a snapshot (no agent needed), and the
// node.yaml metrics section.
import { describe, expect, it } from 'vitest';
import { AgentMetrics, type MetricsSnapshot } from '../../src/agent/metrics.js';
import { parseAgentConfig } from '../../src/agent/config.js';

function snapshot(over: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  return {
    peers: [{ id: 'c2/n1', cluster: 'c2', rxBytes: 1000, txBytes: 2000, rxPackets: 10, txPackets: 20, lastHandshakeAgeS: 7 }, { id: 'c1/n2', cluster: 'c1', rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, lastHandshakeAgeS: null }],
    counters: { rx_packets: 30, tx_packets: 40, drop_replayed: 3, drop_policy_denied: 2, policy_forwarded_new_flows: 9, policy_redirected_flows: 1, policy_icmp_unrecorded: 17, endpoint_roam_refused: 6, service_new_flows: 5, service_reject_dead_backend: 1, conntrack_entries: 12, conntrack_evicted: 4500 },
    handshakes: { initiated: 4, completed: 3, rejected: 1, crossed: 2 },
    services: [{ namespace: 'shop', name: 'api', global: true, shared: true, affinity: 'none', clusters: [], ports: [{ name: 'http', port: 80, protocol: 'TCP', tableSize: 251, maxBackendsPerCluster: 4096, backends: [
      { cluster: 'c1', ip: '100.65.1.10', port: 8080, weight: 1, node: 'n1', state: 'selected' },
      { cluster: 'c2', ip: '100.66.1.10', port: 8080, weight: 1, node: 'n1', state: 'dead' },
    ] as never }] }],
    proxy: { connections: 2, active: 1, requests: 10, denied: 4, upstreamErrors: 0, passthrough: 0, badRequests: 1, recordsLost: 0, h2Refused: 0, h2cIgnored: 0, headTimeouts: 0, bodyTimeouts: 0, limited: 0, fdExhausted: 0, acceptErrors: 0, maxConnections: 16384, lookupTimeouts: 0, lookupsLimited: 0, lookupsUnsent: 0 },
    etcdConnected: true,
    syncedClusters: ['c2'],
    syncLag: new Map([['c2', { lagMs: 120, receivedAtMs: Date.now() - 1000 }]]),
    remotes: [{ cluster: 'c2', connected: true, behindSince: Date.now() - 3000, synced: { nodes: true }, entries: { nodes: 2, ip: 5 }, relists: 1, rejected: { 'node/claim': 3 } }],
    rejections: [{ origin: 'c2', type: 'identity', reason: 'claim', count: 2 }],
    endpointsHeldBack: { c2: 3000 },
    awaitingClusterConfig: 7,
    policy: { identities: 6, localEndpoints: 2, lastCompileMs: 1.5 },
    ...over,
  };
}

const line = (text: string, prefix: string) => text.split('\n').find((l) => l.startsWith(prefix));

describe('agent metrics', () => {
  it('exposes tunnels, handshakes, drops, verdicts, services, L7 and control-plane state with cluster and node labels', async () => {
    const m = new AgentMetrics({ cluster: 'c1', node: 'n1' }, () => snapshot());
    const t = await m.text();
    expect(line(t, 'wiremesh_peer_bytes_total{peer="c2/n1",peer_cluster="c2",direction="tx"')).toMatch(/,cluster="c1",node="n1"} 2000$/);
    expect(line(t, 'wiremesh_peer_packets_total{peer="c2/n1",peer_cluster="c2",direction="rx"')).toMatch(/ 10$/);
    expect(line(t, 'wiremesh_peer_handshake_age_seconds{peer="c2/n1"')).toMatch(/ 7$/);
    expect(line(t, 'wiremesh_peer_handshake_age_seconds{peer="c1/n2"')).toBeUndefined(); // never: absent
    expect(line(t, 'wiremesh_handshakes_total{result="completed"')).toMatch(/ 3$/);
    expect(line(t, 'wiremesh_handshakes_total{result="crossed"')).toMatch(/ 2$/);
    expect(line(t, 'wiremesh_records_rejected_total{origin="c2",type="identity",reason="claim"')).toMatch(/ 2$/);
    expect(line(t, 'wiremesh_kvstoremesh_records_rejected_total{remote="c2",type="node",reason="claim"')).toMatch(/ 3$/);
    expect(line(t, 'wiremesh_endpoints_held_back{origin="c2"')).toMatch(/ 3000$/);
    expect(line(t, 'wiremesh_records_awaiting_cluster_config{')).toMatch(/ 7$/);
    expect(line(t, 'wiremesh_drops_total{reason="replayed"')).toMatch(/ 3$/);
    expect(line(t, 'wiremesh_drops_total{reason="policy-denied"')).toMatch(/ 2$/);
    expect(line(t, 'wiremesh_policy_verdicts_total{verdict="redirected"')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_policy_icmp_unrecorded_total{')).toMatch(/ 17$/);
    expect(line(t, 'wiremesh_endpoint_roam_refused_total{')).toMatch(/ 6$/);
    expect(line(t, 'wiremesh_service_selections_total{result="dead-backend"')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_conntrack_pressure_total{table="conntrack",event="evicted"')).toMatch(/ 4500$/);
    expect(line(t, 'wiremesh_conntrack_pressure_total{table="service-nat",event="evicted"')).toMatch(/ 0$/);
    expect(line(t, 'wiremesh_service_backends{service="shop/api",backend_cluster="c2",state="dead"')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_l7_requests_total{verdict="allowed"')).toMatch(/ 6$/);
    expect(line(t, 'wiremesh_controlplane_heartbeat_lag_seconds{remote="c2"')).toMatch(/ 0\.12$/);
    expect(Number(line(t, 'wiremesh_controlplane_sync_lag_seconds{remote="c2"')!.split(' ').pop())).toBeGreaterThanOrEqual(3);
    expect(line(t, 'wiremesh_controlplane_remote_kvstoremesh_up{remote="c2"')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_kvstoremesh_remote_entries{remote="c2",type="ip"')).toMatch(/ 5$/);
    expect(line(t, 'wiremesh_etcd_connected{')).toMatch(/ 1$/);
    expect(line(t, 'wiremesh_registered{')).toMatch(/ 0$/); // no registration in the snapshot: not registered
    const failed = await new AgentMetrics({ cluster: 'c1', node: 'n1' }, () => snapshot({ registration: { state: 'failed', reason: 'x', pendingEndpoints: 1, failures: 3 } })).text();
    expect(line(failed, 'wiremesh_registration_failures_total{')).toMatch(/ 3$/);
    expect(line(failed, 'wiremesh_registered{')).toMatch(/ 0$/);
    const ok = await new AgentMetrics({ cluster: 'c1', node: 'n1' }, () => snapshot({ registration: { state: 'registered', pendingEndpoints: 0, failures: 3 } })).text();
    expect(line(ok, 'wiremesh_registered{')).toMatch(/ 1$/);
    expect(t).toMatch(/^# TYPE wiremesh_peer_bytes_total counter$/m);
    expect(t).toMatch(/^wiremesh_agent_process_cpu_seconds_total/m);
  });

  it('counters follow the totals they read, scrape after scrape', async () => {
    let s = snapshot();
    const m = new AgentMetrics({ cluster: 'c1', node: 'n1' }, () => s);
    await m.text();
    s = snapshot({ handshakes: { initiated: 9, completed: 8, rejected: 1, crossed: 2 }, peers: [] });
    const t = await m.text();
    expect(line(t, 'wiremesh_handshakes_total{result="completed"')).toMatch(/ 8$/);
    expect(line(t, 'wiremesh_peer_bytes_total{')).toBeUndefined(); // a peer that went away is gone
  });

  it('node.yaml metrics: address required, port defaults to 9962, unknown fields named', () => {
    const base = 'cluster: { name: c1, id: 1 }\nnode: { name: n1, addresses: [198.18.1.10], podCIDRs: [100.65.1.0/24] }\nwireguard: { privateKeyFile: /tmp/k }\netcd: { endpoints: [http://198.18.1.2:2379] }\n';
    expect(parseAgentConfig(`${base}metrics: { address: 198.18.1.10 }\n`).metrics).toEqual({ address: '198.18.1.10', port: 9962 });
    expect(() => parseAgentConfig(`${base}metrics: { port: 9000 }\n`)).toThrow(/metrics\.address: required/);
    expect(() => parseAgentConfig(`${base}metrics: { address: 198.18.1.10, path: /m }\n`)).toThrow(/metrics\.path: unknown field/);
    expect(() => parseAgentConfig(`${base}metrics: { address: nowhere }\n`)).toThrow(/metrics\.address/);
    expect(parseAgentConfig(base).metrics).toBeUndefined();
  });
});
