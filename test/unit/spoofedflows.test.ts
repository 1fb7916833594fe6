// The pod guard's source-spoofed drops as flow records (src/policy/spoofedflows.ts, through PolicyDatapath): the
// sender found by its veth, the address it claimed as the source, the destination's identity (a local endpoint's).
import { describe, expect, it } from 'vitest';
import { clusterIdentity, endpointIdentityLabels } from '../../src/identity/identity.js';
import { silentLogger } from '../../src/log.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { podVeth } from '../../src/testbed/podguard.js';

describe('spoofed flows', () => {
  it("names the sending pod with the source it claimed, the destination's identity, and counts the records", () => {
    const dp = new PolicyDatapath(new FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true }, silentLogger);
    const a = clusterIdentity(1, 60000);
    const b = clusterIdentity(1, 60001);
    dp.setLocalEndpoint('shop/a', a, endpointIdentityLabels({ app: 'a' }, 'shop', 'c1'), ['100.65.0.10']);
    dp.setLocalEndpoint('shop/b', b, endpointIdentityLabels({ app: 'b' }, 'shop', 'c1'), ['100.65.0.11']);
    dp.addSpoofedFlows([
      { iface: podVeth('a'), source: '100.65.0.99', destination: '100.65.0.11', protocol: 'tcp' },
      { iface: 'vp-unknown', source: '100.65.0.98', destination: '100.66.0.1', protocol: '17' },
    ]);
    expect(dp.spoofedRecords).toBe(2);
    const [f1, f2] = dp.flows.slice(-2);
    expect(f1).toMatchObject({ verdict: 'DROPPED', dropReason: 'source-spoofed', direction: 'egress', protocol: 'TCP', source: { ip: '100.65.0.99', identity: a }, destination: { ip: '100.65.0.11', identity: b }, node: 'n1', cluster: 'c1' });
    expect(f2).toMatchObject({ protocol: 'UDP', source: { ip: '100.65.0.98', port: 0, identity: 0 }, destination: { ip: '100.66.0.1', identity: 0 } });
  });
});
