// Which service definitions the services' index builds members for (src/services/datapath.ts reindex): only those a
// rebuild reads (service.ts contributingDefinitions). A hostile cluster defining many services, each picking all of
// its endpoints, made the index hold definitions x endpoints member entries before (review of s26svc: 28 MB of heap
// at 1000 definitions and 1000 endpoints); now a definition of a service this cluster does not define, or a
// non-shared one, holds none and costs no read of the table. The reads are counted on the table the index reads.
import { describe, expect, it } from 'vitest';
import { EndpointRecordsMap } from '../../src/controlplane/endpointrecords.js';
import type { EndpointRecord } from '../../src/controlplane/types.js';
import { silentLogger } from '../../src/log.js';
import { GLOBAL_ANNOTATION, SHARED_ANNOTATION, validateManifest } from '../../src/manifests/validate.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { ServiceDatapath } from '../../src/services/datapath.js';

const manifest = (name: string, annotations: Record<string, string> = {}, clusterIP = '100.127.0.1') =>
  validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop', annotations }, spec: { clusterIP, selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }] } });

describe('ServiceDatapath indexes only the definitions its services read', () => {
  it("holds no members for another cluster's definitions until a local global definition makes them contribute", () => {
    const records = new EndpointRecordsMap();
    const reads: string[] = [];
    const entriesOfNode = records.entriesOfNode.bind(records);
    records.entriesOfNode = (id: string, ns: string) => (reads.push(id), entriesOfNode(id, ns));
    const dp = new ServiceDatapath(new FakeDevice(), 'fake0', 'c1', 'n1', { maglevTableSize: 251, routeVip: (_v, add) => add, endpoints: records }, silentLogger, () => 1);
    for (let i = 0; i < 50; i++) {
      const rec: EndpointRecord = { ip: `100.66.0.${i + 1}`, cluster: 'c2', node: `n${i % 5}`, namespace: 'shop', name: `p${i}`, labels: { app: 'web' } };
      records.set(`k${i}`, rec);
      dp.upsertEndpoint(`k${i}`, rec, undefined);
    }
    // c2 defines 100 global services (shared: the default), each picking all its endpoints, and one not shared:
    // none is defined here
    for (let s = 0; s < 100; s++) dp.upsertRecord(`c2/s${s}`, 'c2', manifest(`s${s}`, { [GLOBAL_ANNOTATION]: 'true' }));
    dp.upsertRecord('c2/s5', 'c2', manifest('s5', { [GLOBAL_ANNOTATION]: 'true', [SHARED_ANNOTATION]: 'false' }));
    dp.compute();
    expect(reads).toEqual([]);
    expect(dp.list()).toEqual([]);
    // defined here but not global: c2's definition of it still contributes nothing
    dp.upsertRecord('c1/s4', 'c1', manifest('s4'));
    dp.compute();
    expect(reads).toEqual([]); // (c1 has no endpoint in shop: its scope counts no node)
    expect(dp.list().map((s) => [s.name, s.ports[0]!.backends.length])).toEqual([['s4', 0]]);
    // global here: c2's shared definition of it contributes its 50 endpoints, read once, node by node
    dp.upsertRecord('c1/s3', 'c1', manifest('s3', { [GLOBAL_ANNOTATION]: 'true' }));
    dp.compute();
    expect(reads.sort()).toEqual(['c2/n0', 'c2/n1', 'c2/n2', 'c2/n3', 'c2/n4']);
    const s3 = () => dp.list().find((s) => s.name === 's3');
    expect(s3()!.ports[0]!.backends).toHaveLength(50);
    // global here too, but c2's definition not shared: not indexed, nothing read, no backends
    reads.length = 0;
    dp.upsertRecord('c1/s5', 'c1', manifest('s5', { [GLOBAL_ANNOTATION]: 'true' }));
    dp.compute();
    expect(reads).toEqual([]);
    expect(dp.list().find((s) => s.name === 's5')!.ports[0]!.backends).toHaveLength(0);
    // no longer global: c2's definition leaves the index, and its backends the service
    dp.upsertRecord('c1/s3', 'c1', manifest('s3'));
    dp.compute();
    expect(s3()!.ports[0]!.backends).toHaveLength(0);
    // c2 withdraws its definitions, and c1 its own: nothing left
    for (let s = 0; s < 100; s++) dp.removeRecord(`c2/s${s}`);
    for (const s of ['s3', 's4', 's5']) dp.removeRecord(`c1/${s}`);
    dp.compute();
    expect(dp.list()).toEqual([]);
  });

  it('answers DNS with the local definition the tables are built from, among that service\'s definitions only', () => {
    const dp = new ServiceDatapath(new FakeDevice(), 'fake0', 'c1', 'n1', { maglevTableSize: 251, routeVip: (_v, add) => add, endpoints: new EndpointRecordsMap() }, silentLogger, () => 1);
    for (let s = 0; s < 100; s++) dp.upsertRecord(`c2/s${s}`, 'c2', manifest(`s${s}`, { [GLOBAL_ANNOTATION]: 'true' }));
    expect(dp.lookup('shop', 's3')).toBeUndefined(); // only another cluster's
    // two local definitions of one name (two keys): the first to arrive is the one served, until it is replaced
    dp.upsertRecord('c1/a', 'c1', manifest('s3', {}, '100.127.0.3'));
    dp.upsertRecord('c1/b', 'c1', manifest('s3', {}, '100.127.0.4'));
    dp.compute();
    const served = () => dp.list().find((s) => s.name === 's3')!.vip;
    expect([dp.lookup('shop', 's3')!.vip, served()]).toEqual(['100.127.0.3', '100.127.0.3']);
    dp.upsertRecord('c1/a', 'c1', manifest('s3', {}, '100.127.0.5')); // replaced: it goes last
    dp.compute();
    expect([dp.lookup('shop', 's3')!.vip, served()]).toEqual(['100.127.0.4', '100.127.0.4']);
    dp.removeRecord('c1/b');
    dp.compute();
    expect([dp.lookup('shop', 's3')!.vip, served()]).toEqual(['100.127.0.5', '100.127.0.5']);
    expect(dp.lookup('shop', 'nothing')).toBeUndefined();
  });
});
