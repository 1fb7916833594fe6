// Global service semantics (src/services/service.ts), the DNS answers
// (src/services/dns.ts) and the service fields of manifests and node.yaml.
import { describe, expect, it } from 'vitest';
import type { EndpointRecord } from '../../src/controlplane/types.js';
import { parseAgentConfig } from '../../src/agent/config.js';
import { parseManifests } from '../../src/manifests/validate.js';
import { answer } from '../../src/services/dns.js';
import { parseServiceRecord, selectBackends, servicePorts, type Backend, type ClusterService } from '../../src/services/service.js';

function svc(cluster: string, extra: Partial<ClusterService> = {}): ClusterService {
  return { cluster, namespace: 'shop', name: 'web', vip: `100.127.${cluster.slice(1)}.1`, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: 'web' }, global: true, shared: true, affinity: 'none', weight: 1, ...extra };
}
function ep(cluster: string, name: string, ip: string, labels = { app: 'web' }, namespace = 'shop'): EndpointRecord {
  return { ip, cluster, node: 'n1', namespace, name, labels };
}
const b = (cluster: string, ip: string): Backend => ({ cluster, node: 'n1', pod: `shop/${ip}`, ip, port: 8080, weight: 1 });

describe('service backends', () => {
  const eps = [ep('c1', 'a', '100.65.1.10'), ep('c2', 'b', '100.66.1.10'), ep('c3', 'c', '100.67.1.10'), ep('c2', 'x', '100.66.1.11', { app: 'other' }), ep('c2', 'y', '100.66.1.12', { app: 'web' }, 'vault'), ep('c1', 'a6', 'fd00::10')];

  it('a global service takes local endpoints and those of clusters that share it (same namespace, selector, address family)', () => {
    const [p] = servicePorts('c1', [svc('c1'), svc('c2'), svc('c3')], eps);
    expect(p!.backends.map((x) => x.ip)).toEqual(['100.65.1.10', '100.66.1.10', '100.67.1.10']);
    expect(p!.backends.every((x) => x.port === 8080)).toBe(true);
  });

  it('shared: false keeps a cluster\'s backends at home; a non-global local service sees only local ones', () => {
    expect(servicePorts('c1', [svc('c1'), svc('c2', { shared: false }), svc('c3')], eps)[0]!.backends.map((x) => x.cluster)).toEqual(['c1', 'c3']);
    expect(servicePorts('c2', [svc('c1'), svc('c2', { shared: false }), svc('c3')], eps)[0]!.backends.map((x) => x.cluster)).toEqual(['c1', 'c2', 'c3']);
    expect(servicePorts('c1', [svc('c1', { global: false, shared: false }), svc('c2')], eps)[0]!.backends.map((x) => x.cluster)).toEqual(['c1']);
    expect(servicePorts('c1', [svc('c2')], eps)).toEqual([]); // not defined here: nothing to translate
  });

  it('remote ports match by name and use that cluster\'s targetPort and weight', () => {
    const c2 = svc('c2', { ports: [{ name: 'http', port: 80, targetPort: 9090, protocol: 'TCP' }], weight: 3 });
    const [p] = servicePorts('c1', [svc('c1'), c2], eps);
    expect(p!.backends.find((x) => x.cluster === 'c2')).toMatchObject({ port: 9090, weight: 3 });
  });

  it('affinity local / remote prefer their tier while it has a healthy backend and fall back otherwise', () => {
    const all = [b('c1', '1'), b('c2', '2'), b('c3', '3')];
    expect(selectBackends('c1', 'local', all, new Map()).selected.map((x) => x.cluster)).toEqual(['c1']);
    expect(selectBackends('c1', 'local', all, new Map()).standby.map((x) => x.cluster)).toEqual(['c2', 'c3']);
    expect(selectBackends('c1', 'local', all.slice(1), new Map()).selected.map((x) => x.cluster)).toEqual(['c2', 'c3']);
    expect(selectBackends('c1', 'remote', all, new Map()).selected.map((x) => x.cluster)).toEqual(['c2', 'c3']);
    expect(selectBackends('c1', 'remote', all.slice(0, 1), new Map()).selected.map((x) => x.cluster)).toEqual(['c1']);
    expect(selectBackends('c1', 'none', all, new Map()).selected).toHaveLength(3);
  });

  it('affinity nearest picks the lowest RTT and does not flap on small differences', () => {
    const all = [b('c2', '2'), b('c3', '3')];
    const rtt = new Map([['c2', 5], ['c3', 1]]);
    expect(selectBackends('c1', 'nearest', all, rtt).nearest).toBe('c3');
    expect(selectBackends('c1', 'nearest', all, new Map([['c2', 1.1], ['c3', 1]]), 'c2').nearest).toBe('c2'); // keeps its choice
    expect(selectBackends('c1', 'nearest', all, rtt, 'c2').nearest).toBe('c3'); // clearly better: moves
    expect(selectBackends('c1', 'nearest', [b('c2', '2')], rtt, 'c3').nearest).toBe('c2'); // previous choice has no healthy backend
    expect(selectBackends('c1', 'nearest', [], rtt).selected).toEqual([]);
  });
});

describe('service DNS', () => {
  const defs = new Map([['shop/web', svc('c1')], ['shop/plain', svc('c1', { name: 'plain', global: false, vip: '100.127.1.2' })], ['shop/v6', svc('c1', { name: 'v6', vip: 'fd00:127::1' })]]);
  const dir = { lookup: (ns: string, name: string) => defs.get(`${ns}/${name}`) };

  it('answers A for cluster.local and clusterset.local (global only), AAAA for IPv6 VIPs', () => {
    expect(answer(dir, { type: 'A', name: 'web.shop.svc.clusterset.local' }).answers).toEqual([{ type: 'A', name: 'web.shop.svc.clusterset.local', ttl: 5, data: '100.127.1.1' }]);
    expect(answer(dir, { type: 'A', name: 'plain.shop.svc.cluster.local' }).answers[0]).toMatchObject({ data: '100.127.1.2' });
    expect(answer(dir, { type: 'A', name: 'plain.shop.svc.clusterset.local' }).rcode).toBe(3);
    expect(answer(dir, { type: 'AAAA', name: 'v6.shop.svc.cluster.local' }).answers[0]).toMatchObject({ type: 'AAAA', data: 'fd00:127::1' });
    const nodata = answer(dir, { type: 'AAAA', name: 'web.shop.svc.cluster.local' });
    expect(nodata).toMatchObject({ rcode: 0, answers: [] });
    expect(nodata.authorities[0]).toMatchObject({ type: 'SOA' });
  });

  it('answers SRV per port, NXDOMAIN with SOA for unknown names, REFUSED outside its zones', () => {
    const srv = answer(dir, { type: 'SRV', name: '_http._tcp.web.shop.svc.cluster.local' });
    expect(srv.answers).toEqual([{ type: 'SRV', name: '_http._tcp.web.shop.svc.cluster.local', ttl: 5, data: { priority: 0, weight: 100, port: 80, target: 'web.shop.svc.cluster.local' } }]);
    expect(srv.additionals[0]).toMatchObject({ type: 'A', data: '100.127.1.1' });
    expect(answer(dir, { type: 'SRV', name: '_dns._udp.web.shop.svc.cluster.local' }).rcode).toBe(3);
    expect(answer(dir, { type: 'A', name: 'nope.shop.svc.cluster.local' })).toMatchObject({ rcode: 3, authorities: [{ type: 'SOA' }] });
    expect(answer(dir, { type: 'A', name: 'a.b.c.shop.svc.cluster.local' }).rcode).toBe(3);
    expect(answer(dir, { type: 'A', name: 'example.com' }).rcode).toBe(5);
    expect(answer(dir, { type: 'A', name: 'WEB.Shop.svc.cluster.local.' }).answers[0]).toMatchObject({ data: '100.127.1.1' });
  });
});

describe('service configuration', () => {
  const manifest = (spec: string, ann = '') => `apiVersion: v1\nkind: Service\nmetadata: { name: web, namespace: shop${ann ? `, annotations: { ${ann} }` : ''} }\nspec: ${spec}\n`;

  it('rejects bad ports, protocols, weights and affinities naming the field', () => {
    const bad: Array<[string, string, RegExp]> = [
      ['{ ports: [{ port: 80, protocol: SCTP }] }', '', /spec\.ports\[0\]\.protocol: must be TCP or UDP/],
      ['{ ports: [{ port: 80, targetPort: http }] }', '', /targetPort: named target ports are not supported/],
      ['{ ports: [{ port: 80 }] }', '"wiremesh.io/weight": "0"', /wiremesh\.io\/weight.*1\.\.1000/],
      ['{ ports: [{ port: 80 }] }', '"service.cilium.io/affinity": "closest"', /affinity.*must be one of local, remote, none, nearest/],
    ];
    for (const [spec, ann, re] of bad) expect(() => parseManifests(manifest(spec, ann), 'f.yaml')).toThrow(re);
  });

  it('parses a stored service with its annotations', () => {
    const m = parseManifests(manifest('{ clusterIP: 100.127.1.7, selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }', '"service.cilium.io/global": "true", "service.cilium.io/shared": "false", "service.cilium.io/affinity": "Nearest", "wiremesh.io/weight": "4"'), 'f.yaml')[0]!;
    expect(parseServiceRecord('c1', JSON.stringify(m))).toEqual({ cluster: 'c1', namespace: 'shop', name: 'web', vip: '100.127.1.7', ports: [{ name: '', port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: 'web' }, global: true, shared: false, affinity: 'nearest', weight: 4 });
    expect(() => parseServiceRecord('c1', '{"kind":"Service"')).toThrow(/service: not valid JSON/);
  });

  it('node.yaml: the Maglev table size must be prime, DNS fields are checked', () => {
    const base = 'cluster: { name: c1, id: 1 }\nnode: { name: n1, addresses: [198.18.1.10], podCIDRs: [100.65.1.0/24] }\netcd: { endpoints: ["http://198.18.1.2:2379"] }\n';
    expect(parseAgentConfig(base).services).toEqual({ maglevTableSize: 16381, maxBackendsPerCluster: 4095, dns: { enabled: true, address: '169.254.1.1', port: 53 } });
    expect(parseAgentConfig(`${base}services: { maglevTableSize: 65521 }\n`).services.maglevTableSize).toBe(65521);
    expect(() => parseAgentConfig(`${base}services: { maglevTableSize: 16384 }\n`)).toThrow(/services\.maglevTableSize: 16384 is not prime/);
    expect(() => parseAgentConfig(`${base}services: { dns: { address: nope } }\n`)).toThrow(/services\.dns\.address/);
    expect(() => parseAgentConfig(`${base}services: { lb: 1 }\n`)).toThrow(/services\.lb: unknown field/);
  });
});
