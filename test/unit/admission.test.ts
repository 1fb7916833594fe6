// What an agent lets into its data path (src/agent/admission.ts), against
// expectations written from docs/security.md: a node's CIDRs inside its
// cluster's pin and no one else's, an endpoint inside its own node's CIDRs,
// identities and relays as their origin may claim them.
import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/agent/admission.js';
import { Rejections } from '../../src/controlplane/records/rejections.js';
import { Trust } from '../../src/controlplane/records/trust.js';
import type { EndpointRecord, IdentityRecord, NodeRecord, RelayRecord } from '../../src/controlplane/records/index.js';

const KEY = 'A'.repeat(42) + 'A=';
const node = (cluster: string, clusterId: number, name: string, podCIDRs: string[], addresses = [`198.18.${clusterId}.10`]): NodeRecord => ({ cluster, clusterId, name, addresses, port: 51820, publicKey: KEY, podCIDRs, bootId: '1' });
const ep = (cluster: string, nodeName: string, ip: string, identity?: number): EndpointRecord => ({ ip, cluster, node: nodeName, namespace: 'ns', name: `p-${ip.replace(/[.:]/g, '-')}`, labels: { app: 'x' }, ...(identity ? { identity } : {}) });
const nodeKey = (c: string, n: string) => `wiremesh/${c === 'c1' ? 'state' : 'cache'}/nodes/v1/${c}/${n}`;
const epKey = (c: string, n: string, ip: string) => `wiremesh/${c === 'c1' ? 'state' : 'cache'}/ip/v2/${c}/${n}/${ip}`;

function setup() {
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
  trust.pin({ name: 'c0', id: 9, podCIDRs: ['100.69.0.0/16'], underlayCIDRs: ['198.18.9.0/24'], relay: true, relayCIDRs: ['100.70.0.0/16'], acceptPolicies: false });
  const rejections = new Rejections();
  const seen = { node: new Map<string, NodeRecord>(), endpoint: new Map<string, EndpointRecord>(), identity: new Map<string, IdentityRecord>(), relay: new Map<string, RelayRecord>() };
  const put = <T>(m: Map<string, T>) => (k: string, r: T | undefined) => (r ? m.set(k, r) : m.delete(k));
  const a = new Admission(trust, rejections, { node: put(seen.node), endpoint: put(seen.endpoint), identity: put(seen.identity), relay: put(seen.relay) });
  return { trust, rejections, seen, a, reasons: () => rejections.recent.map((e) => `${e.type}/${e.reason}`) };
}

describe('agent admission', () => {
  it('a remote node must carry its pinned id and CIDRs inside its pinned ones', () => {
    const { a, seen, reasons } = setup();
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 1, 'n1', ['100.66.1.0/24']));
    a.upsert('node', nodeKey('c2', 'n2'), 'c2', node('c2', 2, 'n2', ['100.66.2.0/24', '100.65.2.0/24']));
    a.upsert('node', nodeKey('c2', 'n3'), 'c2', node('c2', 2, 'n3', ['100.66.3.0/24']));
    expect([...seen.node.keys()]).toEqual([nodeKey('c2', 'n3')]);
    expect(reasons()).toEqual(['node/claim', 'node/claim']);
  });

  it('overlapping pod CIDRs: the first node keeps them; the other is admitted once they are free', () => {
    const { a, seen, reasons } = setup();
    a.upsert('node', nodeKey('c1', 'n1'), 'c1', node('c1', 1, 'n1', ['100.65.1.0/24']));
    a.upsert('node', nodeKey('c1', 'n2'), 'c1', node('c1', 1, 'n2', ['100.65.1.128/25']));
    expect(seen.node.has(nodeKey('c1', 'n2'))).toBe(false);
    expect(reasons()).toEqual(['node/conflict']);
    a.remove('node', nodeKey('c1', 'n1'));
    expect(seen.node.has(nodeKey('c1', 'n2'))).toBe(true);
  });

  it('an update that is refused leaves the previous value in force', () => {
    const { a, seen } = setup();
    const good = node('c2', 2, 'n1', ['100.66.1.0/24']);
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', good);
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24', '100.65.7.0/24']));
    expect(seen.node.get(nodeKey('c2', 'n1'))).toBe(good);
  });

  it('regression: a refused value of a new incarnation of the key (reborn) withdraws the admitted one, kept as the candidate', () => {
    const { a, seen } = setup();
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24']));
    const k = epKey('c2', 'n1', '100.66.1.10');
    const idKey = 'wiremesh/cache/identities/v1/c2/131372';
    a.upsert('endpoint', k, 'c2', ep('c2', 'n1', '100.66.1.10'));
    a.upsert('identity', idKey, 'c2', { id: 2 * 65536 + 300, labels: { app: 'x' } });
    // refused updates of the same incarnation: the admitted values stay in force
    a.upsert('endpoint', k, 'c2', ep('c2', 'n1', '100.66.2.10'));
    a.upsert('identity', idKey, 'c2', { id: 1 * 65536 + 300, labels: { app: 'x' } });
    expect(seen.endpoint.size + seen.identity.size).toBe(2);
    // the same values of a new incarnation (deleted and created again): the deleted ones go
    a.upsert('endpoint', k, 'c2', ep('c2', 'n1', '100.66.2.10'), true);
    a.upsert('identity', idKey, 'c2', { id: 1 * 65536 + 300, labels: { app: 'x' } }, true);
    expect(seen.endpoint.size + seen.identity.size).toBe(0);
    // the candidate stays: admitted once it holds (its node now owns its address)
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24', '100.66.2.0/24']));
    expect(seen.endpoint.get(k)?.ip).toBe('100.66.2.10');
  });

  it('regression: an endpoint kept in force after a refused update goes with its node', () => {
    const { a, seen } = setup();
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24']));
    const good = ep('c2', 'n1', '100.66.1.10');
    a.upsert('endpoint', epKey('c2', 'n1', '100.66.1.10'), 'c2', good);
    a.upsert('endpoint', epKey('c2', 'n1', '100.66.1.10'), 'c2', ep('c2', 'n1', '100.66.1.10', 65536 + 300)); // cluster 1's identity bits: refused
    expect(seen.endpoint.get(epKey('c2', 'n1', '100.66.1.10'))).toBe(good); // the previous value stays in force
    a.remove('node', nodeKey('c2', 'n1'));
    expect([...seen.node.keys(), ...seen.endpoint.keys()]).toEqual([]); // before: the endpoint outlived its node
  });

  it('an endpoint whose key names another node than its record is refused (the table files it by its key)', () => {
    const { a, seen, reasons } = setup();
    a.upsert('node', nodeKey('c2', 'a'), 'c2', node('c2', 2, 'a', ['100.66.1.0/24']));
    a.upsert('node', nodeKey('c2', 'b'), 'c2', { ...node('c2', 2, 'b', ['100.66.2.0/24'], ['198.18.2.11']), publicKey: 'B'.repeat(42) + 'A=' });
    expect(seen.node.size).toBe(2);
    a.upsert('endpoint', epKey('c2', 'a', '100.66.2.10'), 'c2', ep('c2', 'b', '100.66.2.10'));
    expect([...seen.endpoint.keys()]).toEqual([]);
    expect(reasons()).toEqual(['endpoint/claim']);
  });

  it('an endpoint waits for its node and must lie inside that node\'s CIDRs', () => {
    const { a, seen, reasons } = setup();
    a.upsert('endpoint', epKey('c2', 'n1', '100.66.1.10'), 'c2', ep('c2', 'n1', '100.66.1.10', 2 * 65536 + 300));
    a.upsert('endpoint', epKey('c2', 'n1', '100.66.2.10'), 'c2', ep('c2', 'n1', '100.66.2.10'));
    expect(seen.endpoint.size).toBe(0); // no node yet: waiting, not refused
    expect(reasons()).toEqual([]);
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24']));
    expect([...seen.endpoint.keys()]).toEqual([epKey('c2', 'n1', '100.66.1.10')]);
    expect(reasons()).toEqual(['endpoint/claim']);
    a.remove('node', nodeKey('c2', 'n1'));
    expect(seen.endpoint.size).toBe(0);
  });

  it('an endpoint carrying another cluster\'s identity bits is refused', () => {
    const { a, seen, reasons } = setup();
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24']));
    a.upsert('endpoint', epKey('c2', 'n1', '100.66.1.10'), 'c2', ep('c2', 'n1', '100.66.1.10', 1 * 65536 + 300));
    expect(seen.endpoint.size).toBe(0);
    expect(reasons()).toEqual(['endpoint/claim']);
  });

  it('identities: cluster bits and cluster label from the pin; labels naming another cluster are refused', () => {
    const { a, seen, reasons } = setup();
    a.upsert('identity', 'wiremesh/cache/identities/v1/c2/131372', 'c2', { id: 2 * 65536 + 300, labels: { app: 'x' } });
    a.upsert('identity', 'wiremesh/cache/identities/v1/c2/131373', 'c2', { id: 2 * 65536 + 301, labels: { app: 'y', 'io.cilium.k8s.policy.cluster': 'c1' } });
    a.upsert('identity', 'wiremesh/cache/identities/v1/c2/65836', 'c2', { id: 1 * 65536 + 300, labels: { app: 'z' } });
    expect([...seen.identity.values()]).toEqual([{ id: 2 * 65536 + 300, labels: { app: 'x', 'io.cilium.k8s.policy.cluster': 'c2' } }]);
    expect(reasons()).toEqual(['identity/claim', 'identity/claim']);
  });

  it('relays: only from a hub, only CIDRs and ids no pinned cluster owns', () => {
    const { a, seen, reasons } = setup();
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24'], ['198.18.2.10']));
    a.upsert('relay', 'wiremesh/cache/relays/v1/c2/n1', 'c2', { cluster: 'c2', node: 'n1', podCIDRs: ['100.70.0.0/16'], clusterIds: [7] });
    expect(reasons()).toEqual(['relay/claim']);
    a.upsert('relay', 'wiremesh/cache/relays/v1/c0/h1', 'c0', { cluster: 'c0', node: 'h1', podCIDRs: ['100.70.0.0/16', '100.65.0.0/16', '0.0.0.0/0', '198.18.0.0/16'], clusterIds: [7, 1, 2] });
    expect(seen.relay.get('wiremesh/cache/relays/v1/c0/h1')).toEqual({ cluster: 'c0', node: 'h1', podCIDRs: ['100.70.0.0/16'], clusterIds: [7] });
    // 0.0.0.0/0 was reported (the rest honoured); a range outside the pin (8.8.8.0/24) or the node's metadata
    // service is too, and the hub's honest CIDR stays admitted
    expect(reasons()).toEqual(['relay/claim', 'relay/claim']);
    a.upsert('relay', 'wiremesh/cache/relays/v1/c0/h1', 'c0', { cluster: 'c0', node: 'h1', podCIDRs: ['100.70.0.0/16', '8.8.8.0/24', '169.254.169.254/32'] });
    expect(seen.relay.get('wiremesh/cache/relays/v1/c0/h1')?.podCIDRs).toEqual(['100.70.0.0/16']);
    expect(reasons()).toEqual(['relay/claim', 'relay/claim', 'relay/claim']);
  });

  it('a hostile relay offer is counted once, not again on every node admitted or recheck (regression)', () => {
    const { a, rejections, seen, reasons } = setup();
    const offer = { cluster: 'c0', node: 'h1', podCIDRs: ['100.70.0.0/16', '8.8.8.0/24'] };
    a.upsert('relay', 'wiremesh/cache/relays/v1/c0/h1', 'c0', offer);
    // every node admitted re-checks every admitted relay (it may hold the node's address): 50 of them
    const n = (i: number) => ({ ...node('c2', 2, `n${i}`, [`100.66.${i}.0/24`], [`198.18.2.${i}`]), publicKey: Buffer.alloc(32, i).toString('base64') });
    for (let i = 1; i <= 50; i++) a.upsert('node', nodeKey('c2', `n${i}`), 'c2', n(i));
    a.recheck('c0');
    a.upsert('relay', 'wiremesh/cache/relays/v1/c0/h1', 'c0', { ...offer }); // the same offer written again
    expect(seen.node.size).toBe(50);
    expect(seen.relay.get('wiremesh/cache/relays/v1/c0/h1')?.podCIDRs).toEqual(['100.70.0.0/16']);
    expect(reasons()).toEqual(['relay/claim']);
    expect(rejections.recent[0]?.detail).toMatch(/8\.8\.8\.0\/24 is outside c0's pinned relay CIDRs/);
    // another offer (another text) is reported anew, once
    a.upsert('relay', 'wiremesh/cache/relays/v1/c0/h1', 'c0', { ...offer, podCIDRs: ['100.70.0.0/16', '8.8.4.0/24'] });
    a.upsert('node', nodeKey('c2', 'n51'), 'c2', n(51));
    expect(reasons()).toEqual(['relay/claim', 'relay/claim']);
  });

  it('records that arrive before their cluster is pinned are admitted once it is', () => {
    const { a, trust, seen, reasons } = setup();
    a.upsert('node', nodeKey('c3', 'n1'), 'c3', node('c3', 3, 'n1', ['100.67.1.0/24']));
    expect(seen.node.size).toBe(0);
    expect(reasons()).toEqual(['node/claim']);
    trust.pin({ name: 'c3', id: 3, podCIDRs: ['100.67.0.0/16'], underlayCIDRs: ['198.18.3.0/24'], relay: false, acceptPolicies: false });
    a.recheck('c3');
    expect(seen.node.size).toBe(1);
  });

  // Regressions from an attacker's review of this module:
  it('unpinning a cluster withdraws what it had admitted (a refused re-check never leaves more trusted)', () => {
    const { a, trust, seen } = setup();
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24']));
    a.upsert('identity', 'wiremesh/cache/identities/v1/c2/131372', 'c2', { id: 2 * 65536 + 300, labels: { app: 'x' } });
    expect(seen.node.size + seen.identity.size).toBe(2);
    trust.unpin('c2');
    a.recheck('c2');
    expect(seen.node.size + seen.identity.size).toBe(0);
  });

  it("a remote node cannot take our node's WireGuard key; ours wins even when it comes second", () => {
    // (our node's underlay address lies outside the remote's pinned underlay CIDRs: refused as a claim, below)
    const { a, seen, reasons } = setup();
    const ours = node('c1', 1, 'n1', ['100.65.1.0/24'], ['198.18.1.10']);
    const thief = { ...node('c2', 2, 'n9', ['100.66.9.0/24'], ['198.18.2.99']), publicKey: ours.publicKey };
    a.upsert('node', nodeKey('c2', 'n9'), 'c2', thief); // first, e.g. while our node restarts
    expect(seen.node.has(nodeKey('c2', 'n9'))).toBe(true);
    a.upsert('node', nodeKey('c1', 'n1'), 'c1', ours);
    expect([...seen.node.keys()]).toEqual([nodeKey('c1', 'n1')]);
    a.remove('node', nodeKey('c1', 'n1'));
    a.upsert('node', nodeKey('c1', 'n1'), 'c1', ours);
    expect([...seen.node.keys()]).toEqual([nodeKey('c1', 'n1')]);
    expect(reasons().every((r) => r === 'node/conflict')).toBe(true);
  });

  it('one WireGuard key, one node: a second remote node with the same key is refused until the first goes', () => {
    const { a, seen } = setup();
    const first = node('c2', 2, 'n1', ['100.66.1.0/24'], ['198.18.2.10']);
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', first);
    a.upsert('node', nodeKey('c2', 'n2'), 'c2', { ...node('c2', 2, 'n2', ['100.66.2.0/24'], ['198.18.2.11']), publicKey: first.publicKey });
    expect([...seen.node.keys()]).toEqual([nodeKey('c2', 'n1')]);
    a.remove('node', nodeKey('c2', 'n1'));
    expect([...seen.node.keys()]).toEqual([nodeKey('c2', 'n2')]);
  });

  it("underlay addresses and pod CIDRs never overlap: an address inside a pod CIDR is refused", () => {
    const { a, seen, reasons } = setup();
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n1', ['100.66.1.0/24'], ['198.18.2.10']));
    a.upsert('node', nodeKey('c2', 'n2'), 'c2', node('c2', 2, 'n2', ['100.66.2.0/24'], ['100.66.1.7']));
    expect(reasons()).toEqual(['node/claim']);
    expect(seen.node.size).toBe(1);
  });

  it("regression: no node takes this node's own pod CIDRs, underlay address or WireGuard key, even seen first (its configuration is the pin)", () => {
    // A compromised node of our own cluster, listed before ours (key order after a restart, or while our lease
    // lapsed): first-admitted-wins gave it our pod CIDR (its tunnel then took our pods' addresses as sources)
    // and refused our own record here.
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    const rejections = new Rejections();
    const seen = new Map<string, NodeRecord>();
    const self = { key: nodeKey('c1', 'n5'), podCIDRs: ['100.65.5.0/24'], addresses: ['198.18.1.15'], publicKey: () => 'B'.repeat(42) + 'A=' };
    const a = new Admission(trust, rejections, { node: (k, r) => (r ? seen.set(k, r) : seen.delete(k)), endpoint: () => {}, identity: () => {}, relay: () => {} }, self);
    a.upsert('node', nodeKey('c1', 'a0'), 'c1', node('c1', 1, 'a0', ['100.65.5.0/25'], ['198.18.1.90']));
    a.upsert('node', nodeKey('c1', 'a1'), 'c1', node('c1', 1, 'a1', ['100.65.91.0/24'], ['198.18.1.15']));
    a.upsert('node', nodeKey('c1', 'a2'), 'c1', { ...node('c1', 1, 'a2', ['100.65.92.0/24'], ['198.18.1.92']), publicKey: self.publicKey() });
    expect([...seen.keys()]).toEqual([]);
    expect(rejections.recent.map((e) => `${e.key} ${e.reason}`)).toEqual(['a0', 'a1', 'a2'].map((n) => `${nodeKey('c1', n)} conflict`));
    a.upsert('node', self.key, 'c1', { ...node('c1', 1, 'n5', self.podCIDRs, self.addresses), publicKey: self.publicKey() });
    expect([...seen.keys()]).toEqual([self.key]);
    // one that lets go of our claims is admitted
    a.upsert('node', nodeKey('c1', 'a0'), 'c1', node('c1', 1, 'a0', ['100.65.90.0/24'], ['198.18.1.90']));
    expect(seen.has(nodeKey('c1', 'a0'))).toBe(true);
  });

  it('regression: no node address that cannot be a host on the underlay (link-local, loopback, multicast, unspecified, broadcast, IPv4-compatible, site-local, metadata services)', () => {
    // In mesh mode a node's addresses enter its peer's allowed IPs: a remote node that named 169.254.169.254 (the
    // cloud metadata service every node has on its own link) got our pods' requests to it through its tunnel.
    const { a, seen, reasons, trust } = setup();
    const bad = ['169.254.169.254', 'fe80::1', '127.0.0.1', '::1', '224.0.0.251', 'ff02::1', '0.0.0.0', '::', '255.255.255.255',
      // IPv4 in deprecated IPv6 forms (127.0.0.1, 169.254.169.254), site-local, metadata services outside link-local
      '::7f00:1', '::a9fe:a9fe', '::ffff:0:7f00:1', 'fec0::1', 'fd00:ec2::254', '100.100.100.200', '192.0.0.192',
      // AWS's IPv6 resolver and time service, Azure's host address (DNS, DHCP, wire server)
      'fd00:ec2::253', 'fd00:ec2::123', '168.63.129.16'];
    bad.forEach((addr, i) => a.upsert('node', nodeKey('c2', `n${i}`), 'c2', { ...node('c2', 2, `n${i}`, [`100.66.${i}.0/24`], [`198.18.2.${10 + i}`, addr]), publicKey: Buffer.alloc(32, i + 1).toString('base64') }));
    expect(seen.node.size).toBe(0);
    expect(reasons()).toEqual(bad.map(() => 'node/claim'));
    // routed unicast neighbours of those: outside c2's pinned underlay CIDRs, refused too; its own address is admitted
    for (const addr of ['fd00:18::10', 'fd00:ec2::252', '168.63.129.17', '192.0.0.193', '64:ff9b::7f00:1']) expect(trust.node('c2', node('c2', 2, 'x', ['100.66.201.0/24'], [addr]))).toMatch(/outside c2's pinned underlay CIDRs/);
    a.upsert('node', nodeKey('c2', 'ok'), 'c2', node('c2', 2, 'ok', ['100.66.200.0/24'], ['198.18.2.10']));
    expect(seen.node.size).toBe(1);
  });
  it('regression: the lists of nodes waiting on a conflict hold no more than the live node candidates', () => {
    // A hostile remote created and deleted nodes under new names, each claiming our node's address, one alive at
    // a time: each waited on our node and stayed on its list after its delete (cleared only when our node's record
    // changed), 200,000 entries with no live record. A node that moved its claim stayed on its first list too.
    const { a, seen } = setup();
    a.upsert('node', nodeKey('c1', 'n1'), 'c1', node('c1', 1, 'n1', ['100.65.1.0/24'], ['198.18.1.10']));
    a.upsert('node', nodeKey('c1', 'n2'), 'c1', { ...node('c1', 1, 'n2', ['100.65.2.0/24'], ['198.18.1.20']), publicKey: 'B'.repeat(42) + 'A=' });
    const internals = a as unknown as { waiting: Map<string, Set<string>>; cand: { node: Iterable<unknown> } };
    const waiters = () => [...internals.waiting.values()].reduce((n, s) => n + s.size, 0);
    const candidates = () => [...internals.cand.node].length;
    for (let i = 0; i < 500; i++) {
      const k = nodeKey('c2', `x${i}`);
      // (their claim is our nodes' WireGuard keys: our addresses lie outside c2's pinned underlay, refused as claims)
      const own = [`198.18.2.${(i % 250) + 1}`];
      a.upsert('node', k, 'c2', node('c2', 2, `x${i}`, [`100.66.${i % 250}.0/24`], own));
      // the same node moving its claim to the other node's key: it waits on that one alone
      a.upsert('node', k, 'c2', { ...node('c2', 2, `x${i}`, [`100.66.${i % 250}.0/24`], own), publicKey: 'B'.repeat(42) + 'A=' });
      expect(waiters()).toBe(1);
      a.remove('node', k);
    }
    expect(waiters()).toBe(0);
    expect(candidates()).toBe(2);
    expect([...seen.node.keys()]).toEqual([nodeKey('c1', 'n1'), nodeKey('c1', 'n2')]);
    // the waiting still works: a waiter is admitted when the node it waits on goes
    a.upsert('node', nodeKey('c2', 'y'), 'c2', node('c2', 2, 'y', ['100.66.1.0/24'], ['198.18.2.10']));
    a.remove('node', nodeKey('c1', 'n1'));
    expect(seen.node.has(nodeKey('c2', 'y'))).toBe(true);
    expect(waiters()).toBe(0);
  });
  it("an endpoint is checked against the node record its key's node names, under that node's own key (s34: no table by name)", () => {
    const { a, seen } = setup();
    // a record under another node's key reaches admission only past its codec (which refuses it): it speaks for
    // neither node's endpoints
    a.upsert('node', nodeKey('c2', 'n1'), 'c2', node('c2', 2, 'n9', ['100.66.9.0/24']));
    a.upsert('endpoint', epKey('c2', 'n9', '100.66.9.5'), 'c2', ep('c2', 'n9', '100.66.9.5'));
    a.upsert('endpoint', epKey('c2', 'n1', '100.66.9.6'), 'c2', ep('c2', 'n1', '100.66.9.6'));
    expect([...seen.endpoint.keys()]).toEqual([]);
    // the node under its own key: its endpoints are admitted (they waited on it)
    a.remove('node', nodeKey('c2', 'n1'));
    a.upsert('node', nodeKey('c2', 'n9'), 'c2', node('c2', 2, 'n9', ['100.66.9.0/24']));
    expect([...seen.endpoint.keys()].map((k) => a.endpointKeys.full(k))).toEqual([epKey('c2', 'n9', '100.66.9.5')]);
    // ours live under the state prefix, a remote's under the cache: each found where it lives
    a.upsert('node', nodeKey('c1', 'n2'), 'c1', { ...node('c1', 1, 'n2', ['100.65.2.0/24']), publicKey: 'B'.repeat(42) + 'A=' });
    a.upsert('endpoint', epKey('c1', 'n2', '100.65.2.7'), 'c1', ep('c1', 'n2', '100.65.2.7'));
    expect(seen.endpoint.size).toBe(2);
  });
});
