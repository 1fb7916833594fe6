// Cluster-id layouts (Cilium's max-connected-clusters): 255 clusters with
// identity = cluster << 16 | local (the default), 511 with cluster << 15 | local.
// The layout is mesh-wide: records, pins, the allocator's range and the native
// peer check all read identities the same way, and a mismatch is refused.
import { describe, expect, it } from 'vitest';
import * as records from '../../src/controlplane/records/index.js';
import { Trust } from '../../src/controlplane/records/index.js';
import { clusterConfigKey, pinnedKey } from '../../src/controlplane/keys.js';
import { pinFor, preflight } from '../../src/controlplane/clustermesh.js';
import { clusterIdentity, identityCluster, localIdBits, maxLocalId, MIN_LOCAL_ID, type MaxClusters } from '../../src/identity/identity.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { testhooks } from '../../src/native/testhooks.js';
import { validateClusterId } from '../../src/validate.js';

const KEY = 'A'.repeat(43) + '=';

describe('identity layout', () => {
  it.each([
    [255, 16, 0xffff],
    [511, 15, 0x7fff],
  ] as const)('with %i clusters the local part has %i bits (up to %i)', (max, bits, local) => {
    expect(localIdBits(max)).toBe(bits);
    expect(maxLocalId(max)).toBe(local);
  });

  it('encodes and decodes every cluster at both settings, at both ends of the local range', () => {
    for (const max of [255, 511] as MaxClusters[])
      for (let c = 1; c <= max; c++)
        for (const local of [MIN_LOCAL_ID, maxLocalId(max)]) {
          const id = clusterIdentity(c, local, max);
          expect(id).toBe(c * 2 ** localIdBits(max) + local);
          expect(id).toBeLessThan(1 << 24); // below the node-local (CIDR) scope in both layouts
          expect(identityCluster(id, max)).toBe(c);
          expect(id % 2 ** localIdBits(max)).toBe(local);
        }
  });

  it('the default layout is 255 (cluster << 16)', () => {
    expect(clusterIdentity(3, 300)).toBe((3 << 16) | 300);
    expect(identityCluster((3 << 16) | 300)).toBe(3);
    // one identity reads as two different clusters under the two layouts: why the layout must be mesh-wide
    expect(identityCluster(clusterIdentity(3, 300, 511), 255)).toBe(1);
  });

  it('node-local identities carry no cluster', () => {
    expect(identityCluster((1 << 24) | 5, 255)).toBe(0);
    expect(identityCluster((1 << 24) | 5, 511)).toBe(0);
  });
});

describe('cluster ids above 255 only in a mesh configured for 511', () => {
  const cfg = (id: number, max?: 255 | 511) => JSON.stringify({ name: 'c1', id, podCIDRs: ['100.65.0.0/16'], ...(max ? { maxConnectedClusters: max } : {}) });
  const decodeCfg = (id: number, max?: 255 | 511) => records.tryDecode(records.clusterConfigCodec, clusterConfigKey('c1'), cfg(id, max));

  it('cluster-config: 511 accepted with maxConnectedClusters 511, refused without', () => {
    expect(decodeCfg(511, 511)).toMatchObject({ ok: true, value: { id: 511, maxConnectedClusters: 511 } });
    expect(decodeCfg(511)).toMatchObject({ ok: false });
    expect(decodeCfg(300, 255)).toMatchObject({ ok: false });
    expect(decodeCfg(255)).toMatchObject({ ok: true });
    expect(decodeCfg(512, 511)).toMatchObject({ ok: false });
    expect(records.tryDecode(records.clusterConfigCodec, clusterConfigKey('c1'), cfg(5).replace('}', ',"maxConnectedClusters":300}'))).toMatchObject({ ok: false });
  });

  it('a pinned remote claiming cluster 300 decodes only with the 511 layout', () => {
    const pin = (max?: 255 | 511) => JSON.stringify({ name: 'c2', id: 300, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false, ...(max ? { maxConnectedClusters: max } : {}) });
    expect(records.tryDecode(records.pinnedClusterCodec, pinnedKey('c2'), pin())).toMatchObject({ ok: false });
    expect(records.tryDecode(records.pinnedClusterCodec, pinnedKey('c2'), pin(511))).toMatchObject({ ok: true });
  });

  it('node.yaml and `clustermesh enable` ids: 1..255, or 1..511 with 511', () => {
    expect(validateClusterId(255)).toBe(255);
    expect(() => validateClusterId(300)).toThrow(/1\.\.255/);
    expect(validateClusterId(511, 'cluster.id', 511)).toBe(511);
    expect(() => validateClusterId(512, 'cluster.id', 511)).toThrow(/1\.\.511/);
  });
});

describe('Trust reads identities with the mesh layout and fails closed on a mismatch', () => {
  const pinned = (id: number, max?: 255 | 511): records.PinnedCluster => ({ name: 'c2', id, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false, ...(max ? { maxConnectedClusters: max } : {}) });
  const node = (clusterId: number): records.NodeRecord => ({ cluster: 'c2', clusterId, name: 'n1', addresses: ['198.18.2.10'], port: 51820, publicKey: KEY, podCIDRs: ['100.66.1.0/24'], bootId: '1' });

  it('255 mode: a node record claiming cluster 300 is refused, and so is a pin of 300', () => {
    const t = new Trust('c1', 1, ['100.65.0.0/16']);
    expect(t.pin(pinned(2))).toBeUndefined();
    expect(t.node('c2', node(300))).toMatch(/claims cluster id 300, above this mesh's maxConnectedClusters \(255\)/);
    expect(t.pin({ ...pinned(300), name: 'c3' })).toMatch(/id 300 is above this mesh's maxConnectedClusters \(255\)/);
  });

  it('511 mode: cluster 300 pinned, its node, endpoints and identities accepted; another cluster\'s refused', () => {
    const t = new Trust('c1', 1, ['100.65.0.0/16'], 511);
    expect(t.pin(pinned(300, 511))).toBeUndefined();
    expect(t.node('c2', node(300))).toBeUndefined();
    const id = clusterIdentity(300, 4000, 511);
    expect(t.identity('c2', { id, labels: { app: 'a' } })).toMatchObject({ id });
    expect(t.endpoint('c2', { ip: '100.66.1.10', cluster: 'c2', node: 'n1', namespace: 'shop', name: 'a', labels: {}, identity: id })).toBeUndefined();
    // cluster 150's identity in the 255 layout, read in the 511 layout: cluster 300 or 301 by its local part
    expect(t.identity('c2', { id: clusterIdentity(150, 40000, 255), labels: {} })).toMatch(/has cluster id 301; c2 is pinned as 300/);
    expect(t.identity('c2', { id: clusterIdentity(301, 4000, 511), labels: {} })).toMatch(/has cluster id 301/);
  });

  it('a remote connected with the other layout is refused, either way round', () => {
    expect(new Trust('c1', 1, [], 511).pin(pinned(2))).toMatch(/maxConnectedClusters 255, this cluster has 511/);
    expect(new Trust('c1', 1, [], 255).pin(pinned(2, 511))).toMatch(/maxConnectedClusters 511, this cluster has 255/);
  });

  it('relay offers keep only cluster ids within the layout', () => {
    const t = new Trust('c1', 1, ['100.65.0.0/16']);
    t.pin({ ...pinned(2), relay: true, relayCIDRs: [] });
    const r = t.relay('c2', { cluster: 'c2', node: 'n1', podCIDRs: [], clusterIds: [7, 300] });
    expect(r).toMatchObject({ record: { clusterIds: [7] } });
  });

  it('connect: clusters laid out differently are refused; the pin carries the layout', () => {
    const a = { name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], maxConnectedClusters: 511 as const };
    const b = { name: 'c2', id: 300, podCIDRs: ['100.66.0.0/16'] };
    expect(() => preflight(a, b)).toThrow(/maxConnectedClusters 511, c2 255/);
    expect(() => preflight(a, { ...b, maxConnectedClusters: 511 })).not.toThrow();
    expect(pinFor({ ...b, maxConnectedClusters: 511 }, false)).toMatchObject({ id: 300, maxConnectedClusters: 511 });
  });
});

describe('native peer check (device_mesh.cc accept_tag)', () => {
  it('cluster ids above 255 match with the 511 layout, and are not truncated to 8 bits', () => {
    const id300 = clusterIdentity(300, 1000, 511);
    expect(testhooks.peerSpeaksFor([300], 511, id300)).toBe(true);
    expect(testhooks.peerSpeaksFor([44], 511, id300)).toBe(false); // 300 & 0xff: what a uint8_t list would have held
    expect(testhooks.peerSpeaksFor([300, 511], 511, clusterIdentity(511, maxLocalId(511), 511))).toBe(true);
    expect(testhooks.peerSpeaksFor([300], 511, clusterIdentity(301, 1000, 511))).toBe(false);
  });

  it('a peer speaking for 0 to 9 clusters (held in place up to 4, then on the heap) matches exactly its own', () => {
    for (let n = 0; n <= 9; n++) {
      const ids = Array.from({ length: n }, (_, i) => 2 + i * 37);
      for (let c = 1; c <= 400; c++) expect(testhooks.peerSpeaksFor(ids, 511, clusterIdentity(c, 1000, 511)), `${n} ids, cluster ${c}`).toBe(ids.includes(c));
    }
  });

  it('the 255 layout reads the same numbers as before', () => {
    expect(testhooks.peerSpeaksFor([3], 255, (3 << 16) | 300)).toBe(true);
    expect(testhooks.peerSpeaksFor([3], 255, (4 << 16) | 300)).toBe(false);
    // an identity made for 511 read as 255: another cluster, refused
    expect(testhooks.peerSpeaksFor([300], 255, clusterIdentity(300, 1000, 511))).toBe(false);
  });

  it('the device takes cluster ids up to its layout and throws above it (FakeDevice, as the addon)', () => {
    const d = new FakeDevice();
    expect(() => d.setPeerIdentity(1, true, 2, [300])).toThrow(/cluster ids/);
    d.setMaxClusters(511);
    expect(() => d.setPeerIdentity(1, true, 2, [300, 511])).not.toThrow();
    expect(() => d.setPeerIdentity(1, true, 2, [512])).toThrow(/cluster ids/);
    expect(() => d.setMaxClusters(300 as 511)).toThrow();
  });
});
