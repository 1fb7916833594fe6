// The agent's ipcache table: prefixes owned by their sources, with precedence
// and removal that restores what the remaining owners say (src/policy/ipcache.ts).
import { describe, expect, it } from 'vitest';
import { canonicalPrefix, IpcacheTable } from '../../src/policy/ipcache.js';

const POD = 0x10101; // some endpoint identity
const CIDR = (1 << 24) + 1; // a CIDR identity
const HOST = 1;
const REMOTE_NODE = 6;

describe('ipcache owners', () => {
  it('one prefix, however it is written', () => {
    expect(canonicalPrefix('100.65.1.10')).toBe('100.65.1.10/32');
    expect(canonicalPrefix('100.65.1.10/32')).toBe('100.65.1.10/32');
    expect(canonicalPrefix('198.18.201.7/24')).toBe('198.18.201.0/24');
    expect(canonicalPrefix('fd65::1')).toBe('fd65::1/128');
    expect(canonicalPrefix('nonsense')).toBeNull();
  });

  it("regression: a CIDR rule naming a pod's /32 neither replaces the pod nor takes it away when the rule goes", () => {
    const t = new IpcacheTable();
    t.set('100.65.2.10', 'endpoint', 'endpoint', { identity: POD, endpoint: 0 });
    expect(t.takeChanges()).toEqual(new Map([['100.65.2.10/32', { identity: POD, endpoint: 0 }]]));
    // the rule comes after the pod: the pod's entry stays what it was (nothing to write)
    t.set('100.65.2.10/32', 'cidr:100.65.2.10/32', 'cidr', { identity: CIDR, endpoint: 0 });
    expect(t.takeChanges().size).toBe(0);
    expect(t.get('100.65.2.10')).toMatchObject({ identity: POD, kind: 'endpoint' });
    // the rule goes: the pod stays
    t.delete('100.65.2.10/32', 'cidr:100.65.2.10/32');
    expect(t.takeChanges().size).toBe(0);
    expect(t.get('100.65.2.10/32')?.identity).toBe(POD);
    expect(t.size).toBe(1);
  });

  it('the rule first, then the pod: the pod wins; the pod goes: the CIDR identity is restored', () => {
    const t = new IpcacheTable();
    t.set('100.65.2.10/32', 'cidr:100.65.2.10/32', 'cidr', { identity: CIDR, endpoint: 0 });
    t.set('100.65.2.10', 'endpoint', 'endpoint', { identity: POD, endpoint: 0 });
    expect(t.takeChanges()).toEqual(new Map([['100.65.2.10/32', { identity: POD, endpoint: 0 }]]));
    t.delete('100.65.2.10', 'endpoint');
    expect(t.takeChanges()).toEqual(new Map([['100.65.2.10/32', { identity: CIDR, endpoint: 0 }]]));
    t.delete('100.65.2.10/32', 'cidr:100.65.2.10/32');
    expect(t.takeChanges()).toEqual(new Map([['100.65.2.10/32', null]]));
    expect(t.size).toBe(0);
  });

  it('precedence: node > local endpoint > endpoint record > CIDR, whatever the order of arrival', () => {
    const orders = [
      ['cidr', 'endpoint', 'local-endpoint', 'node'],
      ['node', 'local-endpoint', 'endpoint', 'cidr'],
      ['endpoint', 'node', 'cidr', 'local-endpoint'],
    ] as const;
    const values = { node: { identity: HOST, endpoint: 0 }, 'local-endpoint': { identity: POD, endpoint: 7 }, endpoint: { identity: POD, endpoint: 0 }, cidr: { identity: CIDR, endpoint: 0 } };
    for (const order of orders) {
      const t = new IpcacheTable();
      for (const k of order) t.set('100.65.1.1', k, k, values[k]);
      expect(t.get('100.65.1.1')?.kind).toBe('node');
      // removing the winners one by one restores the next in precedence
      t.delete('100.65.1.1', 'node');
      expect(t.get('100.65.1.1')).toMatchObject(values['local-endpoint']);
      t.delete('100.65.1.1', 'local-endpoint');
      expect(t.get('100.65.1.1')).toMatchObject(values.endpoint);
      t.delete('100.65.1.1', 'endpoint');
      expect(t.get('100.65.1.1')).toMatchObject(values.cidr);
      t.delete('100.65.1.1', 'cidr');
      expect(t.get('100.65.1.1')).toBeUndefined();
    }
  });

  it('a node address named by a CIDR rule stays remote-node, and outlives the rule', () => {
    const t = new IpcacheTable();
    t.set('198.18.1.11', 'node:c1/n2', 'node', { identity: REMOTE_NODE, endpoint: 0 });
    t.set('198.18.1.11/32', 'cidr:198.18.1.11/32', 'cidr', { identity: CIDR, endpoint: 0 });
    t.set('198.18.1.0/24', 'cidr:198.18.1.0/24', 'cidr', { identity: CIDR + 1, endpoint: 0 });
    const first = t.takeChanges();
    expect(first.get('198.18.1.11/32')).toEqual({ identity: REMOTE_NODE, endpoint: 0 });
    expect(first.get('198.18.1.0/24')).toEqual({ identity: CIDR + 1, endpoint: 0 });
    t.delete('198.18.1.11/32', 'cidr:198.18.1.11/32');
    expect(t.takeChanges().size).toBe(0);
    expect(t.get('198.18.1.11')?.identity).toBe(REMOTE_NODE);
  });

  it('equal precedence: the latest claim wins, and removing it restores the earlier one', () => {
    const t = new IpcacheTable();
    t.set('198.18.1.0/24', 'cidr:198.18.1.0/24', 'cidr', { identity: CIDR, endpoint: 0 });
    t.set('198.18.1.7/24', 'cidr:198.18.1.7/24', 'cidr', { identity: CIDR + 2, endpoint: 0 });
    expect(t.get('198.18.1.0/24')?.identity).toBe(CIDR + 2);
    // re-setting the older claim unchanged does not make it newer
    t.set('198.18.1.0/24', 'cidr:198.18.1.0/24', 'cidr', { identity: CIDR, endpoint: 0 });
    expect(t.get('198.18.1.0/24')?.identity).toBe(CIDR + 2);
    t.delete('198.18.1.7/24', 'cidr:198.18.1.7/24');
    expect(t.get('198.18.1.0/24')?.identity).toBe(CIDR);
    expect(t.ownersOf('198.18.1.0/24')).toEqual([{ owner: 'cidr:198.18.1.0/24', kind: 'cidr' }]);
  });

  it('changes are only what differs from what was taken last', () => {
    const t = new IpcacheTable();
    t.set('100.65.1.10', 'local:ns/a', 'local-endpoint', { identity: POD, endpoint: 3 });
    t.set('100.65.1.10', 'endpoint', 'endpoint', { identity: POD, endpoint: 0 });
    expect(t.takeChanges()).toEqual(new Map([['100.65.1.10/32', { identity: POD, endpoint: 3 }]]));
    // the record from etcd goes and comes back: the local endpoint keeps its endpoint id throughout
    t.delete('100.65.1.10', 'endpoint');
    t.set('100.65.1.10', 'endpoint', 'endpoint', { identity: POD, endpoint: 0 });
    expect(t.takeChanges().size).toBe(0);
    // the local endpoint goes: the record from etcd remains (no local endpoint id)
    t.delete('100.65.1.10', 'local:ns/a');
    expect(t.takeChanges()).toEqual(new Map([['100.65.1.10/32', { identity: POD, endpoint: 0 }]]));
    expect(t.takeChanges().size).toBe(0);
  });
});

// The same, through PolicyDatapath (the agent's side) on the fake device (src/native/fakedevice.ts).
describe('PolicyDatapath ipcache sources', () => {
  async function setup() {
    const { PolicyDatapath } = await import('../../src/policy/datapath.js');
    const { FakeDevice } = await import('../../src/native/fakedevice.js');
    const dev = new FakeDevice();
    const log = { info: () => undefined, warn: () => undefined, debug: () => undefined, error: () => undefined };
    const dp = new PolicyDatapath(dev, 'c1', 'n1', { defaultLocalCluster: true }, log as never);
    const settle = () => new Promise((r) => setImmediate(r));
    return { dp, native: dev.ipcache, settle };
  }
  const rec = (ip: string, node: string, identity: number) => ({ ip, cluster: 'c1', node, namespace: 'y', name: 'b', labels: { pod: 'b' }, identity });

  it('regression: a policy whose ipBlock names a pod neither changes the pod nor removes it when deleted', async () => {
    const { parse } = await import('yaml');
    const { validateManifest } = await import('../../src/manifests/validate.js');
    const { dp, native, settle } = await setup();
    dp.upsertEndpoint('k/n2/100.65.2.12', rec('100.65.2.12', 'n2', POD));
    await settle();
    expect(native.get('100.65.2.12/32')).toEqual({ identity: POD, endpoint: 0 });
    const m = validateManifest(parse(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: to-b, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  policyTypes: [Egress]
  egress: [{ to: [{ ipBlock: { cidr: 100.65.2.12/32 } }] }]
`));
    dp.upsertPolicy('p/x/to-b', 'c1', 'x/knp.to-b', m);
    await settle();
    expect(dp.universe.cidrs.has('100.65.2.12/32')).toBe(true);
    expect(native.get('100.65.2.12/32')).toEqual({ identity: POD, endpoint: 0 });
    dp.removePolicy('p/x/to-b');
    await settle();
    expect(dp.universe.cidrs.size).toBe(0);
    expect(native.get('100.65.2.12/32')).toEqual({ identity: POD, endpoint: 0 });
  });

  it('two endpoint records for one address (a pod moved): removing the stale one keeps the new one', async () => {
    const { dp, native, settle } = await setup();
    dp.upsertEndpoint('k/n2/100.65.2.12', rec('100.65.2.12', 'n2', POD));
    dp.upsertEndpoint('k/n3/100.65.2.12', rec('100.65.2.12', 'n3', POD + 1));
    await settle();
    expect(native.get('100.65.2.12/32')?.identity).toBe(POD + 1);
    dp.removeEndpoint('k/n2/100.65.2.12');
    await settle();
    expect(native.get('100.65.2.12/32')?.identity).toBe(POD + 1);
    dp.removeEndpoint('k/n3/100.65.2.12');
    await settle();
    expect(native.has('100.65.2.12/32')).toBe(false);
  });

  it("a node's address and the router address stay host / remote-node whatever else names them", async () => {
    const { dp, native, settle } = await setup();
    dp.setNode('c1/n1', ['198.18.1.10', '100.65.1.1']);
    dp.setNode('c1/n2', ['198.18.1.11']);
    dp.upsertEndpoint('k/n1/100.65.1.1', rec('100.65.1.1', 'n1', POD));
    await settle();
    expect(native.get('100.65.1.1/32')?.identity).toBe(HOST);
    dp.setNode('c1/n2', null);
    await settle();
    expect(native.has('198.18.1.11/32')).toBe(false);
    expect(native.get('198.18.1.10/32')?.identity).toBe(HOST);
  });
});
