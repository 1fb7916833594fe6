// Review of s23node's reconciler side (src/agent/peerstate.ts PeerEntry: routes derived from the record and the relayed
// CIDRs; src/policy/datapath.ts setNode(id, addrs, previous): no copy of a remote node's addresses): seeded hostile
// sequences (rewrites, same-content copies, deletes, key rotation and keys taken from another node, a node named as we
// are, addresses shared and ours, IPv4/IPv6/dual-stack, hub relay offers changing with no record change, remote clusters
// unsynced and synced again) and device failures injected mid-update. Oracles, from the reconciler's own `peers` and the
// records alone: the policy data path's node owners of every address are exactly the peers' records' (and our own node);
// with no failure, a peer's routes are its pod CIDRs then the CIDRs relayPlan gives it, and the TUN's route claims count
// exactly those. The last case is a failure the change did not bring (main failed it the same way), fixed with it
// (peers.ts removePeer: the handover last).
import { describe, expect, it } from 'vitest';
import { cachePrefix, stateKey } from '../../src/controlplane/keys.js';
import type { NodeRecord, RelayRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PeerReconciler, relayPlan, type LocalNode } from '../../src/agent/peers.js';
import { RouteTable } from '../../src/agent/routetable.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { prng } from '../helpers/prng.js';
import { readBooks } from '../helpers/routeclaims.js';

const POOL = ['198.18.0.1', '198.18.0.2', '198.18.0.3', 'fd00:18::1', 'fd00:18::2', '198.18.9.1', '100.64.0.7'];
const KEYS = Array.from({ length: 10 }, (_, i) => Buffer.alloc(32, i + 1).toString('base64')); // fewer than nodes: keys collide
const FAIL_HOST = '198.18.0.3';

type Fail = 'none' | 'roaming' | 'allowed';

function world(me: LocalNode, fail: Fail) {
  const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
  dev.setPrivateKey(Buffer.alloc(32, 99));
  const roam = dev.setPeerRoaming.bind(dev);
  const allowed = dev.setPeerAllowedIPs.bind(dev);
  // a device call failing mid-update (the reconciler's pass throws; its caller logs and goes on)
  if (fail === 'roaming') dev.setPeerRoaming = (p, hosts) => (hosts?.[0] === FAIL_HOST ? (() => { throw new TypeError('injected'); })() : roam(p, hosts));
  if (fail === 'allowed') dev.setPeerAllowedIPs = (p, pf) => (pf.length > 3 ? (() => { throw new Error('injected'); })() : allowed(p, pf));
  const dp = new PolicyDatapath(new FakeDevice(), me.cluster, me.node, { defaultLocalCluster: true }, silentLogger);
  dp.setNode(`${me.cluster}/${me.node}`, me.addresses); // the agent's own node: no `previous` (agent.ts)
  const routes = new RouteTable('wm0', () => Promise.resolve({ failed: new Map() }), silentLogger);
  const r = new PeerReconciler({ me, dev, routes, policy: dp, podSpace: () => [], peersChanged: () => {}, publishRelay: () => {}, programmed: () => {}, log: silentLogger });
  return { dev, dp, routes, r };
}


function run(seed: number, fail: Fail, steps: number): { failures: number; hubs: number } {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const me: LocalNode = { cluster: 'c1', node: 'n0', addresses: pick([['198.18.9.1'], ['fd00:18::9'], ['198.18.9.1', 'fd00:18::9']]), podCIDRs: ['100.64.0.0/24'] };
  const w = world(me, fail);
  const records = new Map<string, NodeRecord>();
  const relays = new Map<string, RelayRecord>();
  const synced = new Set<string>();
  let pod = 1;
  /** Every CIDR a record or relay offer named so far: where the route table's claims can be. */
  const seen = new Set<string>(me.podCIDRs);
  let failures = 0;
  let hubs = 0;
  for (let step = 0; step < steps; step++) {
    const x = rnd();
    if (x < 0.06) {
      const c = pick(['c2', 'c3']);
      const on = rnd() < 0.6;
      if (on) synced.add(c);
      else synced.delete(c);
      w.r.setSynced(c, on);
    } else if (x < 0.13) {
      // a hub's offer changes with no node record change
      const c = pick(['c2', 'c3']);
      const n = `n${1 + Math.floor(rnd() * 5)}`;
      const key = `relay/${c}/${n}`;
      const rec: RelayRecord | undefined =
        rnd() < 0.3 ? undefined : { cluster: c, node: n, podCIDRs: [`100.70.${Math.floor(rnd() * 4)}.0/24`, ...(rnd() < 0.5 ? [`100.71.${Math.floor(rnd() * 4)}.0/24`] : [])].sort(), clusterIds: [9] };
      if (rec) relays.set(key, rec);
      else relays.delete(key);
      rec?.podCIDRs.forEach((c) => seen.add(c));
      w.r.setRelay(key, rec && structuredClone(rec));
    } else if (x < 0.15) {
      w.r.setRelayEnabled(rnd() < 0.5);
    } else {
      const cluster = pick(['c1', 'c2', 'c3']);
      const name = `n${Math.floor(rnd() * 6)}`; // n0 in c1: a record for ourselves
      const key = cluster === me.cluster ? stateKey('nodes', cluster, name) : `${cachePrefix('nodes', cluster)}${name}`;
      const old = records.get(key);
      let rec: NodeRecord | undefined;
      if (old && x < 0.3) rec = undefined;
      else if (old && x < 0.4) rec = structuredClone(old); // a relist's same-content copy
      else {
        const n = rnd() < 0.6 ? 1 : 2 + Math.floor(rnd() * 2);
        rec = {
          cluster,
          clusterId: Number(cluster.slice(1)),
          name,
          addresses: [...new Set(Array.from({ length: n }, () => pick(POOL)))],
          port: 51820,
          publicKey: old && rnd() < 0.6 ? old.publicKey : pick(KEYS),
          podCIDRs: old && rnd() < 0.6 ? old.podCIDRs : rnd() < 0.1 ? [`100.70.${Math.floor(rnd() * 4)}.0/24`] : [`100.65.${pod++ & 255}.0/24`, ...(rnd() < 0.2 ? [`fd00:65:${pod}::/64`] : [])],
          bootId: '1',
        };
      }
      if (rec) records.set(key, rec);
      else records.delete(key);
      rec?.podCIDRs.forEach((c) => seen.add(c));
      w.r.setNodeRecord(key, rec && structuredClone(rec));
    }
    try {
      w.r.reconcile();
    } catch {
      failures++;
    }
    const ctx = `seed ${seed} ${fail} step ${step}`;
    // the data path's node owners are the peers' records' (whatever threw: setNode sits next to the map's change)
    for (const a of POOL) {
      const want = [...w.r.peers].filter(([, st]) => st.record.addresses.includes(a)).map(([id]) => id);
      if (me.addresses.includes(a)) want.push(`${me.cluster}/${me.node}`);
      expect(w.dp.ipcache.ownersOfKind(a, 'node').sort(), `${ctx} ${a}`).toEqual(want.sort());
    }
    if (fail !== 'none') continue;
    const plan = relayPlan(me, w.r.desiredNodes(), relays.values(), synced);
    const claims = new Map<string, number>();
    for (const [id, st] of w.r.peers) {
      const relayed = plan.get(id) ?? [];
      if (relayed.length) hubs++;
      expect([...st.routes], `${ctx} ${id} routes`).toEqual([...st.record.podCIDRs, ...relayed]);
      for (const c of st.routes) claims.set(c, (claims.get(c) ?? 0) + 2);
    }
    const held = [...readBooks(w.routes, seen)].filter(([, v]) => v >= 2).map(([k, v]) => [k, v & ~1] as const);
    expect(new Map(held), `${ctx} route claims`).toEqual(claims);
  }
  w.r.stop();
  w.dev.close();
  return { failures, hubs };
}

describe('s23node review: PeerEntry routes and setNode(previous) against oracles from the records', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`seed ${seed}: hostile records and relay offers, no failure`, () => expect(run(seed, 'none', 250).hubs).toBeGreaterThan(0));
    it(`seed ${seed}: a device call failing mid-update (roaming, allowed IPs): node owners still follow peers`, () => {
      expect(run(seed, 'roaming', 250).failures + run(seed, 'allowed', 250).failures).toBeGreaterThan(0);
    });
  }

  it('(found in review, older than s23node, fixed) a removal whose handover fails leaves no peer the device no longer holds: the record coming back is re-added', () => {
    // n1 and n2 claim one address; n1 goes: its handover programs n2's allowed IPs, which fails; n1's record returns
    const me: LocalNode = { cluster: 'c1', node: 'n0', addresses: ['198.18.9.1'], podCIDRs: ['100.64.0.0/24'] };
    const w = world(me, 'allowed');
    const rec = (name: string, key: string, pods: string[]): NodeRecord => ({ cluster: 'c1', clusterId: 1, name, addresses: ['198.18.0.1'], port: 51820, publicKey: key, podCIDRs: pods, bootId: '1' });
    const n1 = rec('n1', KEYS[0]!, ['100.65.1.0/24']);
    const n2 = rec('n2', KEYS[1]!, ['100.65.2.0/24', '100.65.3.0/24', '100.65.4.0/24']); // + the handed-over address: 4 prefixes
    w.r.setNodeRecord(stateKey('nodes', 'c1', 'n1'), n1);
    w.r.setNodeRecord(stateKey('nodes', 'c1', 'n2'), n2);
    w.r.reconcile();
    w.r.setNodeRecord(stateKey('nodes', 'c1', 'n1'), undefined);
    expect(() => w.r.reconcile()).toThrow('injected');
    w.r.setNodeRecord(stateKey('nodes', 'c1', 'n1'), n1);
    w.r.reconcile();
    expect(w.r.peers.has('c1/n1')).toBe(true);
    expect(w.dev.getPeer(Buffer.from(KEYS[0]!, 'base64')), 'the device holds the peer the reconciler holds').toBeDefined();
    expect(readBooks(w.routes, ['100.65.1.0/24']).get('100.65.1.0/24'), "n1's pod CIDR claimed").toBe(2);
    w.r.stop();
    w.dev.close();
  });
});
