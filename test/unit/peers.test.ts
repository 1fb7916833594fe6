// Peer reconciliation and relay planning (src/agent/peers.ts) without root: node records in,
// WireGuard peers, allowed IPs, TUN route batches, relay offers and the policy data path's node
// addresses and peer tags out. The device is the shipped FakeDevice (behind the calls
// WireGuardDevice makes of it), the policy side a real PolicyDatapath on that FakeDevice.
import { afterEach, describe, expect, it } from 'vitest';
import { cachePrefix, stateKey } from '../../src/controlplane/keys.js';
import { relayCodec, type NodeRecord, type RelayRecord } from '../../src/controlplane/records/index.js';
import { RESERVED } from '../../src/identity/identity.js';
import { silentLogger } from '../../src/log.js';
import { parseIP, type Prefix } from '../../src/net/ip.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { RouteTable } from '../../src/agent/routetable.js';
import { ROAM_MAX, roamHosts } from '../../src/wireguard/roaming.js';
import { desiredAt, PeerReconciler, relayOffer, relayPlan, type LocalNode, type PeerDevice, type PeerHandle } from '../../src/agent/peers.js';

const me: LocalNode = { cluster: 'c1', node: 'n1', addresses: ['198.18.1.1'], podCIDRs: ['100.65.1.0/24'] };

let keySeq = 0;
function node(cluster: string, name: string, podCIDRs: string[], over: Partial<NodeRecord> = {}): NodeRecord {
  const key = Buffer.alloc(32, ++keySeq).toString('base64');
  return { cluster, clusterId: Number(cluster.slice(1)), name, addresses: [`198.18.${cluster.slice(1)}.${keySeq % 250}`], port: 51820, publicKey: key, podCIDRs, bootId: '1', ...over };
}
const ownKey = (n: string) => stateKey('nodes', 'c1', n);
const cacheKey = (c: string, n: string) => `${cachePrefix('nodes', c)}${n}`;

/** PeerDevice over FakeDevice, as WireGuardDevice drives its native device (ids from 1, prefixes as rows). */
class FakePeers implements PeerDevice {
  readonly native = new FakeDevice();
  private next = 1;
  readonly byKey = new Map<string, PeerHandle>();
  addPeer(publicKey: Buffer): PeerHandle {
    const k = publicKey.toString('base64');
    let p = this.byKey.get(k);
    if (!p) {
      p = { id: this.next++, publicKey, lastHandshakeEpochMs: 0, initiatingSinceMs: 0 };
      this.byKey.set(k, p);
      this.native.upsertPeer(p.id);
    }
    return p;
  }
  removePeer(publicKey: Buffer): void {
    const p = this.byKey.get(publicKey.toString('base64'));
    if (!p) return;
    this.byKey.delete(publicKey.toString('base64'));
    this.native.removePeer(p.id);
  }
  setPeerEndpoint(peer: PeerHandle, ep: { host: string; port: number }): void {
    this.native.setEndpoint(peer.id, ep.host, ep.port);
  }
  setPeerRoaming(peer: PeerHandle, hosts: readonly string[]): void {
    this.native.setRoaming(peer.id, [...roamHosts(hosts)]); // as WireGuardDevice: the first ROAM_MAX, canonical
  }
  setPeerAllowedIPs(peer: PeerHandle, prefixes: Prefix[]): void {
    this.native.setAllowedIPs(peer.id, prefixes.map((p) => [p.addr, p.cidr]));
  }
  /** The fake peer of a node record. */
  of(rec: NodeRecord) {
    const p = this.byKey.get(rec.publicKey);
    return p ? this.native.peer(p.id) : undefined;
  }
}

function setup(opts: { policy?: boolean; podSpace?: Prefix[]; nodes?: Map<string, NodeRecord> } = {}) {
  const dev = new FakePeers();
  const batches: string[][] = [];
  const relays: string[] = [];
  const programmed: NodeRecord[][] = [];
  let changes = 0;
  const policy = opts.policy ? new PolicyDatapath(dev.native, me.cluster, me.node, { defaultLocalCluster: true }, silentLogger) : undefined;
  const r = new PeerReconciler({
    me,
    dev,
    routes: new RouteTable('wm0', (ops) => (batches.push(ops), Promise.resolve({ failed: new Map() })), silentLogger),
    ...(policy ? { policy } : {}),
    podSpace: () => opts.podSpace ?? [],
    peersChanged: () => changes++,
    publishRelay: (v) => relays.push(v),
    programmed: (c) => programmed.push(c),
    log: silentLogger,
    ...(opts.nodes ? { nodes: opts.nodes } : {}),
  });
  return { r, dev, batches, relays, programmed, policy, changes: () => changes };
}

const settle = () => new Promise((res) => setImmediate(res));
let cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup) f();
  cleanup = [];
});

describe('which node records are peers', () => {
  const nodes = new Map<string, NodeRecord>();
  const a = node('c1', 'n2', ['100.65.2.0/24']);
  const b = node('c2', 'm1', ['100.66.1.0/24']);
  nodes.set(ownKey('n2'), a).set(cacheKey('c2', 'm1'), b).set(ownKey('n1'), node('c1', 'n1', me.podCIDRs)).set(ownKey('x'), a).set(cacheKey('c1', 'n3'), node('c1', 'n3', ['100.65.3.0/24']));
  it('our cluster always, a remote only once synced; never ourselves, a record under another name, or a cached copy of our own cluster', () => {
    expect(desiredAt(me, ownKey('n2'), nodes, new Set())).toEqual({ id: 'c1/n2', rec: a });
    expect(desiredAt(me, cacheKey('c2', 'm1'), nodes, new Set())).toEqual({ id: 'c2/m1', rec: undefined });
    expect(desiredAt(me, cacheKey('c2', 'm1'), nodes, new Set(['c2']))).toEqual({ id: 'c2/m1', rec: b });
    expect(desiredAt(me, ownKey('n1'), nodes, new Set())?.rec).toBeUndefined();
    expect(desiredAt(me, ownKey('x'), nodes, new Set())).toEqual({ id: 'c1/x', rec: undefined });
    expect(desiredAt(me, cacheKey('c1', 'n3'), nodes, new Set(['c1']))?.rec).toBeUndefined();
    expect(desiredAt(me, ownKey('gone'), nodes, new Set())).toEqual({ id: 'c1/gone', rec: undefined });
    expect(desiredAt(me, 'wiremesh/other', nodes, new Set())).toBeNull();
  });
});

describe("the owner's node table (ReconcilerDeps.nodes: admission's, in the agent)", () => {
  it('reads the records from it, and setNodeRecord only schedules the pass that reads them', async () => {
    const owner = new Map<string, NodeRecord>();
    const { r, dev } = setup({ nodes: owner });
    r.setSynced('c2', true);
    const b = node('c2', 'm1', ['100.66.1.0/24']);
    // told of a record its owner does not hold: no peer (the table is what counts), and nothing written to it
    r.setNodeRecord(cacheKey('c2', 'm1'), b);
    await settle();
    expect(dev.of(b)).toBeUndefined();
    expect(owner.size).toBe(0);
    owner.set(cacheKey('c2', 'm1'), b);
    r.setNodeRecord(cacheKey('c2', 'm1'), b);
    await settle();
    expect(dev.of(b)?.allowedIPs).toBeDefined();
    owner.delete(cacheKey('c2', 'm1'));
    r.setNodeRecord(cacheKey('c2', 'm1'), undefined);
    await settle();
    expect(dev.of(b)).toBeUndefined();
    expect(r.peers.size).toBe(0);
  });
});

describe('relay planning', () => {
  const hubA = node('c2', 'a', ['100.66.1.0/24']);
  const hubB = node('c2', 'b', ['100.66.2.0/24']);
  const offer = (hub: NodeRecord, podCIDRs: string[], clusterIds = [3]): RelayRecord => ({ cluster: hub.cluster, node: hub.name, podCIDRs, clusterIds });
  const desired = new Map([['c2/a', hubA], ['c2/b', hubB]]);
  it('every node picks the same hub for a CIDR (the first offer by cluster/node) and never relays what it reaches directly', () => {
    const offers = [offer(hubB, ['100.67.1.0/24', '100.67.2.0/24']), offer(hubA, ['100.67.2.0/24', '100.66.2.0/24', '100.65.1.0/24'])];
    const plan = relayPlan(me, desired, offers, new Set(['c2']));
    expect([...plan]).toEqual([
      ['c2/a', ['100.67.2.0/24']],
      ['c2/b', ['100.67.1.0/24']],
    ]);
    // the same offers in any order: the same plan
    expect([...relayPlan(me, desired, [...offers].reverse(), new Set(['c2']))]).toEqual([...plan]);
  });
  it('offers count only from synced clusters, hubs we have a tunnel to, and other clusters than ours', () => {
    const offers = [offer(hubA, ['100.67.1.0/24'])];
    expect(relayPlan(me, desired, offers, new Set()).size).toBe(0);
    expect(relayPlan(me, new Map([['c2/b', hubB]]), offers, new Set(['c2'])).size).toBe(0);
    expect(relayPlan(me, desired, [{ cluster: 'c1', node: 'n2', podCIDRs: ['100.67.1.0/24'] }], new Set(['c1', 'c2'])).size).toBe(0);
  });
  it("a hub offers every remote cluster's pod CIDRs it reaches, with their cluster ids; a spoke offers nothing", () => {
    const d = new Map([['c2/a', hubA], ['c1/n2', node('c1', 'n2', ['100.65.2.0/24'])], ['c3/x', node('c3', 'x', ['100.68.1.0/24'])]]);
    expect(relayCodec.decode(stateKey('relays', 'c1', 'n1'), relayOffer(me, true, d))).toEqual({ cluster: 'c1', node: 'n1', podCIDRs: ['100.66.1.0/24', '100.68.1.0/24'], clusterIds: [2, 3] });
    expect(relayOffer(me, false, d)).toBe('');
    expect(relayOffer(me, true, new Map([['c1/n2', node('c1', 'n2', ['100.65.2.0/24'])]]))).toBe('');
  });
});

describe('PeerReconciler', () => {
  it('node records become peers with endpoints, allowed IPs and TUN routes, one batch per pass; a removed record takes them away', async () => {
    const { r, dev, batches, changes, programmed } = setup();
    const a = node('c1', 'n2', ['100.65.2.0/24']);
    const b = node('c1', 'n3', ['100.65.3.0/24', 'fd00:65:3::/64']);
    r.setNodeRecord(ownKey('n2'), a);
    r.setNodeRecord(ownKey('n3'), b);
    await settle();
    expect(dev.of(a)).toMatchObject({ endpoint: { host: a.addresses[0], port: 51820 }, allowedIPs: ['100.65.2.0/24'] });
    expect(dev.of(b)!.allowedIPs).toEqual(['100.65.3.0/24', 'fd00:65:3::/64']);
    expect(batches).toEqual([['route replace 100.65.2.0/24 dev wm0', 'route replace 100.65.3.0/24 dev wm0', 'route replace fd00:65:3::/64 dev wm0']]);
    expect(programmed.flat()).toEqual([a, b]);
    expect([...r.peers.keys()]).toEqual(['c1/n2', 'c1/n3']);
    expect(changes()).toBe(2);

    // the same content again (a new object): nothing is reprogrammed
    r.setNodeRecord(ownKey('n2'), { ...a });
    await settle();
    expect(batches).toHaveLength(1);
    expect(programmed).toHaveLength(1);

    r.setNodeRecord(ownKey('n3'), undefined);
    await settle();
    expect(dev.of(b)).toBeUndefined();
    expect(batches[1]).toEqual(['route del 100.65.3.0/24 dev wm0', 'route del fd00:65:3::/64 dev wm0']);
    expect([...r.peers.keys()]).toEqual(['c1/n2']);
  });

  it("a peer's endpoint roams only among its record's addresses; a changed record moves the set and the endpoint", async () => {
    const { r, dev } = setup();
    const a = node('c1', 'n2', ['100.65.2.0/24'], { addresses: ['198.18.1.2', '198.18.1.3'] });
    r.setNodeRecord(ownKey('n2'), a);
    await settle();
    expect(dev.of(a)).toMatchObject({ endpoint: { host: '198.18.1.2', port: 51820 }, roam: ['198.18.1.2', '198.18.1.3'] });
    // the record gives up the address in use: the endpoint follows to one it names now
    const moved = { ...a, addresses: ['198.18.1.9'] };
    r.setNodeRecord(ownKey('n2'), moved);
    await settle();
    expect(dev.of(moved)).toMatchObject({ endpoint: { host: '198.18.1.9', port: 51820 }, roam: ['198.18.1.9'] });
  });

  it("the endpoint's address is always in the roaming set, whatever the record's order (≥ 5 addresses, both families)", async () => {
    const { r, dev } = setup();
    // an IPv4 node (me) and a record whose first four addresses are IPv6: the endpoint is its IPv4 one
    const a = node('c1', 'n2', ['100.65.2.0/24'], { addresses: ['2001:db8::1', '2001:db8::2', '2001:db8::3', '2001:db8::4', '198.18.1.2', '198.18.1.12'] });
    r.setNodeRecord(ownKey('n2'), a);
    await settle();
    const p = dev.of(a)!;
    expect(p.endpoint).toEqual({ host: '198.18.1.2', port: 51820 });
    // oracle (roam.h): only the first ROAM_MAX addresses of the set count; the endpoint's must be one of them, so
    // the node's port change (NAT rebinding) can be followed; then the other addresses, our family first
    expect(p.roam).toEqual(['198.18.1.2', '198.18.1.12', '2001:db8::1', '2001:db8::2']);
    expect(p.roam!.slice(0, ROAM_MAX)).toContain(p.endpoint!.host);
  });

  it("a node naming a sibling's address: not in its roaming set nor its endpoint, until the sibling lets go", async () => {
    for (const policy of [false, true]) {
      const { r, dev } = setup({ policy });
      // n2 claims 198.18.1.2 first; n3's record names it too (first, then as its second address)
      const n2 = node('c1', 'n2', ['100.65.2.0/24'], { addresses: ['198.18.1.2'] });
      r.setNodeRecord(ownKey('n2'), n2);
      await settle();
      const n3 = node('c1', 'n3', ['100.65.3.0/24'], { addresses: ['198.18.1.2', '198.18.1.3'] });
      r.setNodeRecord(ownKey('n3'), n3);
      await settle();
      // a compromised n3 spoofing 198.18.1.2 must not point our traffic for it at n2
      expect(dev.of(n3)).toMatchObject({ endpoint: { host: '198.18.1.3', port: 51820 }, roam: ['198.18.1.3'] });
      expect(dev.of(n2)).toMatchObject({ endpoint: { host: '198.18.1.2', port: 51820 }, roam: ['198.18.1.2'] });
      const n3b = { ...n3, addresses: ['198.18.1.3', '198.18.1.2'] };
      r.setNodeRecord(ownKey('n3'), n3b);
      await settle();
      expect(dev.of(n3b)).toMatchObject({ endpoint: { host: '198.18.1.3', port: 51820 }, roam: ['198.18.1.3'] });
      // n2 gone: n3 holds the address now (as its allowed IPs do, policy on); its endpoint stays where it is
      r.setNodeRecord(ownKey('n2'), undefined);
      await settle();
      expect(dev.of(n3b)).toMatchObject({ endpoint: { host: '198.18.1.3', port: 51820 }, roam: ['198.18.1.3', '198.18.1.2'] });
      expect(dev.of(n3b)!.allowedIPs.includes('198.18.1.2/32')).toBe(policy);
    }
  });

  it('a new key replaces the peer; a remote cluster counts only while synced', async () => {
    const { r, dev } = setup();
    const a = node('c1', 'n2', ['100.65.2.0/24']);
    r.setNodeRecord(ownKey('n2'), a);
    await settle();
    const rekeyed = { ...a, publicKey: Buffer.alloc(32, 200).toString('base64') };
    r.setNodeRecord(ownKey('n2'), rekeyed);
    await settle();
    expect(dev.of(a)).toBeUndefined();
    expect(dev.of(rekeyed)!.allowedIPs).toEqual(['100.65.2.0/24']);

    const m = node('c2', 'm1', ['100.66.1.0/24']);
    r.setNodeRecord(cacheKey('c2', 'm1'), m);
    await settle();
    expect(dev.of(m)).toBeUndefined();
    r.setSynced('c2', true);
    await settle();
    expect(dev.of(m)!.allowedIPs).toEqual(['100.66.1.0/24']);
    expect(r.desiredNodes().get('c2/m1')).toBe(m);
    r.setSynced('c2', false);
    await settle();
    expect(dev.of(m)).toBeUndefined();
  });

  it('a sync marker rewritten (the mirror progressing) schedules no pass; a change of state does', async () => {
    const { r } = setup();
    r.setNodeRecord(cacheKey('c2', 'm1'), node('c2', 'm1', ['100.66.1.0/24']));
    r.setSynced('c2', true);
    await settle();
    let passes = 0;
    const reconcile = r.reconcile.bind(r);
    r.reconcile = () => {
      passes++;
      reconcile();
    };
    for (let i = 0; i < 20; i++) {
      r.setSynced('c2', true);
      await settle();
    }
    expect(passes).toBe(0);
    r.setSynced('c2', false);
    await settle();
    expect(passes).toBe(1);
    r.setSynced('c3', false); // never synced: nothing to do
    await settle();
    expect(passes).toBe(1);
  });

  it("hub and spoke: the hub's allowed IPs and the TUN take the CIDRs it relays; the hub moves them when its offer goes; a hub publishes its offer", async () => {
    const { r, dev, batches, relays } = setup();
    const hub = node('c2', 'hub', ['100.66.1.0/24']);
    r.setSynced('c2', true);
    r.setNodeRecord(cacheKey('c2', 'hub'), hub);
    r.setRelay(`${cachePrefix('relays', 'c2')}hub`, { cluster: 'c2', node: 'hub', podCIDRs: ['100.67.0.0/16'], clusterIds: [3] });
    await settle();
    expect(dev.of(hub)!.allowedIPs).toEqual(['100.66.1.0/24', '100.67.0.0/16']);
    expect(r.peers.get('c2/hub')!.relayed).toEqual(['100.67.0.0/16']);
    expect(batches.flat()).toContain('route replace 100.67.0.0/16 dev wm0');
    expect(relays.at(-1)).toBe(''); // not a hub ourselves

    // a spoke of c3 behind the hub appears directly: its CIDR is no longer relayed
    r.setSynced('c3', true);
    const direct = node('c3', 's', ['100.67.0.0/16']);
    r.setNodeRecord(cacheKey('c3', 's'), direct);
    await settle();
    expect(dev.of(hub)!.allowedIPs).toEqual(['100.66.1.0/24']);
    expect(dev.of(direct)!.allowedIPs).toEqual(['100.67.0.0/16']);
    // the route moved from one peer to the other within a pass: it stays installed
    expect(batches.flat().filter((op) => op.includes('100.67.0.0/16'))).toEqual(['route replace 100.67.0.0/16 dev wm0']);

    r.setRelayEnabled(true);
    await settle();
    expect(relayCodec.decode(stateKey('relays', 'c1', 'n1'), relays.at(-1)!)).toMatchObject({ podCIDRs: ['100.66.1.0/24', '100.67.0.0/16'], clusterIds: [2, 3] });
  });

  it('with policy: node addresses go to the first node that claims them, tags carry the relayed clusters, and the data path learns node addresses', async () => {
    const { r, dev, policy } = setup({ policy: true, podSpace: [] });
    cleanup.push(() => policy!.stop());
    const a = node('c1', 'n2', ['100.65.2.0/24'], { addresses: ['198.18.1.50'] });
    const b = node('c1', 'n3', ['100.65.3.0/24'], { addresses: ['198.18.1.50', '198.18.1.51'] });
    const podAddr = node('c1', 'n4', ['100.65.4.0/24'], { addresses: ['100.65.2.9'] });
    r.setNodeRecord(ownKey('n2'), a);
    await settle();
    r.setNodeRecord(ownKey('n3'), b);
    r.setNodeRecord(ownKey('n4'), podAddr);
    await settle();
    expect(dev.of(a)!.allowedIPs).toEqual(['100.65.2.0/24', '198.18.1.50/32']);
    expect(dev.of(b)!.allowedIPs).toEqual(['100.65.3.0/24', '198.18.1.51/32']);
    // an address inside a peer's pod CIDR is never taken as a node address
    expect(dev.of(podAddr)!.allowedIPs).toEqual(['100.65.4.0/24']);
    r.setNodeRecord(ownKey('n2'), undefined);
    await settle();
    expect(dev.of(b)!.allowedIPs).toEqual(['100.65.3.0/24', '198.18.1.50/32', '198.18.1.51/32']);

    await settle(); // the data path's ipcache flush
    expect(dev.native.ipcacheLookup(parseIP('198.18.1.51')!)).toEqual({ identity: RESERVED['remote-node'], endpoint: 0 });
    expect(dev.native.peer(dev.byKey.get(b.publicKey)!.id).identity).toEqual({ tagged: true, defaultIdentity: RESERVED.world, clusters: [1] });

    r.setSynced('c2', true);
    const hub = node('c2', 'hub', ['100.66.1.0/24']);
    r.setNodeRecord(cacheKey('c2', 'hub'), hub);
    r.setRelay(`${cachePrefix('relays', 'c2')}hub`, { cluster: 'c2', node: 'hub', podCIDRs: ['100.67.0.0/16'], clusterIds: [3] });
    await settle();
    expect(dev.native.peer(dev.byKey.get(hub.publicKey)!.id).identity!.clusters).toEqual([2, 3]);
  });

  it('stops: no pass runs after stop()', async () => {
    const { r, dev } = setup();
    r.stop();
    const a = node('c1', 'n2', ['100.65.2.0/24']);
    r.setNodeRecord(ownKey('n2'), a);
    await settle();
    expect(dev.of(a)).toBeUndefined();
  });
});
