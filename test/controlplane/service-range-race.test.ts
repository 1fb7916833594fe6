// `clustermesh enable --service-cidr`, `apply` and `connect` race on one real etcd (docs/security.md, "Service VIP
// ranges"): enable checks the VIP claims and the pins and writes the new range, apply reads the range and claims
// VIPs from it, connect checks each side's cluster-config and writes its pin. Each side's write is one etcd
// transaction guarded by what it read (vipclaims.ts), so whichever commits second reads again. The interleavings are
// forced with the RaceHooks (the racer runs between the loser's reads and its write; no sleeps), the racer being
// the real other command. Oracle: what etcd holds afterwards (the stored range, every claim key and value, the
// Service record), worked out here by hand per case: no claim outside the stored range, ever; and the attempts
// each side made (a loser makes exactly one more). Then claims stored before canonical spec.clusterIP ("/32").
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { connectClusters, enableCluster, meshStatus } from '../../src/controlplane/clustermesh.js';
import { clusterConfigKey, pinnedKey, pinnedPrefix, remotesPrefix, stateKey, vipKey, vipPrefix } from '../../src/controlplane/keys.js';
import { clusterConfigCodec, type ClusterConfig } from '../../src/controlplane/records/cluster.js';
import { claimedAddress } from '../../src/controlplane/servicecidr.js';
import type { RaceHooks } from '../../src/controlplane/vipclaims.js';
import { applyManifests } from '../../src/manifests/apply.js';
import { validateManifest } from '../../src/manifests/validate.js';
import { hasCommand } from '../../src/testbed/netns.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';

const C: ClusterConfig = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'] };

const svc = (name: string, clusterIP?: string) =>
  validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop' }, spec: { ...(clusterIP ? { clusterIP } : {}), selector: { app: name }, ports: [{ port: 80 }] } });

/** Hooks that run `racer` between each attempt's reads and its write; `attempts` lists every attempt made. */
function raceEvery(racer: (attempt: number) => Promise<unknown>): RaceHooks & { attempts: number[] } {
  const attempts: number[] = [];
  return {
    attempts,
    async beforeCommit(attempt) {
      attempts.push(attempt);
      await racer(attempt);
    },
  };
}

/** The racer once, before the first attempt's write only. */
const raceOnce = (racer: () => Promise<unknown>) => raceEvery(async (attempt) => (attempt === 0 ? racer() : undefined));

describe('claimedAddress: a claim\'s name decoded once (canonical address, or a host prefix of one)', () => {
  it('takes an address or its host prefix; anything else is no address', () => {
    expect(claimedAddress('100.80.0.9')).toEqual(Buffer.from([100, 80, 0, 9]));
    expect(claimedAddress('100.80.0.9/32')).toEqual(Buffer.from([100, 80, 0, 9]));
    expect(claimedAddress('fd00::9/128')?.toString('hex')).toBe('fd000000000000000000000000000009');
    for (const bad of ['100.80.0.9/24', '100.80.0.0/24', '100.80.0.9/33', '100.80.0.9/032', '100.80.0.9/', 'fd00::9/32', '100.80.0.9/128', 'x', '', '/32', '100.80.0.9/32/32'])
      expect(claimedAddress(bad), bad).toBeNull();
  });
});

describe.skipIf(!hasCommand('etcd'))('service range, VIP claims and pins serialise through etcd', () => {
  // ports 21000-22999: below the ephemeral range (32768-60999), where a busy host's outgoing connections could hold them
  const etcd = loopbackEtcd('svcrace', 21000);
  afterAll(() => etcd.stop());
  const access = () => ({ endpoints: [etcd.url()!] });
  const range = async () => clusterConfigCodec.decode(clusterConfigKey('c2'), (await (await etcd.client()).get(clusterConfigKey('c2')).string())!).serviceCIDR;
  const claims = async () => (await etcd.client()).getAll().prefix(vipPrefix('c2')).strings();
  const stored = async (name: string) => JSON.parse((await (await etcd.client()).get(stateKey('services', 'c2', `shop/${name}`)).string()) ?? 'null') as { spec: { clusterIP: string } } | null;

  beforeEach(async () => {
    const c = await etcd.client();
    await c.delete().all();
    await enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/24' });
    await applyManifests(access(), 'c2', [svc('web', '100.80.0.9')]);
  });

  it('enable reads the claims, apply claims outside the new range, enable\'s write fails and it refuses on reading again', async () => {
    // /25 holds web's 100.80.0.9; api's 100.80.0.200 (claimed from the old /24 in between) is outside it
    const hooks = raceOnce(() => applyManifests(access(), 'c2', [svc('api', '100.80.0.200')]));
    const err = await enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/25' }, hooks).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WM_SERVICE_CIDR_IN_USE' });
    expect(String(err)).toContain(vipKey('c2', '100.80.0.200'));
    expect(hooks.attempts).toEqual([0]); // the retry read the claim and refused before writing
    expect(await range()).toBe('100.80.0.0/24');
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.9')]: 'shop/web', [vipKey('c2', '100.80.0.200')]: 'shop/api' });
  });

  it('control: a claim made in between inside the new range fails the first write only; the second lands', async () => {
    const hooks = raceOnce(() => applyManifests(access(), 'c2', [svc('api', '100.80.0.10')]));
    await enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/25' }, hooks);
    expect(hooks.attempts).toEqual([0, 1]);
    expect(await range()).toBe('100.80.0.0/25');
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.9')]: 'shop/web', [vipKey('c2', '100.80.0.10')]: 'shop/api' });
  });

  it('apply reads the range, enable moves it, apply\'s claim fails and it allocates again inside the new range', async () => {
    // from the old /24 apply picks the lowest free VIP, 100.80.0.1; enable moves the range to 100.80.0.8/29
    // (.8-.15: web's .9 inside, .1 not) in between; from it the lowest free host address is .10
    const db = svc('db');
    const hooks = raceOnce(() => enableCluster(access(), { ...C, serviceCIDR: '100.80.0.8/29' }));
    await applyManifests(access(), 'c2', [db], hooks);
    expect(hooks.attempts).toEqual([0, 1]);
    expect(await range()).toBe('100.80.0.8/29');
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.9')]: 'shop/web', [vipKey('c2', '100.80.0.10')]: 'shop/db' });
    expect((db.spec as { clusterIP: string }).clusterIP).toBe('100.80.0.10');
    expect((await stored('db'))?.spec.clusterIP).toBe('100.80.0.10');
  });

  it('apply of an explicit VIP the moved range no longer holds is refused on reading again; nothing stored', async () => {
    const hooks = raceOnce(() => enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/25' }));
    await expect(applyManifests(access(), 'c2', [svc('db', '100.80.0.200')], hooks)).rejects.toMatchObject({ code: 'WM_CONFIG_INVALID' });
    expect(hooks.attempts).toEqual([0]); // the retry's allocation refused before any write
    expect(await range()).toBe('100.80.0.0/25');
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.9')]: 'shop/web' });
    expect(await stored('db')).toBeNull();
  });

  it('a racer that wins every time: each side gives up after RACE_ATTEMPTS reads with WM_VIP_RACE, nothing written', async () => {
    // enable to /25 while applies keep claiming inside it (each claim a new key after enable's read)
    const applies = raceEvery((i) => applyManifests(access(), 'c2', [svc(`api${i}`)]));
    await expect(enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/25' }, applies)).rejects.toMatchObject({ code: 'WM_VIP_RACE' });
    expect(applies.attempts).toEqual([0, 1, 2, 3, 4]);
    expect(await range()).toBe('100.80.0.0/24');
    // apply while enables keep moving the range (/25 and /24 in turn, both holding every claim)
    const enables = raceEvery((i) => enableCluster(access(), { ...C, serviceCIDR: i % 2 ? '100.80.0.0/24' : '100.80.0.0/25' }));
    await expect(applyManifests(access(), 'c2', [svc('db')], enables)).rejects.toMatchObject({ code: 'WM_VIP_RACE' });
    expect(enables.attempts).toEqual([0, 1, 2, 3, 4]);
    expect(Object.values(await claims())).not.toContain('shop/db');
    expect(await stored('db')).toBeNull();
  });

  it('an apply that lost its picked VIP to another apply allocates again from what it asked for (not its lost pick)', async () => {
    // regression: the lost attempt's pick (100.80.0.1) was left in spec.clusterIP and read back as an explicit
    // request held by another Service (WM_CONFIG_INVALID)
    const db = svc('db');
    const hooks = raceOnce(() => applyManifests(access(), 'c2', [svc('api')]));
    await applyManifests(access(), 'c2', [db], hooks);
    expect(hooks.attempts).toEqual([0, 1]);
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.1')]: 'shop/api', [vipKey('c2', '100.80.0.2')]: 'shop/db', [vipKey('c2', '100.80.0.9')]: 'shop/web' });
    expect((await stored('db'))?.spec.clusterIP).toBe('100.80.0.2');
  });

  it('a claim stored as a host prefix (before canonical clusterIP) counts as its address; others are refused by key', async () => {
    const c = await etcd.client();
    await c.put(vipKey('c2', '100.80.0.77/32')).value('shop/old');
    // 100.80.0.0/25 (.0-.127) holds .77 and web's .9: enabled
    await enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/25' });
    expect(await range()).toBe('100.80.0.0/25');
    // 100.80.0.0/26 (.0-.63) holds .9, not .77: refused, naming the claim's key
    const err = await enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/26' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'WM_SERVICE_CIDR_IN_USE' });
    expect(String(err)).toContain(vipKey('c2', '100.80.0.77/32'));
    // its address is handed to no other Service
    await expect(applyManifests(access(), 'c2', [svc('new', '100.80.0.77')])).rejects.toMatchObject({ code: 'WM_CONFIG_INVALID' });
    // fail closed: a claim that is not one address (not a host prefix, not an address) refuses any new range
    for (const name of ['100.80.0.64/26', '100.80.0.10/31', 'not-an-address']) {
      await c.put(vipKey('c2', name)).value('shop/odd');
      const e = await enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/24' }).catch((x: unknown) => x);
      expect(e, name).toMatchObject({ code: 'WM_SERVICE_CIDR_IN_USE' });
      expect(String(e), name).toContain(vipKey('c2', name));
      await c.delete().key(vipKey('c2', name));
    }
    expect(await range()).toBe('100.80.0.0/25');
    // the owner applied again without clusterIP: keeps its address (inside the range), the claim moved to its
    // canonical key and the host-prefix key released (regression: it was moved to the lowest free VIP, .1)
    const old = svc('old');
    await applyManifests(access(), 'c2', [old]);
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.77')]: 'shop/old', [vipKey('c2', '100.80.0.9')]: 'shop/web' });
    expect((old.spec as { clusterIP: string }).clusterIP).toBe('100.80.0.77');
    expect((await stored('old'))?.spec.clusterIP).toBe('100.80.0.77');
  });

  it('a host-prefix claim\'s address is never the lowest free VIP of a Service applied without clusterIP', async () => {
    // regression guard: 100.80.0.1/32 holds .1, so the first free address from the /24 is .2
    await (await etcd.client()).put(vipKey('c2', '100.80.0.1/32')).value('shop/old');
    await applyManifests(access(), 'c2', [svc('new')]);
    expect((await stored('new'))?.spec.clusterIP).toBe('100.80.0.2');
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.1/32')]: 'shop/old', [vipKey('c2', '100.80.0.2')]: 'shop/new', [vipKey('c2', '100.80.0.9')]: 'shop/web' });
  });

  // One apply that moves VIPs between its own Services. Oracle: the claims a user asked for, by hand; each is one
  // transaction in etcd, which refuses two writes of one key (a put and a delete included) as a whole.
  it('one object defined twice is refused before anything is written (was: etcd\'s raw duplicate-key error)', async () => {
    for (const twice of [[svc('db'), svc('db')], [svc('db', '100.80.0.20'), svc('api'), svc('db', '100.80.0.21')], [svc('web', '100.80.0.9'), svc('web')]]) {
      const err = await applyManifests(access(), 'c2', twice).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'WM_CONFIG_INVALID' });
      expect(String(err)).toMatch(/defined twice/);
    }
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.9')]: 'shop/web' });
    expect(await stored('db')).toBeNull();
  });

  it('a VIP given up by one Service is taken by another in the same apply, in either order (was: WM_VIP_RACE or refused)', async () => {
    for (const order of [0, 1]) {
      await (await etcd.client()).delete().prefix(vipPrefix('c2'));
      await applyManifests(access(), 'c2', [svc('web', '100.80.0.9')]);
      // web moves .9 -> .30 and api takes .9 (explicitly); db (no clusterIP) takes the lowest free, .1
      const batch = [svc('web', '100.80.0.30'), svc('api', '100.80.0.9'), svc('db')];
      await applyManifests(access(), 'c2', order ? batch.reverse() : batch);
      expect(await claims(), `order ${order}`).toEqual({ [vipKey('c2', '100.80.0.1')]: 'shop/db', [vipKey('c2', '100.80.0.9')]: 'shop/api', [vipKey('c2', '100.80.0.30')]: 'shop/web' });
      expect((await stored('api'))?.spec.clusterIP).toBe('100.80.0.9');
    }
    // a swap: web .30 <-> api .9 (each claim written over, compared with its giver; no delete)
    await applyManifests(access(), 'c2', [svc('api', '100.80.0.30'), svc('web', '100.80.0.9')]);
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.1')]: 'shop/db', [vipKey('c2', '100.80.0.9')]: 'shop/web', [vipKey('c2', '100.80.0.30')]: 'shop/api' });
  });

  it('a handed-over VIP is written only while its giver still holds it: a change in between makes it allocate again', async () => {
    // web gives .9 up to api; in between, someone else's claim is written over web's .9
    const hooks = raceOnce(async () => {
      const c = await etcd.client();
      await c.put(vipKey('c2', '100.80.0.9')).value('shop/other');
    });
    const err = await applyManifests(access(), 'c2', [svc('web', '100.80.0.30'), svc('api', '100.80.0.9')], hooks).catch((e: unknown) => e);
    // the retry reads .9 as shop/other's: api's explicit request is refused; nothing of this apply written
    expect(err).toMatchObject({ code: 'WM_CONFIG_INVALID' });
    expect(hooks.attempts).toEqual([0]);
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.9')]: 'shop/other' });
    expect(await stored('api')).toBeNull();
  });

  it('a VIP given up is deleted only while still the giver\'s: deleted and claimed again in between, the apply reads again', async () => {
    // regression (review): web gives .9 up for .30; meanwhile web is deleted and another Service claims .9. The
    // delete of .9 was unguarded: it removed other's claim, and a third Service could then take .9 as well
    const hooks = raceOnce(async () => {
      const c = await etcd.client();
      await c.delete().key(stateKey('services', 'c2', 'shop/web'));
      await c.delete().key(vipKey('c2', '100.80.0.9'));
      await applyManifests(access(), 'c2', [svc('other', '100.80.0.9')]);
    });
    await applyManifests(access(), 'c2', [svc('web', '100.80.0.30')], hooks);
    expect(hooks.attempts).toEqual([0, 1]);
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.9')]: 'shop/other', [vipKey('c2', '100.80.0.30')]: 'shop/web' });
    await expect(applyManifests(access(), 'c2', [svc('third', '100.80.0.9')])).rejects.toMatchObject({ code: 'WM_CONFIG_INVALID' });
  });

  it('a Service going headless (clusterIP None) gives its VIP up, to another Service of the same apply too', async () => {
    await applyManifests(access(), 'c2', [svc('web', 'None')]);
    expect(await claims()).toEqual({});
    await applyManifests(access(), 'c2', [svc('web', '100.80.0.9')]);
    for (const batch of [[svc('web', 'None'), svc('api', '100.80.0.9')], [svc('api', '100.80.0.9'), svc('web', 'None')]]) {
      await (await etcd.client()).delete().prefix(vipPrefix('c2'));
      await applyManifests(access(), 'c2', [svc('web', '100.80.0.9'), svc('api', '100.80.0.20')]);
      await applyManifests(access(), 'c2', batch);
      expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.9')]: 'shop/api' });
    }
  });

  it('an explicit VIP is never the service range\'s network or broadcast address (as automatic allocation)', async () => {
    for (const ip of ['100.80.0.0', '100.80.0.255']) {
      const err = await applyManifests(access(), 'c2', [svc('db', ip)]).catch((e: unknown) => e);
      expect(err, ip).toMatchObject({ code: 'WM_CONFIG_INVALID' });
      expect(String(err), ip).toMatch(/network or broadcast/);
    }
    await applyManifests(access(), 'c2', [svc('db', '100.80.0.254'), svc('api', '100.80.0.1')]);
    expect(await claims()).toEqual({ [vipKey('c2', '100.80.0.1')]: 'shop/api', [vipKey('c2', '100.80.0.9')]: 'shop/web', [vipKey('c2', '100.80.0.254')]: 'shop/db' });
  });

  describe('enable and connect serialise through the pins and the cluster-config (c1: a second real etcd)', () => {
    // ports 23000-24999, apart from the first etcd's
    const etcd1 = loopbackEtcd('svcrace-c1', 23000);
    afterAll(() => etcd1.stop());
    const access1 = () => ({ endpoints: [etcd1.url()!] });
    const C1: ClusterConfig = { name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs: ['198.18.1.0/24'] };
    // 100.65.9.0/24: inside c1's pods, apart from c2's own pods and underlay (so enable alone would take it)
    const INTO_C1 = '100.65.9.0/24';
    const keysUnder = async (c: Awaited<ReturnType<typeof etcd.client>>, prefix: string) => Object.keys(await c.getAll().prefix(prefix).strings());

    beforeEach(async () => {
      // no VIP claimed in c2: only the pins and the ranges decide
      await (await etcd.client()).delete().prefix(vipPrefix('c2'));
      await (await etcd1.client()).delete().all();
      await enableCluster(access1(), C1);
    });

    it('enable reads the pins, connect pins c1 (checked against the old range), enable\'s write fails and it refuses on reading again', async () => {
      const hooks = raceOnce(() => connectClusters(access(), access1()));
      await expect(enableCluster(access(), { ...C, serviceCIDR: INTO_C1 }, hooks)).rejects.toMatchObject({ code: 'WM_SERVICE_CIDR_OVERLAP' });
      expect(hooks.attempts).toEqual([0]); // the retry read c1's pin and refused before writing
      expect(await range()).toBe('100.80.0.0/24');
      expect(await keysUnder(await etcd.client(), pinnedPrefix())).toEqual([pinnedKey('c1')]);
    });

    it('control: a pin written in between that the new range is apart from fails the first write only', async () => {
      const hooks = raceOnce(() => connectClusters(access(), access1()));
      await enableCluster(access(), { ...C, serviceCIDR: '100.80.0.0/25' }, hooks);
      expect(hooks.attempts).toEqual([0, 1]);
      expect(await range()).toBe('100.80.0.0/25');
      // a connect that finished leaves no half-state warning on either side
      for (const a of [access(), access1()]) expect((await meshStatus(a)).warnings.filter((w) => w.includes('no remote entry'))).toEqual([]);
    });

    it('connect checks c2\'s range, enable moves it into c1\'s pods, connect\'s pin write fails: nothing written; connect again refuses', async () => {
      const hooks = raceOnce(() => enableCluster(access(), { ...C, serviceCIDR: INTO_C1 }));
      await expect(connectClusters(access(), access1(), { hooks })).rejects.toMatchObject({ code: 'WM_CONNECT_RACE' });
      expect(hooks.attempts).toEqual([0]);
      expect(await range()).toBe(INTO_C1);
      for (const c of [await etcd.client(), await etcd1.client()]) {
        expect(await keysUnder(c, pinnedPrefix())).toEqual([]);
        expect(await keysUnder(c, remotesPrefix())).toEqual([]);
      }
      await expect(connectClusters(access(), access1())).rejects.toMatchObject({ code: 'WM_SERVICE_CIDR_OVERLAP' });
    });

    it('the second side\'s config changed in between: its pin is not written, the first side\'s stays (docs/errors.md)', async () => {
      const hooks = raceOnce(() => enableCluster(access1(), { ...C1, serviceCIDR: '100.81.0.0/24' }));
      await expect(connectClusters(access(), access1(), { hooks })).rejects.toMatchObject({ code: 'WM_CONNECT_RACE' });
      expect(await keysUnder(await etcd.client(), pinnedPrefix())).toEqual([pinnedKey('c1')]);
      expect(await keysUnder(await etcd1.client(), pinnedPrefix())).toEqual([]);
      for (const c of [await etcd.client(), await etcd1.client()]) expect(await keysUnder(c, remotesPrefix())).toEqual([]);
      // the half-state is shown: c2's status names the pin without a remote entry
      expect((await meshStatus(access())).warnings.filter((w) => w.includes('no remote entry'))).toEqual([expect.stringMatching(/^cluster c1: pinned here but no remote entry/)]);
      expect((await meshStatus(access1())).warnings.filter((w) => w.includes('no remote entry'))).toEqual([]);
    });
  });
});
