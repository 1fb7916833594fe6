/**
 * Red team s15, a node with its own WireGuard credentials (a compromised node of a connected cluster, or of ours).
 * It tags its packets `host` (which the receiver reads as `remote-node`, docs/wire-format.md) from its own node
 * address or pod CIDRs (its allowed IPs), to destinations that are neither a pod nor this node: the world, a host
 * of our underlay (our etcd, another cluster's host), the node's metadata service, a service VIP, another mesh
 * node's address. The host firewall (docs/architecture.md) is there for "packets to this node"; the mesh has no
 * use for a peer's packets that are for neither a pod nor this node: hosts' own traffic to each other is not routed
 * into the TUN, pods' traffic to another node's address goes to that node's tunnel, relays carry pod traffic (a
 * cluster identity's destination). Before s15 the host endpoint's check allowed `remote-node` to anything not a
 * pod, so the node was delivered to the kernel, which forwarded it (pods need ip_forward): every connected
 * node could use this node as a router into its underlay, from inside (two-way for a pod-sourced packet, whose
 * reply to the pod CIDR is routed back into the tunnel). Oracle: RFC 1812 §5.3.8's source address validation
 * stance (a router forwards only what the interface it came from may source, here: what the peer is trusted
 * for) and the host firewall's own statement (only other nodes themselves may reach this node).
 * The native engine itself, driven through policyCheck (no root).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ipcacheRow } from '../../src/native/rows.js';
import { parseIP } from '../../src/net/ip.js';
import { DROP_REASONS } from '../../src/policy/flows.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { l4Packet } from '../helpers/packets.js';

const HOST = 1, WORLD = 2, REMOTE_NODE = 6;
const SYN = 0x02, SYNACK = 0x12;
const ip = (s: string) => parseIP(s)!;
const nodeAddr = ip('198.18.0.1'); // ours: host
const router = ip('100.65.1.1'); // ours: host
const otherNode = ip('198.18.0.3'); // another mesh node: remote-node
const attackerNode = ip('198.19.0.2'); // the compromised node's own address (in its allowed IPs)
const attackerPod = ip('100.66.1.10'); // in its pod CIDR (in its allowed IPs)
const cidrIdentity = 16_777_217; // a CIDR identity a rule names (2^24 + 1)
const ruleCidrHost = ip('198.18.200.7');

let d: WireGuardDevice;
const syn = (src: Buffer, dst: Buffer, sport: number, dport: number, flags = SYN) => l4Packet({ v: 4, src, dst, proto: 6, sport, dport, tcpFlags: flags });

beforeEach(() => {
  d = new WireGuardDevice({ createTun: false });
  d.native.enablePolicy();
  d.native.ipcacheUpdate(
    Buffer.concat([
      ipcacheRow(nodeAddr, 32, HOST, 0),
      ipcacheRow(router, 32, HOST, 0),
      ipcacheRow(otherNode, 32, REMOTE_NODE, 0),
      ipcacheRow(attackerNode, 32, REMOTE_NODE, 0),
      ipcacheRow(attackerPod, 32, 131_072 + 300, 0),
      ipcacheRow(ip('198.18.200.0'), 24, cidrIdentity, 0),
    ]),
    Buffer.alloc(0),
  );
  d.native.setHostFirewall(true);
});
afterEach(() => d.close());

describe('red team s15: a connected node routing through this node', () => {
  it('is refused to destinations that are neither a pod nor this node, whatever it tags', () => {
    const targets: Array<[string, Buffer, number]> = [
      ['the world', ip('8.8.8.8'), 53],
      ['a host of our underlay (etcd)', ip('198.18.0.50'), 2379],
      ['the metadata service', ip('169.254.169.254'), 80],
      ['a service VIP', ip('100.127.1.10'), 80],
      ['another mesh node', otherNode, 10250],
      ['a CIDR a rule names', ruleCidrHost, 443],
    ];
    let port = 41000;
    for (const [what, dst, dport] of targets)
      for (const src of [attackerNode, attackerPod])
        for (const tag of [REMOTE_NODE, WORLD])
          expect([what, src.join('.'), tag, d.native.policyCheck(syn(src, dst, port++, dport), tag)]).toEqual([what, src.join('.'), tag, 'drop']);
    const flows = d.native.drainFlows().records;
    expect(flows.length / 72).toBe(targets.length * 4);
    // Its own reason (flows.h: reason byte at offset 9), not a policy's default deny: no policy was consulted.
    for (let off = 0; off < flows.length; off += 72) expect(DROP_REASONS[flows[off + 9]!]).toBe('transit-denied');
    expect((d.native.counters() as Record<string, number>).drop_transit).toBe(targets.length * 4);
  });

  it('still reaches this node itself (remote-node), and the node still gets its own flows’ replies', () => {
    expect(d.native.policyCheck(syn(attackerNode, nodeAddr, 42000, 22), REMOTE_NODE)).toBe('deliver');
    expect(d.native.policyCheck(syn(attackerNode, router, 42001, 15001), REMOTE_NODE)).toBe('deliver');
    expect(d.native.policyCheck(syn(attackerPod, router, 42002, 15001), 131_072 + 300)).toBe('drop');
    expect(d.native.policyCheck(syn(router, attackerPod, 50000, 7000))).toBe('forward');
    expect(d.native.policyCheck(syn(attackerPod, router, 7000, 50000, SYNACK), 131_072 + 300)).toBe('deliver');
  });

  it('with the host firewall off, packets to this node are delivered (the operator chose it), transit still is not', () => {
    d.native.setHostFirewall(false);
    expect(d.native.policyCheck(syn(attackerNode, nodeAddr, 43000, 22), REMOTE_NODE)).toBe('deliver');
    expect(d.native.policyCheck(syn(attackerPod, router, 43001, 15001), 131_072 + 300)).toBe('deliver');
    for (const dst of [ip('8.8.8.8'), otherNode, ruleCidrHost])
      for (const tag of [REMOTE_NODE, WORLD]) expect(d.native.policyCheck(syn(attackerNode, dst, 43002, 53), tag)).toBe('drop');
  });
});
