// Conntrack entries that other parties start cannot crowd out a pod's own
// flows: flows a remote source opens are charged to that source (its own
// quota, and together at most half the table), never to the pod that
// answers them, and to that pod as their destination (at most a quarter of
// the table: conntrack-inbound.test.ts); a TCP flow is embryonic (short timeout, evictable) until its
// originator's first non-SYN packet after the reply. Attacks as a red-team
// review ran them, at limits 1000 entries / 500 per endpoint.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ipcacheRow } from '../../src/native/rows.js';
import { parseIP } from '../../src/net/ip.js';
import { encodeEntries } from '../../src/policy/compile.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { l4Packet } from '../helpers/packets.js';

const TCP = 6, UDP = 17;
const SYN = 0x02, ACK = 0x10, SYNACK = 0x12;
const HOST = 1, REMOTE_NODE = 6;
const A = 70001, B = 70002, R = 70000; // attackers' identities; a remote service's
const ip = (s: string) => parseIP(s)!;
const attacker = ip('100.64.9.1'), attacker2 = ip('100.64.9.2');
const server = ip('100.64.8.8'); // a remote service the pods call (identity R)
const victim = ip('100.64.3.2'), victim2 = ip('100.64.3.3'), bystander = ip('100.64.3.4'); // endpoints 4, 5, 6
const router = ip('100.64.3.1'); // this node (host firewall)

let d: WireGuardDevice;
const row = (addr: Buffer, identity: number, endpoint: number) => ipcacheRow(addr, 32, identity, endpoint);
const pkt = (proto: number, src: Buffer, dst: Buffer, sport: number, dport: number, tcpFlags = 0) => l4Packet({ v: 4, src, dst, proto, sport, dport, tcpFlags });
const counters = () => d.native.counters() as Record<string, number>;

/**
 * `n` UDP flows from `from` to `to`:53, each delivered one answered by `to` (no spoofing: an ordinary pod and a
 * DNS-like service), and the client's next datagram on each answered flow; returns how many were delivered.
 */
function udpFlood(from: Buffer, identity: number, to: Buffer, n: number): number {
  let delivered = 0;
  for (let i = 0; i < n; i++) {
    if (d.native.policyCheck(pkt(UDP, from, to, 1024 + i, 53), identity) !== 'deliver') continue;
    delivered++;
    expect(d.native.policyCheck(pkt(UDP, to, from, 53, 1024 + i))).toBe('forward');
    d.native.policyCheck(pkt(UDP, from, to, 1024 + i, 53), identity);
  }
  return delivered;
}
/** `n` half-open handshakes: SYN from `from`, SYN-ACK from `to`, then nothing (the sender swallows its RSTs). */
function halfOpen(from: Buffer, identity: number, to: Buffer, n: number, firstPort = 1024): void {
  for (let i = 0; i < n; i++) {
    d.native.policyCheck(pkt(TCP, from, to, firstPort + i, 80, SYN), identity);
    d.native.policyCheck(pkt(TCP, to, from, 80, firstPort + i, SYNACK));
  }
}
/** Whether `pod`'s new outbound TCP flow to the service gets its SYN-ACK (the pod's ingress denies the service). */
function outboundWorks(pod: Buffer, sport: number): boolean {
  if (d.native.policyCheck(pkt(TCP, pod, server, sport, 443, SYN)) !== 'forward') return false;
  return d.native.policyCheck(pkt(TCP, server, pod, 443, sport, SYNACK), R) === 'deliver';
}

beforeEach(() => {
  d = new WireGuardDevice({ createTun: false });
  d.native.enablePolicy();
  d.native.ipcacheUpdate(Buffer.concat([row(attacker, A, 0), row(attacker2, B, 0), row(server, R, 0), row(victim, 70004, 4),
    row(victim2, 70005, 5), row(bystander, 70006, 6), row(router, HOST, 0)]), Buffer.alloc(0));
  // the victims serve UDP/53 and TCP/80 to the attackers' identities; nothing else comes in
  const serve = encodeEntries([A, B].flatMap((identity) => [
    { identity, proto: UDP, deny: false, lo: 53, hi: 53, rule: 1 },
    { identity, proto: TCP, deny: false, lo: 80, hi: 80, rule: 2 },
  ]));
  d.native.setEndpointPolicy(4, 70004, serve, null);
  d.native.setEndpointPolicy(5, 70005, serve, null);
  d.native.setEndpointPolicy(6, 70006, Buffer.alloc(0), null);
  d.native.setConntrackLimits(1000, 500);
});
afterEach(() => d.close());

describe('flows others start are charged to their source, not to the pod that answers', () => {
  it("UDP: a client answered 600 times leaves the victim's own quota free", () => {
    d.native.setConntrackLimits(4000, 500); // the destination's bound (maxEntries / 4) above the source's
    // the source's quota full of answered flows: its later new flows are dropped (passed without an entry, the
    // victim's answer would be a new flow of the victim's own, and the client's next datagram its "reply")
    expect(udpFlood(attacker, A, victim, 600)).toBe(500);
    expect(counters().conntrack_source_full).toBe(100);
    expect(d.native.ctEndpointEntries(4)).toBe(0);
    expect(outboundWorks(victim, 50000)).toBe(true);
    expect(counters().conntrack_quota_full).toBe(0);
    // the answered flows keep passing both ways
    expect(d.native.policyCheck(pkt(UDP, attacker, victim, 1024, 53), A)).toBe('deliver');
    expect(d.native.policyCheck(pkt(UDP, victim, attacker, 53, 1024))).toBe('forward');
  });

  it('two sources flooding one victim leave room in the table for a bystander and in the inbound half for another pod', () => {
    // the victim's share of the inbound half: maxEntries / 4 (before, the two filled the half and every pod's new
    // inbound flows were dropped)
    expect(udpFlood(attacker, A, victim, 600)).toBe(250);
    expect(udpFlood(attacker2, B, victim, 600)).toBe(0);
    expect(counters().conntrack_destination_full).toBe(950);
    expect(counters().conntrack_entries).toBe(250);
    expect(udpFlood(attacker2, B, victim2, 10)).toBe(10);
    expect(counters().conntrack_inbound_full).toBe(0);
    expect(outboundWorks(bystander, 50001)).toBe(true);
    expect(outboundWorks(victim, 50002)).toBe(true);
    expect(counters().conntrack_table_full).toBe(0);
  });

  it("TCP: half-open handshakes stay evictable; the victim's outbound flows keep their entries", () => {
    halfOpen(attacker, A, victim, 600);
    expect(outboundWorks(victim, 50003)).toBe(true);
    // the source's quota made room by evicting its own half-open entries, not by refusing
    expect(counters().conntrack_source_full).toBe(0);
    expect(counters().conntrack_evicted).toBeGreaterThan(0);
  });

  it('a completed handshake (the originator ACKs the SYN-ACK) is no longer evictable', () => {
    halfOpen(attacker, A, victim, 1, 40000);
    expect(d.native.policyCheck(pkt(TCP, attacker, victim, 40000, 80, ACK), A)).toBe('deliver');
    halfOpen(attacker, A, victim, 600);
    // the established flow survived the sweeps: the victim's data still passes its egress as a reply
    expect(d.native.policyCheck(pkt(TCP, victim, attacker, 80, 40000, ACK))).toBe('forward');
    expect(d.native.policyCheck(pkt(TCP, attacker, victim, 40000, 80, ACK), A)).toBe('deliver');
    const before = counters().conntrack_evicted;
    halfOpen(attacker, A, victim, 600, 3000);
    expect(counters().conntrack_evicted).toBeGreaterThan(before);
  });

  it('IPv6: a source is its /64 (one host holds a whole /64): 600 addresses of one /64 share one quota', () => {
    d.native.setConntrackLimits(4000, 500);
    const victim6 = ip('fd64:3::2'), net = 'fd64:9::';
    d.native.ipcacheUpdate(Buffer.concat([ipcacheRow(ip(net), 64, A, 0), ipcacheRow(victim6, 128, 70004, 4)]), Buffer.alloc(0));
    let delivered = 0;
    for (let i = 0; i < 600; i++) {
      const src = ip(`${net}${(i + 1).toString(16)}`);
      if (d.native.policyCheck(l4Packet({ v: 6, src, dst: victim6, proto: UDP, sport: 5353, dport: 53 }), A) !== 'deliver') continue;
      delivered++;
      d.native.policyCheck(l4Packet({ v: 6, src: victim6, dst: src, proto: UDP, sport: 53, dport: 5353 }));
    }
    expect(delivered).toBe(500);
    expect(counters().conntrack_source_full).toBe(100);
    expect(d.native.ctEndpointEntries(4)).toBe(0);
  });

  it("host: a remote node's half-open SYNs to the router address do not cost the gateway its own flow", () => {
    d.native.setHostFirewall(true);
    halfOpen(ip('198.18.0.2'), REMOTE_NODE, router, 600);
    expect(d.native.policyCheck(pkt(TCP, router, server, 50004, 7000, SYN))).toBe('forward');
    expect(d.native.policyCheck(pkt(TCP, server, router, 7000, 50004, SYNACK), R)).toBe('deliver');
  });
});
