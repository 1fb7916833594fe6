// Address ownership: each cluster's underlay CIDRs are recorded by `clustermesh enable --underlay-cidrs` and
// pinned for the other side at connect; every address a node record names must lie inside its cluster's pinned
// ranges (docs/security.md). Written as the attacker: a remote cluster's node (or one of our own) that names a
// DNS resolver, another cluster's node or a NAT64 address as its own would, in mesh mode, receive our pods'
// packets to it decrypted through its tunnel.
import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/agent/admission.js';
import { enableAgainst, enableCluster, pinFor, preflight } from '../../src/controlplane/clustermesh.js';
import { clusterConfigKey, pinnedKey } from '../../src/controlplane/keys.js';
import * as records from '../../src/controlplane/records/index.js';
import { Rejections, Trust, type NodeRecord, type PinnedCluster } from '../../src/controlplane/records/index.js';
import { MeshError } from '../../src/errors.js';
import { trustWatches, type WatchTargets } from '../../src/agent/sinks.js';
import { silentLogger } from '../../src/log.js';

const KEY = 'A'.repeat(42) + 'A=';
const node = (cluster: string, clusterId: number, addresses: string[], name = 'n1'): NodeRecord => ({ cluster, clusterId, name, addresses, port: 51820, publicKey: KEY, podCIDRs: [`100.${64 + clusterId}.1.0/24`], bootId: '1' });
const pin = (name: string, id: number, underlayCIDRs?: string[]): PinnedCluster => ({ name, id, podCIDRs: [`100.${64 + id}.0.0/16`], ...(underlayCIDRs ? { underlayCIDRs } : {}), relay: false, acceptPolicies: false });

/** c1 (local, 198.18.1.0/24 and fd18:1::/64), c2 (198.18.2.0/24), c3 (198.18.3.0/24, 2001:db8:3::/48). */
function mesh(): Trust {
  const t = new Trust('c1', 1, ['100.65.0.0/16']);
  t.setLocalUnderlay(['198.18.1.0/24', 'fd18:1::/64']);
  expect(t.pin(pin('c2', 2, ['198.18.2.0/24']))).toBeUndefined();
  expect(t.pin(pin('c3', 3, ['198.18.3.0/24', '2001:db8:3::/48']))).toBeUndefined();
  return t;
}

describe('Trust: node addresses inside the pinned underlay CIDRs', () => {
  it('honest nodes of every cluster, ours included, are admitted (IPv4 and IPv6)', () => {
    const t = mesh();
    expect(t.node('c1', node('c1', 1, ['198.18.1.10', 'fd18:1::10']))).toBeUndefined();
    expect(t.node('c2', node('c2', 2, ['198.18.2.10']))).toBeUndefined();
    expect(t.node('c3', node('c3', 3, ['198.18.3.10', '2001:db8:3::10']))).toBeUndefined();
  });

  const attacks: Array<[string, string, number, string, RegExp]> = [
    ['a remote node naming a public DNS resolver', 'c2', 2, '8.8.8.8', /underlay address 8\.8\.8\.8 is outside c2's pinned underlay CIDRs 198\.18\.2\.0\/24/],
    ['a remote node naming an IPv6 resolver', 'c2', 2, '2001:4860:4860::8888', /outside c2's pinned underlay CIDRs/],
    ["a remote node naming another cluster's node", 'c2', 2, '198.18.3.10', /outside c2's pinned underlay CIDRs/],
    ["a remote node naming one of our nodes", 'c3', 3, '198.18.1.10', /outside c3's pinned underlay CIDRs/],
    ['a remote node naming a NAT64 address (8.8.8.8 through the translator)', 'c3', 3, '64:ff9b::808:808', /outside c3's pinned underlay CIDRs/],
    ['our own (compromised) node naming a resolver', 'c1', 1, '1.1.1.1', /outside c1's pinned underlay CIDRs/],
    ["our own node naming a remote cluster's node", 'c1', 1, '198.18.2.10', /outside c1's pinned underlay CIDRs/],
  ];
  for (const [what, cluster, id, addr, want] of attacks)
    it(`refused: ${what} (${addr}), also beside an honest address`, () => {
      const t = mesh();
      const own = cluster === 'c1' ? '198.18.1.20' : `198.18.${id}.20`;
      expect(t.node(cluster, node(cluster, id, [addr]))).toMatch(want);
      expect(t.node(cluster, node(cluster, id, [own, addr]))).toMatch(want);
    });

  it('fail closed: a pin that predates underlay CIDRs refuses every node address of the remote until it is connected again', () => {
    const t = new Trust('c1', 1, ['100.65.0.0/16']);
    t.setLocalUnderlay(['198.18.1.0/24']);
    expect(t.pin(pin('c2', 2))).toBeUndefined();
    expect(t.node('c2', node('c2', 2, ['198.18.2.10']))).toMatch(/c2 was pinned without underlay CIDRs .*connected again/);
    expect(t.holds(pin('c2', 2, ['198.18.2.0/24']))).toBe(false); // a new pin is seen as a change (the agent re-checks)
    t.unpin('c2');
    t.pin(pin('c2', 2, ['198.18.2.0/24']));
    expect(t.node('c2', node('c2', 2, ['198.18.2.10']))).toBeUndefined();
  });

  it('fail closed: a cluster-config that predates underlay CIDRs refuses our own nodes, saying to enable again', () => {
    const t = new Trust('c1', 1, ['100.65.0.0/16']);
    expect(t.node('c1', node('c1', 1, ['8.8.8.8']))).toBeUndefined(); // not read yet: waits, as pod CIDRs do
    t.setLocalUnderlay(undefined);
    expect(t.node('c1', node('c1', 1, ['198.18.1.10']))).toMatch(/c1's cluster-config names no underlayCIDRs.*clustermesh enable --underlay-cidrs/);
  });

  it('order does not decide: where two pins overlap (written by hand, past pre-flight) the overlap is nobody\'s', () => {
    for (const order of [['c2', 'c3'], ['c3', 'c2']]) {
      const t = new Trust('c1', 1, ['100.65.0.0/16']);
      t.setLocalUnderlay(['198.18.1.0/24']);
      for (const c of order) t.pin(c === 'c2' ? pin('c2', 2, ['198.18.0.0/16']) : pin('c3', 3, ['198.18.3.0/24']));
      expect(t.node('c2', node('c2', 2, ['198.18.3.10']))).toMatch(/lies in c3's underlay CIDRs/);
      expect(t.node('c3', node('c3', 3, ['198.18.3.10']))).toMatch(/lies in c2's underlay CIDRs/);
      expect(t.node('c2', node('c2', 2, ['198.18.2.10']))).toBeUndefined();
    }
  });

  it('refusals are logged with key and reason, counted per origin, and shown in status (agent admission)', () => {
    const t = mesh();
    const rejections = new Rejections();
    const seen = new Map<string, NodeRecord>();
    const a = new Admission(t, rejections, { node: (k, r) => (r ? seen.set(k, r) : seen.delete(k)), endpoint: () => {}, identity: () => {}, relay: () => {} });
    const key = 'wiremesh/cache/nodes/v1/c2/evil';
    a.upsert('node', key, 'c2', node('c2', 2, ['198.18.2.66', '8.8.8.8'], 'evil'));
    a.upsert('node', 'wiremesh/cache/nodes/v1/c2/n1', 'c2', { ...node('c2', 2, ['198.18.2.10']), publicKey: 'B'.repeat(42) + 'A=', podCIDRs: ['100.66.2.0/24'] });
    expect([...seen.keys()]).toEqual(['wiremesh/cache/nodes/v1/c2/n1']);
    expect(rejections.recent).toMatchObject([{ key, type: 'node', reason: 'claim', detail: expect.stringMatching(/8\.8\.8\.8 is outside c2's pinned underlay CIDRs/) }]);
    expect(rejections.total).toBe(1);
  });
});

describe('records: underlay CIDRs are decoded once, with their bounds', () => {
  const cfg = (underlayCIDRs: string[]) => JSON.stringify({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs });
  const decode = (u: string[]) => records.tryDecode(records.clusterConfigCodec, clusterConfigKey('c1'), cfg(u));
  it('a range inside the bounds is kept; a pin carries it', () => {
    expect(decode(['198.18.1.0/24', 'fd18:1::/64'])).toMatchObject({ ok: true, value: { underlayCIDRs: ['198.18.1.0/24', 'fd18:1::/64'] } });
    const p = JSON.stringify(pinFor({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'] }, false));
    expect(records.tryDecode(records.pinnedClusterCodec, pinnedKey('c2'), p)).toMatchObject({ ok: true, value: { underlayCIDRs: ['198.18.2.0/24'] } });
  });
  const bad: Array<[string, string[], RegExp]> = [
    ['the whole IPv4 Internet', ['0.0.0.0/0'], /wider than \/8/],
    ['a /7', ['198.0.0.0/7'], /wider than \/8/],
    ['an IPv6 /8', ['2000::/8'], /wider than \/16/],
    ['NAT64', ['64:ff9b::/96'], /translation prefix 64:ff9b::\/96/],
    ['inside NAT64', ['64:ff9b::808:0/120'], /translation prefix/],
    ['6to4', ['2002:c612::/32'], /translation prefix 2002::\/16/],
    ['Teredo', ['2001::/32'], /translation prefix 2001::\/32/],
    ['not a CIDR', ['nope'], /not a CIDR/],
    ['none', [], /underlayCIDRs/],
  ];
  for (const [what, u, want] of bad)
    it(`refused: ${what}`, () => {
      const r = decode(u);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.message).toMatch(want);
    });
});

describe('clustermesh enable / connect pre-flight', () => {
  const c = (name: string, id: number, underlayCIDRs: string[], podCIDRs = [`100.${64 + id}.0.0/16`]) => ({ name, id, podCIDRs, underlayCIDRs });
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return err instanceof MeshError ? `${err.code}: ${err.message}` : String(err);
    }
    return 'passed';
  };
  it('disjoint ranges pass', () => {
    expect(code(() => preflight(c('c1', 1, ['198.18.1.0/24']), c('c2', 2, ['198.18.2.0/24'])))).toBe('passed');
  });
  it('overlapping underlay CIDRs are refused', () => {
    expect(code(() => preflight(c('c1', 1, ['198.18.0.0/16']), c('c2', 2, ['198.18.2.0/24'])))).toMatch(/WM_UNDERLAY_CIDR_OVERLAP: underlay CIDR 198\.18\.0\.0\/16 of c1 overlaps 198\.18\.2\.0\/24 of c2/);
  });
  it("one's underlay CIDRs over the other's pod CIDRs are refused, both directions", () => {
    expect(code(() => preflight(c('c1', 1, ['100.66.0.0/24']), c('c2', 2, ['198.18.2.0/24'])))).toMatch(/WM_UNDERLAY_CIDR_OVERLAP: underlay CIDR 100\.66\.0\.0\/24 of c1 overlaps pod CIDR 100\.66\.0\.0\/16 of c2/);
    expect(code(() => preflight(c('c1', 1, ['198.18.1.0/24']), c('c2', 2, ['100.65.7.0/24'])))).toMatch(/WM_UNDERLAY_CIDR_OVERLAP: underlay CIDR 100\.65\.7\.0\/24 of c2 overlaps pod CIDR 100\.65\.0\.0\/16 of c1/);
  });
  it('a pinned cluster is checked the same way (connect runs preflight against every pin)', () => {
    const pinned = { name: 'c3', id: 3, podCIDRs: ['100.67.0.0/16'], underlayCIDRs: ['198.18.3.0/24'] };
    expect(code(() => preflight(pinned, c('c2', 2, ['198.18.3.128/25'])))).toMatch(/WM_UNDERLAY_CIDR_OVERLAP/);
    expect(code(() => preflight(pinned, c('c2', 2, ['100.67.1.0/24'])))).toMatch(/WM_UNDERLAY_CIDR_OVERLAP/);
  });
  it('enable requires the ranges, decodes them as readers will and keeps them off its own pod CIDRs (before any etcd call)', async () => {
    const access = { endpoints: ['http://198.18.255.254:1'] };
    await expect(enableCluster(access, { name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'] })).rejects.toMatchObject({ code: 'WM_UNDERLAY_CIDRS_MISSING' });
    await expect(enableCluster(access, c('c1', 1, ['64:ff9b::/96']))).rejects.toMatchObject({ code: 'WM_CLUSTER_CONFIG_INVALID', message: expect.stringMatching(/translation prefix/) });
    await expect(enableCluster(access, c('c1', 1, ['100.65.0.0/24']))).rejects.toMatchObject({ code: 'WM_UNDERLAY_CIDR_OVERLAP', message: expect.stringMatching(/of c1 overlaps pod CIDR 100\.65\.0\.0\/16 of c1/) });
  });
});

describe('clustermesh enable run again: checked against the pins in its own etcd (enableAgainst)', () => {
  const cfg = { name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs: ['198.18.1.0/24'] };
  it('regression: new ranges overlapping a pinned cluster\'s underlay or pod CIDRs are refused, both ways', () => {
    const code = (f: () => unknown) => { try { f(); return 'ok'; } catch (e) { return (e as MeshError).code; } };
    expect(code(() => enableAgainst(cfg, [pin('c2', 2, ['198.18.2.0/24'])], []))).toBe('ok');
    expect(code(() => enableAgainst({ ...cfg, underlayCIDRs: ['198.18.0.0/16'] }, [pin('c2', 2, ['198.18.2.0/24'])], []))).toBe('WM_UNDERLAY_CIDR_OVERLAP');
    expect(code(() => enableAgainst({ ...cfg, underlayCIDRs: ['100.66.0.0/24'] }, [pin('c2', 2, ['198.18.2.0/24'])], []))).toBe('WM_UNDERLAY_CIDR_OVERLAP'); // over c2's pods
    expect(code(() => enableAgainst({ ...cfg, podCIDRs: ['198.18.2.0/25'] }, [pin('c2', 2, ['198.18.2.0/24'])], []))).toBe('WM_UNDERLAY_CIDR_OVERLAP'); // c2's underlay over our pods
    expect(code(() => enableAgainst({ ...cfg, podCIDRs: ['100.66.0.0/16'] }, [pin('c2', 2, ['198.18.2.0/24'])], []))).toBe('WM_POD_CIDR_OVERLAP');
  });
  it('own node records outside the new ranges are listed', () => {
    expect(enableAgainst(cfg, [], [node('c1', 1, ['198.18.1.10']), node('c1', 1, ['198.18.1.11', '198.18.9.1'], 'n2')])).toEqual([
      'node c1/n2: address 198.18.9.1 is outside the underlay CIDRs 198.18.1.0/24: its readers will refuse it',
    ]);
  });
});

describe('agent: a pin whose ranges change re-checks every cluster (src/agent/sinks.ts)', () => {
  it('regression: an overlapping pin arriving later withdraws an earlier-admitted node of another cluster, as a fresh agent refuses it', () => {
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.setLocalUnderlay(['198.18.1.0/24']);
    const rejections = new Rejections();
    const admitted = new Map<string, NodeRecord>();
    const admission = new Admission(trust, rejections, { node: (k, r) => (r ? admitted.set(k, r) : admitted.delete(k)), endpoint: () => undefined, identity: () => undefined, relay: () => undefined });
    const targets: WatchTargets = { cluster: { name: 'c1', id: 1 }, trust, rejections, admission, peers: { setSynced: () => undefined, setRelayEnabled: () => undefined, queue: () => undefined }, syncLag: new Map(), remoteStatus: new Map(), log: silentLogger };
    const pins = trustWatches(targets)[0]!.sink;
    pins.upsert(pinnedKey('c2'), JSON.stringify(pin('c2', 2, ['198.18.2.0/24'])));
    const key = 'wiremesh/cache/nodes/v1/c2/n1';
    admission.upsert('node', key, 'c2', node('c2', 2, ['198.18.2.10']));
    expect([...admitted.keys()]).toEqual([key]);
    // c3 pinned over c2's range (written by hand, past pre-flight): the overlap is nobody's, whatever the order
    pins.upsert(pinnedKey('c3'), JSON.stringify(pin('c3', 3, ['198.18.2.0/25'])));
    expect(trust.node('c2', node('c2', 2, ['198.18.2.10']))).toMatch(/lies in c3's underlay CIDRs/);
    expect([...admitted.keys()]).toEqual([]);
  });
});
