// A cluster's service VIP range (serviceCIDR, default 100.127.<id>.0/24) must not cover pod or node addresses: the
// node's load balancer answers a VIP first, so pods or nodes there would be unreachable at their own addresses
// (docs/security.md, s15). `clustermesh enable` refuses a range over its own pod or underlay CIDRs; `connect`
// refuses either side's range over the other's pod or underlay CIDRs, over the other's service range (VIPs are
// unique in a mesh), over the pod CIDRs and the default service range of a cluster the other side pinned, all
// before any credential is issued or anything written. Two real etcds with PKI folders. Oracle: the ranges' overlap
// worked out here by hand per case (the comments), and a snapshot of each side (every key and value, revision,
// users, roles, PKI files) equal before and after each refusal. Control: ranges apart connect, and the pins are
// written. Then `enable --service-cidr` (kept when enabled again without it) and `apply`'s clusterIP check.
import { describe, expect, it } from 'vitest';
import { connectClusters, enableCluster, type ClusterAccess } from '../../src/controlplane/clustermesh.js';
import { clusterConfigKey, pinnedKey, vipKey, vipPrefix } from '../../src/controlplane/keys.js';
import { clusterConfigCodec, pinnedClusterCodec, type ClusterConfig } from '../../src/controlplane/records/cluster.js';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { applyManifests } from '../../src/manifests/apply.js';
import { validateManifest } from '../../src/manifests/validate.js';
import { createCA } from '../../src/controlplane/pki.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { etcdPair, snapshot } from '../helpers/meshsnapshot.js';

const C1: ClusterConfig = { name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs: ['198.18.1.0/24'] }; // VIPs: 100.127.1.0/24
const C2: ClusterConfig = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'] }; // VIPs: 100.127.2.0/24

describe.skipIf(!hasCommand('etcd') || !hasCommand('openssl'))('service VIP ranges are kept apart from pod and node addresses (s15)', () => {
  const { etcds, dirs } = etcdPair('svccidr', [27000, 29000]);

  it('enable refuses a service range over its own pod or underlay CIDRs, the default one included; nothing written', async () => {
    await etcds[0]!.client();
    const access = { endpoints: [etcds[0]!.url()!] };
    const before = await snapshot(access);
    const bad: Array<[string, ClusterConfig]> = [
      ['inside its pod CIDR', { ...C1, serviceCIDR: '100.65.200.0/24' }],
      ['covering its pod CIDR', { ...C1, serviceCIDR: '100.64.0.0/10' }],
      ['inside its underlay', { ...C1, serviceCIDR: '198.18.1.128/25' }],
      ['the default 100.127.1.0/24, inside pod CIDR 100.96.0.0/11 (100.96-100.127)', { ...C1, podCIDRs: ['100.96.0.0/11'] }],
    ];
    for (const [why, cfg] of bad) {
      await expect(enableCluster(access, cfg), why).rejects.toMatchObject({ code: 'WM_SERVICE_CIDR_OVERLAP' });
      expect(await snapshot(access), why).toBe(before);
    }
  });

  it('connect refuses a range over the other side\'s pods, nodes, VIPs or pinned clusters\' pods; both etcds untouched', async () => {
    const access: ClusterAccess[] = [];
    for (const [i, cfg] of [C1, C2].entries()) {
      const c = await etcds[i]!.client();
      access.push({ endpoints: [etcds[i]!.url()!], pkiDir: dirs[i]! });
      createCA(dirs[i]!, cfg.name);
      await enableCluster({ endpoints: access[i]!.endpoints }, cfg);
      // c1 is already connected to c3 (pods 100.67.0.0/16): its pin, as connect writes it
      if (i === 0) await c.put(pinnedKey('c3')).value(pinnedClusterCodec.encode({ name: 'c3', id: 3, podCIDRs: ['100.67.0.0/16'], underlayCIDRs: ['198.18.3.0/24'], relay: false, acceptPolicies: false }));
    }
    const bad: Array<[string, Partial<ClusterConfig>]> = [
      ['c2\'s pods 100.127.0.0/16 hold c1\'s VIPs 100.127.1.0/24 (c2\'s own VIPs moved apart)', { podCIDRs: ['100.127.0.0/16'], serviceCIDR: '100.80.0.0/24' }],
      ['c2\'s underlay 100.127.1.0/25 inside c1\'s VIPs', { underlayCIDRs: ['198.18.2.0/24', '100.127.1.0/25'] }],
      ['c2\'s VIPs 100.65.3.0/24 inside c1\'s pods 100.65.0.0/16', { serviceCIDR: '100.65.3.0/24' }],
      ['c2\'s VIPs 198.18.1.0/25 inside c1\'s underlay 198.18.1.0/24', { serviceCIDR: '198.18.1.0/25' }],
      ['c2\'s VIPs 100.127.1.128/25 inside c1\'s VIPs 100.127.1.0/24', { serviceCIDR: '100.127.1.128/25' }],
      ['c2\'s VIPs 100.67.5.0/24 inside the pods of c3, pinned by c1', { serviceCIDR: '100.67.5.0/24' }],
      // a pin carries no service range: c3's default one, 100.127.3.0/24
      ['c2\'s VIPs 100.127.3.0/25 inside c3\'s default VIPs (c3 pinned by c1)', { serviceCIDR: '100.127.3.0/25' }],
      ['c2\'s pods 100.127.3.0/24 hold c3\'s default VIPs (c3 pinned by c1)', { podCIDRs: ['100.66.0.0/16', '100.127.3.0/24'] }],
    ];
    for (const [why, change] of bad) {
      // c2 alone: its own ranges apart (the default range named: enable keeps a stored one otherwise)
      await enableCluster({ endpoints: access[1]!.endpoints }, { ...C2, serviceCIDR: '100.127.2.0/24', ...change });
      const before = await Promise.all(access.map(snapshot));
      for (const [a, b] of [[0, 1], [1, 0]] as const) {
        await expect(connectClusters(access[a]!, access[b]!), why).rejects.toMatchObject({ code: 'WM_SERVICE_CIDR_OVERLAP' });
        expect(await Promise.all(access.map(snapshot)), why).toEqual(before);
      }
    }

    // control: ranges apart (the defaults, 100.127.1.0/24 and 100.127.2.0/24) connect; the pins are written
    await enableCluster({ endpoints: access[1]!.endpoints }, { ...C2, serviceCIDR: '100.127.2.0/24' });
    const plain = access.map(({ endpoints }) => ({ endpoints }));
    const { aPin, bPin } = await connectClusters(plain[0]!, plain[1]!);
    expect([aPin.name, bPin.name]).toEqual(['c2', 'c1']);
  }, 120_000);

  it('enable takes --service-cidr and keeps the stored one when run again without it', async () => {
    const access = { endpoints: [etcds[1]!.url()!] };
    const stored = async () => {
      const c = connectEtcd(access);
      try {
        return clusterConfigCodec.decode(clusterConfigKey('c2'), (await c.get(clusterConfigKey('c2')).string())!).serviceCIDR;
      } finally {
        c.close();
      }
    };
    // pods 100.127.2.0/23 hold the default 100.127.2.0/24: refused without a range of its own, enabled with one
    // apart, and enabled again without it (the stored range kept, not the default put back). (Not wider: c2 pinned
    // c1 above, whose default VIPs 100.127.1.0/24 its pods must not hold either.)
    const wide = { ...C2, podCIDRs: ['100.66.0.0/16', '100.127.2.0/23'] };
    await expect(enableCluster(access, wide)).rejects.toMatchObject({ code: 'WM_SERVICE_CIDR_OVERLAP' });
    await enableCluster(access, { ...wide, serviceCIDR: '100.80.0.0/24' });
    await enableCluster(access, wide);
    expect(await stored()).toBe('100.80.0.0/24');
    await enableCluster(access, C2); // pods moved back: still the stored range
    expect(await stored()).toBe('100.80.0.0/24');
  });

  it('apply refuses a Service clusterIP outside the cluster\'s service CIDR (a pod\'s, a node\'s, another family) or not one address', async () => {
    const access = { endpoints: [etcds[1]!.url()!] }; // c2, service CIDR 100.80.0.0/24 (the test above)
    const svc = (clusterIP: string) =>
      validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP, selector: { app: 'web' }, ports: [{ port: 80 }] } });
    const before = await snapshot(access);
    // c2's own pod, a node of c2's underlay, c1's pod, the default range no longer c2's, an IPv6 address
    for (const ip of ['100.66.0.5', '198.18.2.7', '100.65.0.5', '100.127.2.9', 'fd00::1']) {
      await expect(applyManifests(access, 'c2', [svc(ip)]), ip).rejects.toMatchObject({ code: 'WM_CONFIG_INVALID' });
      expect(await snapshot(access), ip).toBe(before);
    }
    // not one address as its claim is keyed ("100.80.0.9"): a host prefix, the whole range, a zone, other spellings.
    // validate refuses them, and apply too when handed one past validate (nothing written: no second key for .9)
    for (const ip of ['100.80.0.9/32', '100.80.0.0/24', '100.80.0.9/24', '100.080.0.9', ' 100.80.0.9', 'FD00::1', 'fd00:0::1', 'fe80::1%eth0']) {
      expect(() => svc(ip), ip).toThrow(expect.objectContaining({ code: 'WM_CONFIG_INVALID' }));
      const raw = svc('100.80.0.9');
      (raw.spec as { clusterIP: string }).clusterIP = ip;
      await expect(applyManifests(access, 'c2', [raw]), ip).rejects.toMatchObject({ code: 'WM_CONFIG_INVALID' });
      expect(await snapshot(access), ip).toBe(before);
    }
    expect(await applyManifests(access, 'c2', [svc('100.80.0.9')])).toEqual(['service/shop/web']); // control
  });

  it('enable keeps a new service range over every claimed VIP; apply re-addresses a kept VIP left outside', async () => {
    const access = { endpoints: [etcds[1]!.url()!] }; // c2: range 100.80.0.0/24, shop/web holds 100.80.0.9 (above)
    const before = await snapshot(access);
    // none holds 100.80.0.9: 100.81.0.0-255, 100.80.0.16-31, 100.80.1.0-255
    for (const range of ['100.81.0.0/24', '100.80.0.16/28', '100.80.1.0/24'])
      await expect(enableCluster(access, { ...C2, serviceCIDR: range }), range).rejects.toMatchObject({ code: 'WM_SERVICE_CIDR_IN_USE' });
    expect(await snapshot(access)).toBe(before);
    await enableCluster(access, { ...C2, serviceCIDR: '100.80.0.0/25' }); // control: 100.80.0.9 is inside
    // a claim made from the old range between enable's read and its write (written here by hand): apply gives
    // the service an address inside the range and drops the old claim, as the agents only accept those
    const c = await etcds[1]!.client();
    await c.put(vipKey('c2', '100.80.0.200')).value('shop/api');
    const api = validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'shop' }, spec: { selector: { app: 'api' }, ports: [{ port: 80 }] } });
    await applyManifests(access, 'c2', [api]);
    const vips = await c.getAll().prefix(vipPrefix('c2')).strings();
    expect(vips).toEqual({ [vipKey('c2', '100.80.0.1')]: 'shop/api', [vipKey('c2', '100.80.0.9')]: 'shop/web' });
    expect((api.spec as { clusterIP: string }).clusterIP).toBe('100.80.0.1');
  });

  it('enable run again compares the range with pinned clusters\' default ranges, as connect does', async () => {
    const access = { endpoints: [etcds[0]!.url()!] }; // c1 pinned c3 (id 3: default VIPs 100.127.3.0/24) above
    const before = await snapshot(access);
    for (const [why, cfg] of [
      ['c1\'s VIPs 100.127.3.0/25 inside c3\'s default VIPs', { ...C1, serviceCIDR: '100.127.3.0/25' }],
      ['c1\'s pods 100.127.3.0/24 hold c3\'s default VIPs', { ...C1, podCIDRs: ['100.65.0.0/16', '100.127.3.0/24'] }],
    ] as Array<[string, ClusterConfig]>) {
      await expect(enableCluster(access, cfg), why).rejects.toMatchObject({ code: 'WM_SERVICE_CIDR_OVERLAP' });
      expect(await snapshot(access), why).toBe(before);
    }
    await enableCluster(access, C1); // control: as it was
  });
});
