// The agent's typed status and the views made from it (src/agent/status.ts): tunnels from peers and
// device counters, the health record for `clustermesh status`; and the services list those views
// share (ServiceDatapath.list, built once per services change, not once per reader).
import { describe, expect, it } from 'vitest';
import { nodeHealthCodec, type EndpointRecord, type NodeRecord } from '../../src/controlplane/records/index.js';
import { healthKey } from '../../src/controlplane/keys.js';
import { silentLogger } from '../../src/log.js';
import { validateManifest } from '../../src/manifests/validate.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { ServiceDatapath, type ServiceStatus } from '../../src/services/datapath.js';
import type { PeerState } from '../../src/agent/peers.js';
import { healthOfPeers, healthRecord, peerStatuses, type AgentStatus } from '../../src/agent/status.js';
import { prng } from '../helpers/prng.js';
import { EndpointRecordsMap } from '../../src/controlplane/endpointrecords.js';

const rec = (cluster: string, name: string): NodeRecord => ({ cluster, clusterId: 2, name, addresses: ['198.18.2.1'], port: 51820, publicKey: Buffer.alloc(32, 7).toString('base64'), podCIDRs: ['100.66.1.0/24'], bootId: '1' });
const peer = (id: number, lastHandshakeEpochMs: number, initiatingSinceMs: number) => ({ id, publicKey: Buffer.alloc(32, id), lastHandshakeEpochMs, initiatingSinceMs });

describe('status', () => {
  const peers: Array<[string, PeerState]> = [
    ['c2/a', { record: rec('c2', 'a'), peer: peer(1, 990_000, 0), routes: ['100.66.1.0/24', '100.67.0.0/16'], relayed: ['100.67.0.0/16'], claims: [], endpointHost: '198.18.2.1' }],
    ['c2/b', { record: rec('c2', 'b'), peer: peer(2, 0, 40_000), routes: ['100.66.1.0/24'], relayed: [], claims: [], endpointHost: '198.18.2.1' }],
  ];
  // the device's per-peer counters, as the native device reports them (the shipped FakeDevice)
  const fd = new FakeDevice();
  fd.upsertPeer(1);
  fd.setEndpoint(1, '198.18.2.1', 51820);
  Object.assign(fd.peer(1).stats, { rxBytes: 100, txBytes: 200, rxPackets: 1, txPackets: 2 });
  const stats = new Map(fd.peerStats().map((s) => [s.id, s]));
  const list = peerStatuses(peers, stats, 1_000_000, 60_000);

  it('a tunnel: handshake age, relayed CIDRs, counters; unreachable after 15 s of initiating', () => {
    expect(list[0]).toEqual({ id: 'c2/a', cluster: 'c2', endpoint: '198.18.2.1:51820', podCIDRs: ['100.66.1.0/24'], relayed: ['100.67.0.0/16'], lastHandshakeAgeS: 10, unreachableForS: undefined, rxBytes: 100, txBytes: 200, rxPackets: 1, txPackets: 2 });
    expect(list[1]).toMatchObject({ id: 'c2/b', endpoint: undefined, lastHandshakeAgeS: null, unreachableForS: 20, rxBytes: 0 });
    expect(peerStatuses(peers, stats, 1_000_000, 50_000)[1]!.unreachableForS).toBeUndefined();
  });

  it('the health record: tunnels and live ones per cluster, active peers, unreachable ones, global services; it encodes', () => {
    const st: AgentStatus = { cluster: 'c1', clusterId: 1, node: 'n1', listenPort: 51820, etcdConnected: true, syncedClusters: ['c2'], handshakes: { initiated: 0, completed: 0, rejected: 0, crossed: 0 }, endpoints: 0, localEndpoints: 0, registration: { state: 'registered', pendingEndpoints: 0, failures: 0 }, peers: list, counters: {}, rejections: { total: 0, recent: [] }, pinnedClusters: [] };
    const svc: ServiceStatus[] = [
      { namespace: 'shop', name: 'web', vip: '100.127.0.10', global: true, shared: true, affinity: 'none', clusters: [], ports: [{ name: '', port: 80, protocol: 'TCP', tableSize: 251, maxBackendsPerCluster: 4096, backends: [{ cluster: 'c2', node: 'a', pod: 'web-1', ip: '100.66.1.5', port: 80, weight: 1, state: 'selected' }] }] },
      { namespace: 'shop', name: 'db', global: false, shared: false, affinity: 'none', clusters: [], ports: [] },
    ];
    const h = healthRecord(st, svc, new Date(0));
    expect(h).toEqual({
      at: '1970-01-01T00:00:00.000Z',
      syncedClusters: ['c2'],
      clusters: { c2: { peers: 2, live: 1 } },
      unreachable: [{ id: 'c2/b', endpoint: undefined, forS: 20 }],
      services: [{ service: 'shop/web', vip: '100.127.0.10', affinity: 'none', tableSize: 251, clusters: { c2: { total: 1, healthy: 1, selected: 1 } } }],
      peers: [{ id: 'c2/a', cluster: 'c2', handshakeAgeS: 10, rxBytes: 100, txBytes: 200 }],
    });
    expect(nodeHealthCodec.decode(healthKey('c1', 'n1'), nodeHealthCodec.encode(h)).clusters).toEqual({ c2: { peers: 2, live: 1 } });
  });
});

describe('the services list', () => {
  it('is built once per change and shared by its readers', () => {
    const endpoint: EndpointRecord = { ip: '100.65.1.5', cluster: 'c1', node: 'n1', namespace: 'shop', name: 'web-1', labels: { app: 'web' } };
    const endpoints = new EndpointRecordsMap().set('state/ip/v2/c1/n1/100.65.1.5', endpoint);
    const svc = new ServiceDatapath(new FakeDevice(), 'fake0', 'c1', 'n1', { maglevTableSize: 251, endpoints }, silentLogger, () => undefined);
    svc.upsertEndpoint('state/ip/v2/c1/n1/100.65.1.5', endpoint, undefined);
    // (no VIP: nothing is routed on the host)
    svc.upsertRecord('k1', 'c1', validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: 'None', selector: { app: 'web' }, ports: [{ port: 80 }] } }));
    const first = svc.list();
    expect(first.map((s) => s.name)).toEqual(['web']);
    expect(svc.list()).toBe(first);
    svc.compute();
    const after = svc.list();
    expect(after).not.toBe(first);
    expect(after[0]!.ports[0]!.backends.map((b) => b.ip)).toEqual(['100.65.1.5']);
    expect(svc.list()).toBe(after);
    svc.removeRecord('k1');
    expect(svc.list()).toEqual([]);
    svc.stop();
  });
});

// The health record from the peers and the device's active peers only (what the agent publishes every 5 s)
// against the reference: healthRecord over status()'s full read of every peer's counters.
describe('the health record without a full read of the counters', () => {
  it.each([1, 2, 3, 4, 5])('equals healthRecord(status) on random peer sets (seed %i)', (seed) => {
    const rand = prng(seed);
    const nowMs = 2_000_000_000;
    const monoMs = 1_000_000;
    for (let round = 0; round < 20; round++) {
      const fd = new FakeDevice();
      const peers: Array<[string, PeerState]> = [];
      const n = 1 + Math.floor(rand() * 700); // past the 500 listed peers sometimes
      for (let i = 1; i <= n; i++) {
        const cluster = `c${2 + Math.floor(rand() * 4)}`;
        const r = rand();
        // never, recently, long ago (not live), or at the 180 s edge
        const hs = r < 0.4 ? 0 : r < 0.7 ? nowMs - Math.floor(rand() * 100_000) : r < 0.9 ? nowMs - 200_000 - Math.floor(rand() * 1e6) : nowMs - 179_400 - Math.floor(rand() * 1200);
        const init = rand() < 0.3 ? monoMs - Math.floor(rand() * 40_000) : 0;
        const endpoint = { host: `198.18.${Math.floor(i / 250)}.${i % 250}`, port: 51820 };
        fd.upsertPeer(i);
        fd.setEndpoint(i, endpoint.host, endpoint.port);
        // the device's contract: a peer outside peerStats(true) has all counters 0
        if (hs || rand() < 0.2) Object.assign(fd.peer(i).stats, { rxBytes: Math.floor(rand() * 1e6), txBytes: Math.floor(rand() * 1e6), rxPackets: 1 + Math.floor(rand() * 100), txPackets: Math.floor(rand() * 100) });
        peers.push([`${cluster}/n${i}`, { record: rec(cluster, `n${i}`), peer: { ...peer(i, hs, init), endpoint }, routes: [], relayed: [], claims: [], endpointHost: endpoint.host }]);
      }
      const all = new Map(fd.peerStats().map((s) => [s.id, s]));
      const active = new Map(fd.peerStats(true).map((s) => [s.id, s]));
      const at = new Date(nowMs);
      const ref = healthRecord({ syncedClusters: ['c2', 'c3'], peers: peerStatuses(peers, all, nowMs, monoMs) }, [], at);
      expect(healthOfPeers(['c2', 'c3'], peers, active, nowMs, monoMs, [], at)).toEqual(ref);
    }
  });
});
