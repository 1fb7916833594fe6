// gateway-dns's admission of gateway records (src/gateway/gslb.ts): a gateway is used only at an address of
// its own node that names a host of its own, as docs/security.md says.
import { describe, expect, it, vi } from 'vitest';
import { GatewayDns, parseGatewayDnsConfig } from '../../src/gateway/gslb.js';
import { Trust, type GatewayRecord, type NodeRecord, type PinnedCluster } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';

const cfg = parseGatewayDnsConfig('etcd: { endpoints: ["http://198.18.1.2:2379"] }\nlisten: { address: 198.18.0.53 }\nnames: { web.example.com: shop/web }\n');
const nodeKey = (n: string) => `wiremesh/state/nodes/v1/c1/${n}`;
const gwKey = (n: string) => `wiremesh/state/gateways/v1/c1/${n}`;
const node = (name: string, addresses: string[], i: number): NodeRecord => ({ cluster: 'c1', clusterId: 1, name, addresses, port: 51820, publicKey: Buffer.alloc(32, i).toString('base64'), podCIDRs: [`100.65.${i}.0/24`], bootId: '1' });
const gw = (name: string, address: string): GatewayRecord => ({ cluster: 'c1', node: name, address, listeners: [{ service: 'shop/web', port: 80, listenPort: 8080 }] });

function setup() {
  const dns = new GatewayDns(cfg, silentLogger);
  // this etcd's cluster-config and one remote pinned at connect (gateway-dns reads both: nodepins.ts)
  dns.pins.setConfig({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs: ['198.18.1.0/24'] });
  dns.pins.setPin('c2', { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
  dns.recheckPins();
  const internals = dns as unknown as { probeAll(): void; gateways: Map<string, unknown> };
  internals.probeAll = () => undefined; // no probes: what is admitted is read directly
  return { dns, admitted: () => [...internals.gateways.keys()], reasons: () => dns.rejections.recent.map((e) => `${e.key} ${e.reason}`) };
}

describe('gateway-dns admission', () => {
  it('regression: a node naming an address that is no host of its own (loopback, link-local) is refused, and its gateway with it', () => {
    // A compromised node of gateway-dns's own cluster published a gateway at 127.0.0.1 or 169.254.169.254:
    // gateway-dns probed it on its own host (healthy) and handed that address to outside clients.
    const { dns, admitted, reasons } = setup();
    const bad = ['127.0.0.1', '169.254.169.254', '::1', 'fe80::1'];
    bad.forEach((addr, i) => {
      dns.nodeChanged(nodeKey(`b${i}`), node(`b${i}`, [addr], i + 1));
      dns.gatewayChanged(gwKey(`b${i}`), gw(`b${i}`, addr));
    });
    expect(admitted()).toEqual([]);
    expect(reasons()).toEqual(bad.map((_, i) => `${nodeKey(`b${i}`)} claim`));
    // a node's good record admits its gateway; a new record naming such an address withdraws it
    dns.nodeChanged(nodeKey('ok'), node('ok', ['198.18.1.10'], 9));
    dns.gatewayChanged(gwKey('ok'), gw('ok', '198.18.1.10'));
    expect(admitted()).toEqual([gwKey('ok')]);
    dns.nodeChanged(nodeKey('ok'), node('ok', ['198.18.1.10', '169.254.169.254'], 9));
    expect(admitted()).toEqual([]);
    expect(dns.rejections.recent.at(-1)?.detail).toMatch(/169\.254\.169\.254 is link-local/);
  });

  it("a node naming an address outside its cluster's pinned underlay CIDRs is refused, its gateway with it (a resolver, another cluster's node)", () => {
    // A hostile remote published a node at 8.8.8.8 (or at one of our nodes' addresses) with a gateway there:
    // gateway-dns would probe that host and hand its address to outside clients as the service's entry point.
    const { dns, admitted, reasons } = setup();
    const remote = (name: string, addresses: string[], i: number): NodeRecord => ({ ...node(name, addresses, i), cluster: 'c2', clusterId: 2, podCIDRs: [`100.66.${i}.0/24`] });
    const rkey = (n: string) => `wiremesh/cache/nodes/v1/c2/${n}`;
    const rgw = (n: string) => `wiremesh/cache/gateways/v1/c2/${n}`;
    for (const [i, addr] of ['8.8.8.8', '198.18.1.77', '64:ff9b::808:808'].entries()) {
      dns.nodeChanged(rkey(`e${i}`), remote(`e${i}`, [addr], i + 1));
      dns.gatewayChanged(rgw(`e${i}`), { ...gw(`e${i}`, addr), cluster: 'c2' });
    }
    expect(admitted()).toEqual([]);
    expect(reasons()).toEqual([0, 1, 2].map((i) => `${rkey(`e${i}`)} claim`));
    expect(dns.rejections.recent[0]?.detail).toMatch(/8\.8\.8\.8 is outside c2's pinned underlay CIDRs/);
    dns.nodeChanged(rkey('ok'), remote('ok', ['198.18.2.10'], 9));
    dns.gatewayChanged(rgw('ok'), { ...gw('ok', '198.18.2.10'), cluster: 'c2' });
    expect(admitted()).toEqual([rgw('ok')]);
    // unpinned (disconnected): its nodes are refused and the gateway goes
    dns.pins.setPin('c2', undefined);
    dns.recheckPins();
    expect(admitted()).toEqual([]);
  });

  it('before the cluster-config is read, nodes wait (neither used nor refused)', () => {
    const dns = new GatewayDns(cfg, silentLogger);
    (dns as unknown as { probeAll(): void }).probeAll = () => undefined;
    dns.nodeChanged(nodeKey('n1'), node('n1', ['198.18.1.10'], 1));
    dns.gatewayChanged(gwKey('n1'), gw('n1', '198.18.1.10'));
    expect([dns.targets('shop/web').length, dns.rejections.total]).toEqual([0, 0]);
    dns.pins.setConfig({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs: ['198.18.1.0/24'] });
    dns.recheckPins();
    expect((dns as unknown as { gateways: Map<string, unknown> }).gateways.size).toBe(1);
  });

  it('regression: a pin/config event re-checks only the records it can have turned, once per tick (counted Trust.node calls)', async () => {
    // Every pin event used to re-run Trust.node on every node record, synchronously: 255 pins over 25,500 nodes
    // blocked the loop for seconds per event and DNS stopped answering.
    const dns = new GatewayDns(cfg, silentLogger);
    (dns as unknown as { probeAll(): void }).probeAll = () => undefined;
    const tick = () => new Promise((r) => setImmediate(r));
    const pinOf = (id: number, underlay = `198.18.${id}.0/24`): PinnedCluster => ({ name: `c${id}`, id, podCIDRs: [`100.${64 + id}.0.0/16`], underlayCIDRs: [underlay], relay: false, acceptPolicies: false });
    dns.pins.setConfig({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs: ['198.18.1.0/24'] });
    for (let id = 2; id <= 9; id++) dns.pins.setPin(`c${id}`, pinOf(id));
    dns.pinsChanged();
    await tick();
    const PER = 10;
    for (let id = 2; id <= 9; id++)
      for (let n = 0; n < PER; n++)
        dns.nodeChanged(`wiremesh/cache/nodes/v1/c${id}/n${n}`, { ...node(`n${n}`, [`198.18.${id}.${10 + n}`], n + 1), cluster: `c${id}`, clusterId: id, podCIDRs: [`100.${64 + id}.${n}.0/24`] });
    expect(dns.rejections.total).toBe(0);
    const calls = vi.spyOn(Trust.prototype, 'node');
    try {
      // a burst: three pins re-published (one with new relay settings only), one removed, within one tick
      for (const id of [2, 3, 4]) (dns.pins.setPin(`c${id}`, { ...pinOf(id), relay: id === 4 }), dns.pinsChanged());
      dns.pins.setPin('c5', undefined);
      dns.pinsChanged();
      expect(calls).toHaveBeenCalledTimes(0); // nothing yet: one pass per tick
      await tick();
      expect(calls).toHaveBeenCalledTimes(PER); // only c5's records: the others' facts are unchanged
      expect(dns.rejections.total).toBe(PER);
      calls.mockClear();
      // c10 pinned over part of c6's underlay: c10 has no records; c6's records with an address in it are re-checked and refused
      dns.pins.setPin('c10', pinOf(10, '198.18.6.8/29'));
      dns.pinsChanged();
      await tick();
      expect(calls).toHaveBeenCalledTimes(6); // c6/n0..n5 at 198.18.6.10-15, inside 198.18.6.8/29
      expect(dns.rejections.total).toBe(PER + 6);
      expect(dns.rejections.recent.at(-1)?.detail).toMatch(/lies in c10's underlay CIDRs/);
    } finally {
      calls.mockRestore();
    }
  });
});
