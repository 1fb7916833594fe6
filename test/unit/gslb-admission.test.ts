// gateway-dns's admission of gateway records (src/gateway/gslb.ts): a gateway is used only at an address of
// its own node that names a host of its own, as docs/security.md says.
import { describe, expect, it } from 'vitest';
import { GatewayDns, parseGatewayDnsConfig } from '../../src/gateway/gslb.js';
import type { GatewayRecord, NodeRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';

const cfg = parseGatewayDnsConfig('etcd: { endpoints: ["http://198.18.1.2:2379"] }\nlisten: { address: 198.18.0.53 }\nnames: { web.example.com: shop/web }\n');
const nodeKey = (n: string) => `wiremesh/state/nodes/v1/c1/${n}`;
const gwKey = (n: string) => `wiremesh/state/gateways/v1/c1/${n}`;
const node = (name: string, addresses: string[], i: number): NodeRecord => ({ cluster: 'c1', clusterId: 1, name, addresses, port: 51820, publicKey: Buffer.alloc(32, i).toString('base64'), podCIDRs: [`100.65.${i}.0/24`], bootId: '1' });
const gw = (name: string, address: string): GatewayRecord => ({ cluster: 'c1', node: name, address, listeners: [{ service: 'shop/web', port: 80, listenPort: 8080 }] });

function setup() {
  const dns = new GatewayDns(cfg, silentLogger);
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
});
