// Regression (review of s26svc #1): admission admitted an endpoint record naming another cluster than its source
// and its key (sourced from c2, keyed under c2/n1, saying cluster c3). Admission's table filed it under c2/n1 while
// the services' index counted it under c3/n1, so whether c2's pod became a backend of c3's definition depended on
// which came first. The codec refuses such a record before admission on the agent's real path; admission refuses
// it too now, so every reader of the table may take a record's cluster and node for its key's.
import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/agent/admission.js';
import { handOverEndpoint } from '../../src/agent/endpointhandoff.js';
import { Rejections } from '../../src/controlplane/records/rejections.js';
import { Trust } from '../../src/controlplane/records/trust.js';
import type { EndpointRecord, NodeRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { validateManifest, GLOBAL_ANNOTATION } from '../../src/manifests/validate.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { ServiceDatapath } from '../../src/services/datapath.js';

const KEY = (i: number) => String.fromCharCode(65 + i).repeat(42) + 'A=';
const m = validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'ns', annotations: { [GLOBAL_ANNOTATION]: 'true' } }, spec: { clusterIP: '100.127.0.1', selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }] } });

function agent(defsFirst: boolean) {
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
  trust.pin({ name: 'c3', id: 3, podCIDRs: ['100.67.0.0/16'], underlayCIDRs: ['198.18.3.0/24'], relay: false, acceptPolicies: false });
  let dp!: PolicyDatapath; let svc!: ServiceDatapath;
  const a: Admission = new Admission(trust, new Rejections(), { node: () => undefined, endpoint: (k, r, o) => handOverEndpoint(dp, svc, k, r, o), identity: () => undefined, relay: () => undefined });
  dp = new PolicyDatapath(new FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true, records: a.endpointRecords }, silentLogger);
  svc = new ServiceDatapath(new FakeDevice(), 'fake0', 'c1', 'n1', { maglevTableSize: 251, routeVip: (_v, add) => add, endpoints: dp.endpoints }, silentLogger, () => 1);
  const defs = () => { svc.upsertRecord('s/c3', 'c3', m); svc.upsertRecord('s/c1', 'c1', m); };
  if (defsFirst) defs();
  a.upsert('node', 'wiremesh/cache/nodes/v1/c2/n1', 'c2', { cluster: 'c2', clusterId: 2, name: 'n1', addresses: ['198.18.2.10'], port: 51820, publicKey: KEY(0), podCIDRs: ['100.66.0.0/24'], bootId: '1' } as NodeRecord);
  const k = a.endpointKeys.acquire('wiremesh/cache/ip/v2/c2/n1/100.66.0.10');
  // sourced from c2 (its key, its pod CIDR) but naming cluster c3
  const rec: EndpointRecord = { ip: '100.66.0.10', cluster: 'c3', node: 'n1', namespace: 'ns', name: 'x', labels: { app: 'web' } };
  a.upsert('endpoint', k, 'c2', rec);
  if (!defsFirst) defs();
  svc.compute();
  return { admitted: a.endpointRecords.get(k), backends: svc.list()[0]!.ports[0]!.backends.map((b) => `${b.cluster}/${b.ip}`) };
}

describe('an endpoint record naming another cluster than its source and key', () => {
  it('is refused by admission', () => {
    expect(agent(true).admitted).toBeUndefined();
  });
  it('is no backend of that cluster\'s service, whichever comes first', () => {
    expect(agent(true).backends).toEqual([]);
    expect(agent(true).backends).toEqual(agent(false).backends);
  });
});
