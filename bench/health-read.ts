/**
 * The agent's periodic health read at P idle peers on the real native device (UDP only, no TUN; root not
 * needed), in one process, interleaved rounds, medians:
 * - the anchor: healthRecord(status()): the device's peerStats() of every peer, a PeerStatus each;
 * - this tree: healthOfPeers over peerStats(true) (the device's active peers only);
 * - the timers tick, and alone the walk over every peer that tick() no longer does.
 * - alone, the device's active read peerStats(true) and its full read peerStats().
 * A of the peers (default 0) hold a keypair: active ones, as peers with traffic are.
 * Usage: node dist/bench/health-read.js [P = 16000] [A = 0]. Prints one JSON line (milliseconds per call).
 */
import { healthOfPeers, healthRecord, peerStatuses } from '../src/agent/status.js';
import type { PeerState } from '../src/agent/peers.js';
import type { NodeRecord } from '../src/controlplane/types.js';
import { generatePrivateKey } from '../src/wireguard/crypto.js';
import { WireGuardDevice } from '../src/wireguard/device.js';

const P = Number(process.argv[2] ?? 16000);
const A = Number(process.argv[3] ?? 0);
const dev = new WireGuardDevice({ createTun: false, listenPort: 0, tickMs: 0 });
dev.setPrivateKey(generatePrivateKey());
const peers = new Map<string, PeerState>();
for (let i = 0; i < P; i++) {
  const peer = dev.addPeer(generatePrivateKey());
  dev.setPeerEndpoint(peer, { host: `198.18.${i >> 8}.${i & 255}`, port: 51820 });
  const cluster = `c${2 + (i % 15)}`;
  const record = { cluster, name: `n${i}`, podCIDRs: ['100.64.0.0/24'] } as NodeRecord;
  peers.set(`${cluster}/n${i}`, { record, peer, routes: [], relayed: [], claims: [], endpointHost: '198.18.0.1' });
  if (i < A) dev.native.installKeypair(peer.id, 2 * i + 1, 2 * i + 2, Buffer.alloc(32, 1), Buffer.alloc(32, 2), true);
}
const anchor = () => {
  const all = new Map(dev.native.peerStats().map((s) => [s.id, s]));
  return healthRecord({ syncedClusters: [], peers: peerStatuses(peers, all, Date.now(), dev.now()) }, [], new Date());
};
const ours = () => healthOfPeers([], peers, new Map(dev.native.peerStats(true).map((s) => [s.id, s])), Date.now(), dev.now(), [], new Date());
const walk = () => [...dev.peers.values()].filter((p) => p.timers.armed).length;
const time = (f: () => unknown, n: number) => {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f();
  return Number(process.hrtime.bigint() - t) / 1e6 / n;
};
for (let i = 0; i < 3; i++) anchor(), ours(), dev.tick();
const r = { anchor: [] as number[], ours: [] as number[], tick: [] as number[], walk: [] as number[], active: [] as number[], full: [] as number[] };
for (let round = 0; round < 5; round++) {
  r.anchor.push(time(anchor, 5));
  r.ours.push(time(ours, 5));
  r.tick.push(time(() => dev.tick(), 20));
  r.walk.push(time(walk, 20));
  r.active.push(time(() => dev.native.peerStats(true), 20));
  r.full.push(time(() => dev.native.peerStats(), 5));
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log(JSON.stringify({ peers: P, active: A, peerStatsActiveMs: med(r.active), peerStatsFullMs: med(r.full), healthReadMs: { anchor: med(r.anchor), ours: med(r.ours), ratio: med(r.anchor) / med(r.ours) }, tickMs: med(r.tick), fullWalkMs: med(r.walk) }));
dev.close();
