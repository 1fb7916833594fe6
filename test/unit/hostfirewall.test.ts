// Host firewall in the native engine: what peers send to this node (its
// router address) or to no pod at all passes only from other nodes
// themselves or as replies of the node's own flows; relayed pod traffic and
// local pods' ingress are untouched. Driven through policyCheck.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ipcacheRow } from '../../src/native/rows.js';
import { parseIP } from '../../src/net/ip.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { l4Packet } from '../helpers/packets.js';

const HOST = 1, REMOTE_NODE = 6;
const SYN = 0x02, SYNACK = 0x12;
const ip = (s: string) => parseIP(s)!;
const router = ip('100.65.1.1'); // ours: host
const localPod = ip('100.65.1.10'); // endpoint 3, no policy
const remotePod = ip('100.65.2.10'); // identity 70000, on another node
const farPod = ip('100.66.3.10'); // identity 70005 of another cluster: relayed through us
const unused = ip('100.65.1.77'); // in our pod CIDR, no pod

let d: WireGuardDevice;
function row(addr: Buffer, identity: number, endpoint: number): Buffer {
  return ipcacheRow(addr, 32, identity, endpoint);
}
const syn = (src: Buffer, dst: Buffer, sport: number, dport: number, flags = SYN) => l4Packet({ v: 4, src, dst, proto: 6, sport, dport, tcpFlags: flags });

beforeEach(() => {
  d = new WireGuardDevice({ createTun: false });
  d.native.enablePolicy();
  d.native.ipcacheUpdate(Buffer.concat([row(router, HOST, 0), row(localPod, 70003, 3), row(remotePod, 70000, 0), row(farPod, 70005, 0)]), Buffer.alloc(0));
  d.native.setEndpointPolicy(3, 70003, null, null);
  d.native.setHostFirewall(true);
});
afterEach(() => d.close());

describe('host firewall', () => {
  it("a remote pod reaches neither this node's listeners (router address) nor unused pod addresses; other nodes do", () => {
    expect(d.native.policyCheck(syn(remotePod, router, 40000, 15001), 70000)).toBe('drop');
    expect(d.native.policyCheck(syn(remotePod, unused, 40001, 22), 70000)).toBe('drop');
    expect(d.native.policyCheck(syn(remotePod, ip('8.8.8.8'), 40002, 53), 70000)).toBe('drop');
    expect(d.native.policyCheck(syn(ip('198.18.0.2'), router, 40003, 22), REMOTE_NODE)).toBe('deliver');
    const flows = d.native.drainFlows().records;
    expect(flows.length / 72).toBeGreaterThanOrEqual(3);
    expect(flows.readUInt32LE(24)).toBe(HOST); // destination identity of the first drop: this node
  });

  it('pods keep their own checks, relayed traffic passes', () => {
    expect(d.native.policyCheck(syn(remotePod, localPod, 40010, 80), 70000)).toBe('deliver');
    expect(d.native.policyCheck(syn(remotePod, farPod, 40011, 80), 70000)).toBe('deliver');
  });

  it("the node's own flows (the gateway, from the router address) get their replies", () => {
    expect(d.native.policyCheck(syn(router, remotePod, 50000, 7000))).toBe('forward');
    expect(d.native.policyCheck(syn(remotePod, router, 7000, 50000, SYNACK), 70000)).toBe('deliver');
    expect(d.native.ctEndpointEntries(0)).toBe(1);
  });

  it('off: everything is delivered as before', () => {
    d.native.setHostFirewall(false);
    expect(d.native.policyCheck(syn(remotePod, router, 40020, 15001), 70000)).toBe('deliver');
  });
});
