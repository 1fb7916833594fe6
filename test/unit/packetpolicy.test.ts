// The native policy engine on crafted packets: the verdict must not depend on
// how the packet hides its upper-layer header (IPv4 options, IPv6 extension
// headers, fragments). Driven through policyCheck on a TUN-less device.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIP } from '../../src/net/ip.js';
import { encodeEntries } from '../../src/policy/compile.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { icmpPacket, l4Packet, type ExtHeader, type L4PacketOptions } from '../helpers/packets.js';
import { ipcacheRow } from '../../src/native/rows.js';

const TCP = 6;
const UDP = 17;
const SYN = 0x02;
const X = 70000; // the remote identity the rules name
const ip = (s: string) => parseIP(s)!;

// endpoint 1 (100.64.2.2, fd64::2): allow all from X, deny TCP/22 from X
// endpoint 2 (100.64.2.3, fd64::3): allow TCP/80 from X only
const DST = { 1: { 4: ip('100.64.2.2'), 6: ip('fd64::2') }, 2: { 4: ip('100.64.2.3'), 6: ip('fd64::3') } };
const SRC = { 4: ip('100.64.1.1'), 6: ip('fd64::1') };
const ATTACKER = { 4: ip('100.64.1.7'), 6: ip('fd64::7') }; // a pod of identity 70009
const ROUTER = { 4: ip('198.18.0.1'), 6: ip('2001:db8::1') }; // not in the ipcache: world

let d: WireGuardDevice;
let sport = 20000; // a fresh source port per packet: no conntrack hit between cases

function row(addr: Buffer, identity: number, endpoint: number): Buffer {
  return ipcacheRow(addr, addr.length * 8, identity, endpoint);
}

/** RX verdict of a packet from X to endpoint `ep`. */
function verdict(ep: 1 | 2, o: Partial<L4PacketOptions> & { v: 4 | 6; proto: number }): string {
  const pkt = l4Packet({ src: SRC[o.v], dst: DST[ep][o.v], sport: sport++, ...o });
  return d.native.policyCheck(pkt, X);
}

const counters = () => d.native.counters() as Record<string, number>;
const lastReason = () => {
  const r = d.native.drainFlows().records;
  return r.length ? r[r.length - 72 + 9] : -1; // FlowRecord: verdict at 8, reason at 9
};

beforeAll(() => {
  d = new WireGuardDevice({ createTun: false });
  d.native.enablePolicy();
  d.native.ipcacheUpdate(Buffer.concat([row(SRC[4], X, 0), row(SRC[6], X, 0), row(ATTACKER[4], 70009, 0), row(ATTACKER[6], 70009, 0), row(DST[1][4], 70001, 1), row(DST[1][6], 70001, 1), row(DST[2][4], 70002, 2), row(DST[2][6], 70002, 2)]), Buffer.alloc(0));
  d.native.setEndpointPolicy(1, 70001, encodeEntries([
    { identity: X, proto: TCP, deny: true, lo: 22, hi: 22, rule: 1 },
    { identity: X, proto: 0, deny: false, lo: 0, hi: 65535, rule: 2 },
  ]), null);
  d.native.setEndpointPolicy(2, 70002, encodeEntries([{ identity: X, proto: TCP, deny: false, lo: 80, hi: 80, rule: 3 }]), null);
});
afterAll(() => d.close());

describe('allow all from X, deny TCP/22: a SYN is judged the same however it is wrapped', () => {
  const wraps: [string, ExtHeader[]][] = [
    ['destination options', [{ type: 60 }]],
    ['hop-by-hop (2 units)', [{ type: 0, units: 2 }]],
    ['fragment header, offset 0, more fragments', [{ type: 44, more: true }]],
    ['atomic fragment (offset 0, last)', [{ type: 44 }]],
    ['authentication header', [{ type: 51, units: 3 }]],
    ['hop-by-hop, routing, fragment, destination options', [{ type: 0 }, { type: 43, units: 1 }, { type: 44 }, { type: 60 }]],
    ['eight headers (the most walked)', Array.from({ length: 8 }, () => ({ type: 60 }))],
  ];
  it('plain IPv4 and IPv6 SYNs: 22 denied, 80 delivered', () => {
    for (const v of [4, 6] as const) {
      expect(verdict(1, { v, proto: TCP, dport: 22 })).toBe('drop');
      expect(lastReason()).toBe(1);
      expect(verdict(1, { v, proto: TCP, dport: 80 })).toBe('deliver');
    }
  });
  for (const [name, ext] of wraps) {
    it(`IPv6 behind ${name}`, () => {
      const before = counters().drop_policy_denied!;
      expect(verdict(1, { v: 6, proto: TCP, dport: 22, ext })).toBe('drop');
      expect(counters().drop_policy_denied).toBe(before + 1);
      expect(lastReason()).toBe(1);
      expect(verdict(1, { v: 6, proto: TCP, dport: 80, ext })).toBe('deliver');
    });
  }
  it('IPv4 with options (IHL 6 and 15)', () => {
    for (const opt of [4, 40]) {
      expect(verdict(1, { v: 4, proto: TCP, dport: 22, ipv4Options: opt })).toBe('drop');
      expect(verdict(1, { v: 4, proto: TCP, dport: 80, ipv4Options: opt })).toBe('deliver');
    }
  });
  it('IPv4 first fragment (offset 0, more fragments) carries its ports', () => {
    expect(verdict(1, { v: 4, proto: TCP, dport: 22, ipv4More: true })).toBe('drop');
  });
  it('nine extension headers: dropped even though "all" is allowed, counted', () => {
    const before = counters().drop_ipv6_ext_chain!;
    const ext = Array.from({ length: 9 }, () => ({ type: 60 }));
    expect(verdict(1, { v: 6, proto: TCP, dport: 80, ext })).toBe('drop');
    expect(counters().drop_ipv6_ext_chain).toBe(before + 1);
    expect(lastReason()).toBe(8);
  });
  it('later fragments and unknown next headers pass "allow all protocols" (no ports needed)', () => {
    expect(verdict(1, { v: 6, proto: TCP, ext: [{ type: 44, fragOffset: 100 }] })).toBe('deliver');
    expect(verdict(1, { v: 4, proto: TCP, ipv4FragOffset: 100 })).toBe('deliver');
    expect(verdict(1, { v: 6, proto: 253 })).toBe('deliver');
  });
});

describe('allow TCP/80 from X only: what carries no ports is dropped and counted', () => {
  it('IPv6 and IPv4 later fragments', () => {
    const before = counters().drop_fragment!;
    expect(verdict(2, { v: 6, proto: TCP, ext: [{ type: 60 }, { type: 44, fragOffset: 1, more: true }] })).toBe('drop');
    expect(lastReason()).toBe(7);
    expect(verdict(2, { v: 4, proto: TCP, ipv4FragOffset: 185 })).toBe('drop');
    expect(counters().drop_fragment).toBe(before + 2);
    // the first fragment is judged by its ports
    expect(verdict(2, { v: 6, proto: TCP, dport: 80, ext: [{ type: 44, more: true }] })).toBe('deliver');
  });
  it('unknown next headers (ESP, experimental 253), alone or after a known one', () => {
    const before = counters().drop_ipv6_ext_chain!;
    expect(verdict(2, { v: 6, proto: 50 })).toBe('drop');
    expect(verdict(2, { v: 6, proto: 253, ext: [{ type: 60 }] })).toBe('drop');
    expect(counters().drop_ipv6_ext_chain).toBe(before + 2);
    expect(lastReason()).toBe(8);
  });
  it('UDP behind a destination-options header is UDP to its port (not allowed here)', () => {
    expect(verdict(2, { v: 6, proto: UDP, dport: 80, ext: [{ type: 60 }] })).toBe('drop');
    expect(lastReason()).toBe(2);
  });
  it('ICMPv6 carried in IPv4 is no ICMP error that passes as related', () => {
    expect(verdict(2, { v: 4, proto: 58, dport: 0, sport: 0x0100 })).toBe('drop'); // type 1 = destination unreachable in ICMPv6
  });
});

describe('ICMP errors pass only about a tracked flow of their destination', () => {
  // type 3 code 3 (port unreachable) / ICMPv6 type 1 code 4, quoting the first 28 / 48 bytes of what `quotedFrom` sent
  const error = (v: 4 | 6, from: Buffer, to: Buffer, quoted: Buffer) =>
    l4Packet({ v, src: from, dst: to, proto: v === 4 ? 1 : 58, sport: v === 4 ? 0x0303 : 0x0104, dport: 0, payload: quoted.subarray(0, v === 4 ? 28 : 48) });
  for (const v of [4, 6] as const) {
    it(`IPv${v}: forged, then about a real flow, then quoting someone else's packet`, () => {
      const port = sport++;
      // what endpoint 2 would have sent to X on a flow X opened (X:port -> ep2:80)
      const reply = l4Packet({ v, src: DST[2][v], dst: SRC[v], proto: TCP, sport: 80, dport: port, tcpFlags: 0x12 });
      expect(d.native.policyCheck(error(v, SRC[v], DST[2][v], reply), X)).toBe('drop'); // no such flow yet
      expect(verdict(2, { v, proto: TCP, dport: 80, sport: port })).toBe('deliver');
      expect(d.native.policyCheck(error(v, SRC[v], DST[2][v], reply), X)).toBe('deliver');
      // quoting a packet the error's destination did not send
      const toOther = l4Packet({ v, src: DST[1][v], dst: SRC[v], proto: TCP, sport: 80, dport: port, tcpFlags: 0x12 });
      expect(d.native.policyCheck(error(v, SRC[v], DST[2][v], toOther), X)).toBe('drop');
    });
    it(`IPv${v}: an error about a real flow from a third party (a pod, not the flow's destination) is policy's to judge`, () => {
      const port = sport++;
      const reply = l4Packet({ v, src: DST[2][v], dst: SRC[v], proto: TCP, sport: 80, dport: port, tcpFlags: 0x12 });
      expect(verdict(2, { v, proto: TCP, dport: 80, sport: port })).toBe('deliver');
      // another pod (its own identity, not X) forges "port unreachable" about X's flow: endpoint 2 admits only TCP/80 from X
      expect(d.native.policyCheck(error(v, ATTACKER[v], DST[2][v], reply), 70009)).toBe('drop');
      // a router on the path (world, another node) may send it
      expect(d.native.policyCheck(error(v, ROUTER[v], DST[2][v], reply), 2)).toBe('deliver');
      expect(d.native.policyCheck(error(v, ROUTER[v], DST[2][v], reply), 6)).toBe('deliver');
    });
  }
});

const icmp = icmpPacket;

describe('an echo request is never a reply (red team s14)', () => {
  // ICMP echo request / reply (ICMPv6 128 / 129) with identifier `id`
  const echo = (v: 4 | 6, from: Buffer, to: Buffer, request: boolean, id: number) =>
    icmp(v, from, to, v === 4 ? (request ? 8 : 0) : request ? 128 : 129, id);
  for (const v of [4, 6] as const) {
    it(`IPv${v}: once endpoint 2 pinged X, X's echo replies pass, X's echo requests (same identifier) meet policy`, () => {
      // endpoint 2 admits only TCP/80 from X (RFC 792 / 4443: a request asks, a reply answers; Linux keys the type)
      const id = 0x4242 + v;
      expect(d.native.policyCheck(echo(v, SRC[v], DST[2][v], true, id), X)).toBe('drop');
      expect(d.native.policyCheck(echo(v, DST[2][v], SRC[v], true, id))).toBe('forward'); // endpoint 2 pings X
      expect(d.native.policyCheck(echo(v, SRC[v], DST[2][v], false, id), X)).toBe('deliver'); // the reply
      expect(d.native.policyCheck(echo(v, SRC[v], DST[2][v], true, id), X)).toBe('drop'); // X pinging back: no reply
      expect(d.native.policyCheck(echo(v, SRC[v], DST[2][v], false, id + 1), X)).toBe('drop'); // a reply to nothing
    });
  }
});

describe('ICMP: only a query is answered, only by its own reply; the rest is policy (red team s14, review)', () => {
  // The oracle, from RFC 792 (IPv4), RFC 4443 and RFC 4620 (ICMPv6): query -> reply pairs (echo, timestamp,
  // information, address mask; echo, node information). A reply answers only a request of its own pair, with its
  // identifier, sent by the one it replies to. Errors (IPv4 3/11/12, ICMPv6 1-4) are about a packet they quote.
  // Anything else (redirect 5 / 137, router solicitation 10 / 133, ...) answers nothing: policy decides.
  const PAIRS = { 4: [[8, 0], [13, 14], [15, 16], [17, 18]], 6: [[128, 129], [139, 140]] } as const;
  const UNPAIRED = { 4: [5, 9, 10, 4], 6: [137, 133, 134, 135] } as const;
  const UNREACH = { 4: 3, 6: 1 } as const;
  const ep2 = (pkt: Buffer) => d.native.policyCheck(pkt); // endpoint 2 sends (TX)
  const fromX = (pkt: Buffer) => d.native.policyCheck(pkt, X); // X sends to endpoint 2 (RX)
  // Each case talks to an address of X of its own: no conntrack entry of one case answers another's packets.
  const xs = { 4: Array.from({ length: 16 }, (_, n) => ip(`100.64.1.${32 + n}`)), 6: Array.from({ length: 16 }, (_, n) => ip(`fd64::1:${n}`)) };
  beforeAll(() => d.native.ipcacheUpdate(Buffer.concat([...xs[4], ...xs[6]].map((a) => row(a, X, 0))), Buffer.alloc(0)));
  for (const v of [4, 6] as const) {
    let next = 0;
    const fresh = () => xs[v][next++]!;
    for (const [req, rep] of PAIRS[v]) {
      for (const id of [0, 0x5100 + req]) {
        it(`IPv${v} ${req}/${rep}, identifier ${id}: the reply passes, nothing else rides on the request`, () => {
          const x = fresh(); // X
          // endpoint 2 admits only TCP/80 from X: nothing ICMP from X passes but an answer to endpoint 2
          expect(ep2(icmp(v, DST[2][v], x, req, id))).toBe('forward');
          expect(fromX(icmp(v, x, DST[2][v], req, id))).toBe('drop'); // X asking back: a request is no reply
          for (const [, other] of PAIRS[v].filter(([r]) => r !== req))
            expect(fromX(icmp(v, x, DST[2][v], other, id))).toBe('drop'); // another kind's reply
          for (const t of UNPAIRED[v]) expect(fromX(icmp(v, x, DST[2][v], t, id))).toBe('drop');
          expect(fromX(icmp(v, x, DST[2][v], rep, id ^ 1))).toBe('drop'); // another identifier
          expect(fromX(icmp(v, x, DST[2][v], rep, id))).toBe('deliver'); // the answer
          expect(fromX(icmp(v, x, DST[2][v], rep, id))).toBe('deliver'); // (and again: the entry stays)
          // an error about that request, from X (the one asked) or a router, is related
          const asked = icmp(v, DST[2][v], x, req, id);
          expect(fromX(icmp(v, x, DST[2][v], UNREACH[v], 0, asked.subarray(0, v === 4 ? 28 : 48)))).toBe('deliver');
        });
      }
    }
    it(`IPv${v}: an unsolicited reply makes no entry, an unpaired type none either`, () => {
      const x = fresh(); // X
      const id = 0x6100 + v;
      const [req, rep] = PAIRS[v][1]!;
      // endpoint 2 answers a request X never sent (policy: no egress rules): no entry a request of X could match
      expect(ep2(icmp(v, DST[2][v], x, rep, id))).toBe('forward');
      expect(fromX(icmp(v, x, DST[2][v], req, id))).toBe('drop');
      expect(fromX(icmp(v, x, DST[2][v], rep, id))).toBe('drop');
      for (const t of UNPAIRED[v]) {
        expect(ep2(icmp(v, DST[2][v], x, t, id))).toBe('forward');
        expect(fromX(icmp(v, x, DST[2][v], t, id))).toBe('drop'); // the same message back: policy
        expect(fromX(icmp(v, x, DST[2][v], t, 0))).toBe('drop');
      }
    });
    it(`IPv${v}: ICMP errors are related or policy's, never a conntrack hit or entry`, () => {
      const x = fresh(); // X
      const q = (p: Buffer) => p.subarray(0, v === 4 ? 28 : 48);
      // endpoint 2 sends X an error (and a timestamp / node information request, identifier 0): no entry for errors
      const udp = l4Packet({ v, src: x, dst: DST[2][v], proto: UDP, sport: 5353, dport: 5353 });
      expect(ep2(icmp(v, DST[2][v], x, UNREACH[v], 0, q(udp)))).toBe('forward');
      expect(ep2(icmp(v, DST[2][v], x, PAIRS[v][1]![0], 0))).toBe('forward');
      // X: an error back, a forged port unreachable about a flow endpoint 2 never had, an error quoting an error
      expect(fromX(icmp(v, x, DST[2][v], UNREACH[v], 0, q(udp)))).toBe('drop');
      const never = l4Packet({ v, src: DST[2][v], dst: x, proto: UDP, sport: 5353, dport: 40000 });
      expect(fromX(icmp(v, x, DST[2][v], UNREACH[v], 0, q(never)))).toBe('drop');
      const err = icmp(v, DST[2][v], x, UNREACH[v], 0, q(udp));
      expect(fromX(icmp(v, x, DST[2][v], UNREACH[v], 0, q(err)))).toBe('drop');
      expect(fromX(icmp(v, x, DST[2][v], v === 4 ? 0 : 129, 0))).toBe('drop'); // an echo reply, identifier 0
    });
  }
});

describe('malformed chains are refused before policy', () => {
  it('an extension header running past the packet', () => {
    const p = l4Packet({ v: 6, src: SRC[6], dst: DST[1][6], proto: TCP, dport: 80, ext: [{ type: 60 }] });
    p[41] = 10; // claims 88 bytes
    expect(d.native.policyCheck(p, X)).toBe('malformed');
    const q = l4Packet({ v: 6, src: SRC[6], dst: DST[1][6], proto: TCP, dport: 80, ext: [{ type: 60 }] });
    expect(d.native.policyCheck(q.subarray(0, 44), X)).toBe('malformed'); // parse_ip refuses a payload length past the end
  });
  it('a TCP header cut short behind the chain', () => {
    const p = l4Packet({ v: 6, src: SRC[6], dst: DST[1][6], proto: TCP, dport: 80, ext: [{ type: 60 }] });
    const cut = p.subarray(0, 40 + 8 + 10);
    cut.writeUInt16BE(18, 4);
    expect(d.native.policyCheck(cut, X)).toBe('malformed');
  });
});
