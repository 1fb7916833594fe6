// Before the agent has read its cluster-config its own cluster's ranges (pod and underlay CIDRs) are unknown, and
// every node check reads them (a node of ours must lie inside them; a remote's address must lie outside). Written as
// the attacker, a compromised node of our own cluster (or a remote one) whose record lands before the config is
// read — a slow first list, or no config at all (the agent starts its state watches after 5 s anyway): the record
// must wait (neither admitted nor refused), then be judged against the config once it arrives (docs/security.md,
// "Underlay CIDRs"). The agent as it is wired (agent.ts, sinks.ts): Trust built with no ranges, the trust and state
// watches on one in-memory store.
import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/agent/admission.js';
import { stateWatches, trustWatches } from '../../src/agent/sinks.js';
import { cacheKey, clusterConfigKey, endpointName, pinnedKey, stateKey } from '../../src/controlplane/keys.js';
import { ListWatcher } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { Rejections, Trust, WAIT, type EndpointRecord, type NodeRecord, type RelayRecord } from '../../src/controlplane/records/index.js';
import { targetsOf } from '../helpers/admitting-agent.js';

const key = (c: string) => c.repeat(42) + 'A=';
const node = (cluster: string, clusterId: number, name: string, podCIDRs: string[], addresses: string[], pk = name[name.length - 1]!.toUpperCase()): NodeRecord => ({ cluster, clusterId, name, addresses, port: 51820, publicKey: key(pk), podCIDRs, bootId: '1' });
const ep = (cluster: string, nodeName: string, ip: string): EndpointRecord => ({ ip, cluster, node: nodeName, namespace: 'ns', name: `p${ip.replace(/[.:]/g, '-')}`, labels: { app: 'x' } });
const CONFIG = { name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16', 'fd65::/48'], underlayCIDRs: ['198.18.1.0/24', 'fd18:1::/64'] };
const PIN_C2 = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: true, relayCIDRs: ['100.99.0.0/16'], acceptPolicies: false }; // s13relay: a hub relays only what its pin names
/** This agent's own node, as node.yaml says it. */
const SELF = node('c1', 1, 'self', ['100.65.1.0/24'], ['198.18.1.1'], 'S');

/** An agent's admission on `store` as agent.ts wires it, before anything is read. */
function agentOn(store: MemKV) {
  const trust = new Trust('c1', 1, [], 255); // agent.ts: no ranges until the cluster-config is read
  const rejections = new Rejections();
  const seen = { node: new Map<string, NodeRecord>(), endpoint: new Map<string, EndpointRecord>(), relay: new Map<string, RelayRecord>() };
  const put = <T>(m: Map<string, T>) => (k: string, r: T | undefined) => (r ? m.set(k, r) : m.delete(k));
  // endpoint keys reach the sinks in admission's compact forms (Admission.endpointKeys): `seen` keeps their texts
  const admission: Admission = new Admission(trust, rejections, { node: put(seen.node), endpoint: (k, r) => put(seen.endpoint)(admission.endpointKeys.full(k), r), identity: () => undefined, relay: put(seen.relay) }, {
    key: stateKey('nodes', 'c1', 'self'),
    podCIDRs: SELF.podCIDRs,
    addresses: SELF.addresses,
    publicKey: () => SELF.publicKey,
  });
  const targets = targetsOf(trust, rejections, admission);
  const watchers = [...trustWatches(targets), ...stateWatches(targets)].map((w) => new ListWatcher(store, w.prefix, w.sink));
  return { trust, admission, rejections, seen, watchers };
}

const nodeKey = (c: string, n: string) => (c === 'c1' ? stateKey('nodes', c, n) : cacheKey('nodes', c, n));
const epKey = (c: string, n: string, ip: string) => (c === 'c1' ? stateKey('ip', c, endpointName(n, ip)) : cacheKey('ip', c, endpointName(n, ip)));
const soon = { timeout: 5000, interval: 5 };

describe('agent: records that arrive before the cluster-config is read wait for it', () => {
  it('regression: a local node outside the ranges waits, then is refused; an honest one waits, then is admitted; our own comes up at once', async () => {
    const store = new MemKV();
    const a = agentOn(store);
    try {
      await store.put(pinnedKey('c2'), JSON.stringify(PIN_C2));
      const records: Array<[string, NodeRecord | EndpointRecord | RelayRecord]> = [
        [nodeKey('c1', 'self'), SELF],
        [epKey('c1', 'self', '100.65.1.5'), ep('c1', 'self', '100.65.1.5')],
        // the red team's case: any pod CIDR, any underlay address
        [nodeKey('c1', 'evil'), node('c1', 1, 'evil', ['8.8.8.0/24'], ['203.0.113.5'])],
        [epKey('c1', 'evil', '8.8.8.8'), ep('c1', 'evil', '8.8.8.8')],
        // IPv6: a pod CIDR outside ours, an address outside our underlay
        [nodeKey('c1', 'evil6'), node('c1', 1, 'evil6', ['2001:4860::/48'], ['2001:db8::5'])],
        [nodeKey('c1', 'n2'), node('c1', 1, 'n2', ['100.65.2.0/24', 'fd65:0:0:2::/64'], ['198.18.1.2', 'fd18:1::2'])],
        [epKey('c1', 'n2', '100.65.2.7'), ep('c1', 'n2', '100.65.2.7')],
        // a remote node naming one of OUR underlay addresses: outside its own pin, refused at once (refusals stand)
        [nodeKey('c2', 'thief'), node('c2', 2, 'thief', ['100.66.9.0/24'], ['198.18.1.77'])],
        [nodeKey('c2', 'm1'), node('c2', 2, 'm1', ['100.66.1.0/24'], ['198.18.2.1'])],
        // a hub's relay offer naming our pod CIDRs: only our config says they are ours
        [cacheKey('relays', 'c2', 'm1'), { cluster: 'c2', node: 'm1', podCIDRs: ['100.65.0.0/16', '100.99.0.0/16'] }],
      ];
      for (const [k, v] of records) await store.put(k, JSON.stringify(v));
      for (const w of a.watchers) void w.start();
      await Promise.all(a.watchers.map((w) => w.firstSync()));
      // no cluster-config: nothing but our own node (as node.yaml says it) and its pod is admitted; the rest waits
      // (the remote node m1 too: our ranges are unknown), only what known facts refuse is refused
      await expect.poll(() => a.admission.awaitingClusterConfig, soon).toBe(7);
      expect([...a.seen.node.keys()]).toEqual([nodeKey('c1', 'self')]);
      expect([...a.seen.endpoint.keys()]).toEqual([epKey('c1', 'self', '100.65.1.5')]);
      expect(a.seen.relay.size).toBe(0);
      expect(a.rejections.recent.map((r) => r.key)).toEqual([nodeKey('c2', 'thief')]);
      // the config arrives: each record judged against it
      await store.put(clusterConfigKey('c1'), JSON.stringify(CONFIG));
      await expect.poll(() => a.admission.awaitingClusterConfig, soon).toBe(0);
      expect([...a.seen.node.keys()].sort()).toEqual([nodeKey('c1', 'n2'), nodeKey('c1', 'self'), nodeKey('c2', 'm1')].sort());
      expect([...a.seen.endpoint.keys()].sort()).toEqual([epKey('c1', 'n2', '100.65.2.7'), epKey('c1', 'self', '100.65.1.5')].sort());
      expect([...a.seen.relay.values()].map((r) => r.podCIDRs)).toEqual([['100.99.0.0/16']]); // ours cut out
      const why = (k: string) => a.rejections.recent.find((r) => r.key === k)?.detail;
      expect(why(nodeKey('c1', 'evil'))).toMatch(/203\.0\.113\.5 is outside c1's pinned underlay CIDRs/);
      expect(why(nodeKey('c1', 'evil6'))).toMatch(/2001:db8::5 is outside c1's pinned underlay CIDRs/);
      expect(why(nodeKey('c2', 'thief'))).toMatch(/198\.18\.1\.77 is outside c2's pinned underlay CIDRs/);
    } finally {
      await Promise.all(a.watchers.map((w) => w.stop()));
    }
  });

  it('regression: another value under our own key (a node of ours writing it) waits like any record, and is refused once the config says so', async () => {
    const store = new MemKV();
    const a = agentOn(store);
    try {
      // our own key, our key and addresses, but a pod CIDR node.yaml does not give us
      const forged = { ...SELF, podCIDRs: ['100.65.1.0/24', '100.65.200.0/24'] };
      await store.put(nodeKey('c1', 'self'), JSON.stringify(forged));
      for (const w of a.watchers) void w.start();
      await Promise.all(a.watchers.map((w) => w.firstSync()));
      await expect.poll(() => a.admission.awaitingClusterConfig, soon).toBe(1);
      expect(a.seen.node.size).toBe(0);
      // once read, our config's ranges hold it (the per-node check against node.yaml is admission's self, not Trust's)
      await store.put(clusterConfigKey('c1'), JSON.stringify({ ...CONFIG, podCIDRs: ['100.65.1.0/24'] }));
      await expect.poll(() => a.rejections.total, soon).toBe(1);
      expect(a.rejections.recent[0]!.detail).toMatch(/100\.65\.200\.0\/24 is outside c1's pinned pod CIDRs/);
      expect(a.seen.node.size).toBe(0);
      expect(a.admission.awaitingClusterConfig).toBe(0);
    } finally {
      await Promise.all(a.watchers.map((w) => w.stop()));
    }
  });
});

describe('Trust before the local cluster-config: WAIT where a check needs our ranges, refusals stand', () => {
  const t = () => {
    const x = new Trust('c1', 1);
    x.pin(PIN_C2);
    return x;
  };
  it('local and remote nodes, local endpoints and relays wait; a remote endpoint and identities do not need our ranges', () => {
    const x = t();
    expect(x.localKnown).toBe(false);
    expect(x.node('c1', node('c1', 1, 'n2', ['100.65.2.0/24'], ['198.18.1.2']))).toBe(WAIT);
    expect(x.node('c2', node('c2', 2, 'm1', ['100.66.1.0/24'], ['198.18.2.1']))).toBe(WAIT);
    expect(x.endpoint('c1', ep('c1', 'n2', '100.65.2.7'))).toBe(WAIT);
    expect(x.endpoint('c2', ep('c2', 'm1', '100.66.1.7'))).toBeUndefined();
    expect(x.relay('c2', { cluster: 'c2', node: 'm1', podCIDRs: ['100.99.0.0/16'] })).toBe(WAIT);
  });
  it('what is refused on known facts alone is refused at once (wrong id, an address that is no host, outside its pin, a non-hub relay)', () => {
    const x = t();
    expect(x.node('c1', node('c1', 7, 'n2', ['100.65.2.0/24'], ['198.18.1.2']))).toMatch(/claims cluster id 7/);
    expect(x.node('c1', node('c1', 1, 'n2', ['100.65.2.0/24'], ['169.254.169.254']))).toMatch(/no node's own/);
    expect(x.node('c1', node('c1', 1, 'n2', ['100.65.2.0/24'], ['::1']))).toMatch(/no node's own/);
    expect(x.node('c2', node('c2', 2, 'm1', ['100.66.1.0/24'], ['198.18.9.1']))).toMatch(/outside c2's pinned underlay CIDRs/);
    expect(x.node('c2', node('c2', 2, 'm1', ['100.67.1.0/24'], ['198.18.2.1']))).toMatch(/outside c2's pinned pod CIDRs/);
    x.unpin('c2');
    x.pin({ ...PIN_C2, relay: false });
    expect(x.relay('c2', { cluster: 'c2', node: 'm1', podCIDRs: ['100.99.0.0/16'] })).toMatch(/not pinned as a hub/);
  });
  it('once the config is read nothing waits: boundaries of our ranges, IPv4 and IPv6', () => {
    const x = t();
    x.setLocalUnderlay(CONFIG.underlayCIDRs);
    x.setLocalCIDRs(CONFIG.podCIDRs);
    expect(x.localKnown).toBe(true);
    expect(x.node('c1', node('c1', 1, 'n2', ['100.65.0.0/16', 'fd65::/48'], ['198.18.1.255', 'fd18:1::ffff:ffff:ffff:ffff']))).toBeUndefined(); // the whole ranges, their last addresses
    expect(x.node('c1', node('c1', 1, 'n2', ['100.64.255.0/24'], ['198.18.1.2']))).toMatch(/outside c1's pinned pod CIDRs/); // just below
    expect(x.node('c1', node('c1', 1, 'n2', ['100.65.0.0/15'], ['198.18.1.2']))).toMatch(/outside c1's pinned pod CIDRs/); // wider
    expect(x.node('c1', node('c1', 1, 'n2', ['100.65.2.0/24'], ['198.18.2.0']))).toMatch(/outside c1's pinned underlay CIDRs/); // just above
    expect(x.node('c1', node('c1', 1, 'n2', ['fd65:1::/64'], ['fd18:1::2']))).toMatch(/outside c1's pinned pod CIDRs/);
    expect(x.node('c1', node('c1', 1, 'n2', ['fd65::/64'], ['fd18:2::2']))).toMatch(/outside c1's pinned underlay CIDRs/);
    expect(x.endpoint('c1', ep('c1', 'n2', '100.66.0.1'))).toMatch(/outside c1's pod CIDRs/);
  });
});
