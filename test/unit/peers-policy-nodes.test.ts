// The node addresses the peer reconciler (src/agent/peers.ts) gives the real policy data path, which since s23node
// keeps no copy of them per node (the reconciler passes the addresses it set last, from its node record): seeded
// record sequences (one address or several, IPv4 and IPv6, shared between nodes, address and key changes, same-content
// rewrites, removals, a remote cluster unsynced and synced again) against an oracle from the records alone: every
// pool address is owned, as a node address, by exactly the desired nodes whose records name it.
import { describe, expect, it } from 'vitest';
import { cachePrefix, stateKey } from '../../src/controlplane/keys.js';
import type { NodeRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PeerReconciler, type LocalNode } from '../../src/agent/peers.js';
import { RouteTable } from '../../src/agent/routetable.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { prng } from '../helpers/prng.js';

const me: LocalNode = { cluster: 'c1', node: 'n0', addresses: ['198.18.9.1'], podCIDRs: ['100.64.0.0/24'] };
const POOL = ['198.18.0.1', '198.18.0.2', '198.18.0.3', '198.18.0.4', 'fd00:18::1', 'fd00:18::2', 'fd00:18:1::9'];

function run(seed: number, steps: number): number {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
  dev.setPrivateKey(generatePrivateKey());
  const dp = new PolicyDatapath(new FakeDevice(), me.cluster, me.node, { defaultLocalCluster: true }, silentLogger);
  const r = new PeerReconciler({ me, dev, routes: new RouteTable('wm0', () => Promise.resolve({ failed: new Map() }), silentLogger), policy: dp, podSpace: () => [], peersChanged: () => {}, publishRelay: () => {}, programmed: () => {}, log: silentLogger });
  const records = new Map<string, NodeRecord>();
  const synced = new Set<string>();
  let pod = 1;
  let peak = 0;
  for (let step = 0; step < steps; step++) {
    const x = rnd();
    if (x < 0.08) {
      const c = pick(['c2', 'c3']);
      const on = !synced.has(c);
      if (on) synced.add(c);
      else synced.delete(c);
      r.setSynced(c, on);
    } else {
      const cluster = pick(['c1', 'c2', 'c3']);
      const name = `n${1 + Math.floor(rnd() * 8)}`;
      const key = cluster === me.cluster ? stateKey('nodes', cluster, name) : `${cachePrefix('nodes', cluster)}${name}`;
      const old = records.get(key);
      if (old && x < 0.25) {
        records.delete(key);
        r.setNodeRecord(key, undefined);
      } else {
        const n = rnd() < 0.6 ? 1 : 2 + Math.floor(rnd() * 2);
        const rec: NodeRecord =
          old && x < 0.32
            ? (JSON.parse(JSON.stringify(old)) as NodeRecord) // a relist's same-content copy
            : {
                cluster,
                clusterId: Number(cluster.slice(1)),
                name,
                addresses: [...new Set(Array.from({ length: n }, () => pick(POOL)))],
                port: 51820,
                publicKey: old && rnd() < 0.7 ? old.publicKey : generatePrivateKey().toString('base64'),
                podCIDRs: old && rnd() < 0.7 ? old.podCIDRs : [`100.65.${pod++ & 255}.0/24`],
                bootId: '1',
              };
        records.set(key, rec);
        r.setNodeRecord(key, rec);
      }
    }
    r.reconcile();
    const want = new Map<string, string[]>(POOL.map((a) => [a, []]));
    for (const rec of records.values())
      if (rec.cluster === me.cluster || synced.has(rec.cluster)) for (const a of rec.addresses) want.get(a)!.push(`${rec.cluster}/${rec.name}`);
    for (const a of POOL) expect(dp.ipcache.ownersOfKind(a, 'node').sort(), `seed ${seed} step ${step} ${a}`).toEqual(want.get(a)!.sort());
    peak = Math.max(peak, r.peers.size);
  }
  r.stop();
  dev.close();
  return peak;
}

describe('PeerReconciler + PolicyDatapath: node addresses against the records-only oracle', () => {
  for (const seed of [1, 2, 3, 4, 5]) it(`seed ${seed}`, () => expect(run(seed, 300)).toBeGreaterThan(3));
});
