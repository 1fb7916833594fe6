// Admission's table keeps the common endpoint record packed (src/agent/packedendpoint.ts) and builds it again on
// every read. Expectations from the record's definition (src/controlplane/records/endpoint.ts): what a read gives
// back is the record the codec decoded, the same fields in the same order, the same JSON; what cannot come back
// exactly (another address text, a node id that is not the record's, a field the schema does not know) is not
// packed at all.
import { describe, expect, it } from 'vitest';
import { EndpointStore } from '../../src/agent/endpointstore.js';
import { packEndpoint, PackedEndpoint, shallowSame, unpackEndpoint } from '../../src/agent/packedendpoint.js';
import { endpointCodec, type EndpointRecord } from '../../src/controlplane/records/index.js';

const key = (cluster: string, node: string, ip: string) => `wiremesh/cache/ip/v2/${cluster}/${node}/${ip}`;
/** A record as the agent's codec hands it out, from its value text. */
function decoded(v: Record<string, unknown>): EndpointRecord {
  return endpointCodec.decode(key(String(v.cluster), String(v.node), String(v.ip)), JSON.stringify(v));
}
const base = { ip: '100.66.1.10', cluster: 'c2', node: 'node-a.example', namespace: 'shop', name: 'cart-7d9f8c6b5-x2x4z', labels: { app: 'cart', tier: 'web' } };

describe('packed endpoint records', () => {
  const shapes: Array<[string, Record<string, unknown>]> = [
    ['no identity, no ports', base],
    ['an identity', { ...base, identity: 0x20005 }],
    ['named ports', { ...base, ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }],
    ['an identity and named ports', { ...base, identity: 0x20005, ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }] }],
    ['the highest address', { ...base, ip: '255.255.255.255' }],
    ['an address above 2^31', { ...base, ip: '198.18.0.1' }],
    ['the lowest address', { ...base, ip: '0.0.0.0' }],
  ];
  for (const [what, v] of shapes) {
    it(`gives back the record it packed: ${what}`, () => {
      const rec = decoded(v);
      const p = packEndpoint(rec, `${rec.cluster}/${rec.node}`);
      expect(p).toBeInstanceOf(PackedEndpoint);
      const back = unpackEndpoint(p!, `${rec.cluster}/${rec.node}`);
      expect(back).toStrictEqual(rec);
      expect(Object.keys(back)).toEqual(Object.keys(rec));
      expect(JSON.stringify(back)).toBe(JSON.stringify(rec));
      expect(back).not.toBe(rec); // a new object on every read
      expect(shallowSame(back, rec)).toBe(true);
    });
  }

  it('packs nothing it could not give back exactly', () => {
    const rec = decoded(base);
    expect(packEndpoint(rec, 'c2/node-b')).toBeUndefined(); // filed under another node
    expect(packEndpoint(rec, 'c3/node-a.example')).toBeUndefined(); // or another cluster
    expect(packEndpoint({ ...rec, ip: 'fd00::1' }, 'c2/node-a.example')).toBeUndefined(); // IPv6
    for (const ip of ['100.066.1.10', '100.66.1.10/32', '::ffff:100.66.1.10', '100.66.1', ' 100.66.1.10'])
      expect(packEndpoint({ ...rec, ip }, 'c2/node-a.example'), ip).toBeUndefined();
    expect(packEndpoint({ ...rec, extra: 1 } as EndpointRecord, 'c2/node-a.example')).toBeUndefined(); // a field unknown to the schema
    expect(packEndpoint({ ...rec, identity: undefined }, 'c2/node-a.example')).toBeUndefined(); // present as undefined: not the codec's shape
    expect(packEndpoint({ ...rec, identity: 2 ** 31 }, 'c2/node-a.example')).toBeUndefined();
    // review of s25pack: shapes the first version packed and read back otherwise
    expect(packEndpoint({ ...rec, identity: -1 }, 'c2/node-a.example')).toBeUndefined(); // -1 is "none" inside
    expect(packEndpoint({ ...rec, identity: -0 }, 'c2/node-a.example')).toBeUndefined();
    for (const ports of [null, 0, '']) expect(packEndpoint({ ...rec, ports } as unknown as EndpointRecord, 'c2/node-a.example'), String(ports)).toBeUndefined();
    const { name: _n, ...noName } = rec;
    expect(packEndpoint({ ...noName, extra: 'x' } as unknown as EndpointRecord, 'c2/node-a.example')).toBeUndefined(); // same count, other keys
    const { ip, ...rest } = rec;
    expect(packEndpoint({ ...rest, ip } as EndpointRecord, 'c2/node-a.example')).toBeUndefined(); // another key order
    expect(packEndpoint(Object.assign(Object.create({ inherited: 1 }), rec) as EndpointRecord, 'c2/node-a.example')).toBeUndefined();
    expect(packEndpoint({ ...rec, identity: 1.5 }, 'c2/node-a.example')).toBeUndefined();
  });

  it('reads each node\'s cluster and node, whatever order the nodes are read in', () => {
    const recs = ['a', 'b', 'a', 'c', 'b'].map((n, i) => decoded({ ...base, node: `n-${n}`, cluster: `c${i % 2 ? 3 : 2}`, ip: `100.66.1.${i}` }));
    const packed = recs.map((r) => packEndpoint(r, `${r.cluster}/${r.node}`)!);
    for (let round = 0; round < 3; round++)
      for (let i = recs.length - 1; i >= 0; i--) expect(unpackEndpoint(packed[i]!, `${recs[i]!.cluster}/${recs[i]!.node}`)).toStrictEqual(recs[i]);
  });

  it('the table gives back equal records, and keeps a record admitted again from a read packed', () => {
    const s = new EndpointStore();
    const rec = decoded({ ...base, identity: 0x20005 });
    const k = s.forms.acquire(key('c2', 'node-a.example', rec.ip));
    s.candidates.set(k, 'c2', rec);
    s.admitted.set(k, rec);
    const read = s.records.get(k) as EndpointRecord;
    expect(read).toStrictEqual(rec);
    // admission reads the candidate back and admits what it read: still one plain (packed) value, not a Held pair
    const c = s.candidates.get(k)!;
    s.admitted.set(k, c.rec);
    expect(s.records.get(k)).toStrictEqual(rec);
    expect([...s.records.values()]).toStrictEqual([rec]);
    expect(s.admittedSize).toBe(1);
    // a record that says something else replaces it
    const moved = decoded({ ...base, identity: 0x20006 });
    s.candidates.set(k, 'c2', moved);
    s.admitted.set(k, moved);
    expect(s.records.get(k)).toStrictEqual(moved);
    s.admitted.delete(k);
    s.candidates.delete(k);
    expect(s.records.get(k)).toBeUndefined();
    expect(s.admittedSize).toBe(0);
  });

  it('shallowSame: same own keys and values by ===, plain objects only', () => {
    const labels = { a: '1' };
    expect(shallowSame({ x: 1, labels }, { x: 1, labels })).toBe(true);
    expect(shallowSame({ x: 1, labels }, { x: 1, labels: { a: '1' } })).toBe(false); // parts by reference
    expect(shallowSame({ x: 1 }, { x: 1, y: undefined })).toBe(false);
    expect(shallowSame({ x: 1, y: undefined }, { x: 1, z: undefined })).toBe(false);
    expect(shallowSame([1], [1])).toBe(false);
    expect(shallowSame(undefined, undefined)).toBe(true);
    expect(shallowSame({ x: 1 }, undefined)).toBe(false);
  });
});
