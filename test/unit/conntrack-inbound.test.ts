// Conntrack's inbound half is not one pool the node's pods share: flows others start are charged to their
// destination too (at most maxEntries / 4 each, and its fair share, half / n, while the half is or was full in
// the last 60 s), and a pod below its fair share of a full half makes room from the pod holding most (its
// evictable entries, then its answered ones idle since before the current second, at most once a second).
// Attacks as an attacker runs them, on a conntrack of the test's own (testhooks ConntrackProbe) whose clock
// the test moves; the expected numbers are derived from those documented bounds (docs/architecture.md), not
// from the implementation.
import { describe, expect, it } from 'vitest';
import { parseIP } from '../../src/net/ip.js';
import { type ConntrackFlow, testhooks } from '../../src/native/testhooks.js';

const TCP = 6, UDP = 17;
const SYN = 0x02, ACK = 0x10, SYNACK = 0x12;
const MAX = 1000, PER = 100; // the inbound half: 500; a destination's bound: 250
const HALF = MAX / 2, CAP = MAX / 4;
const ip = (s: string) => parseIP(s)!;
const pod = (ep: number) => ip(`100.64.3.${ep}`); // local endpoint `ep`
const source = (n: number) => ip(`100.64.${9 + Math.floor(n / 250)}.${(n % 250) + 1}`); // remote sources
const server = ip('100.64.8.8');
type Probe = InstanceType<typeof testhooks.ConntrackProbe>;

const udp = (src: Buffer, dst: Buffer, sport: number, dport: number): ConntrackFlow => ({ src, dst, proto: UDP, sport, dport });
const reverse = (f: ConntrackFlow): ConntrackFlow => ({ ...f, src: f.dst, dst: f.src, sport: f.dport, dport: f.sport });

/**
 * `n` UDP flows from source `src` (ports from `firstPort`) to endpoint `ep`:53 at second `now`, each answered by the
 * pod (an ordinary client of an answering service: no spoofing); returns the flows that got an entry.
 */
function answeredFlood(ct: Probe, src: number, ep: number, n: number, now: number, firstPort = 1024): ConntrackFlow[] {
  const made: ConntrackFlow[] = [];
  for (let i = 0; i < n; i++) {
    const f = udp(source(src), pod(ep), firstPort + i, 53);
    if (ct.create('ingress', f, now, ep) !== 'created') continue;
    expect(ct.lookup('egress', reverse(f), now)).toBe('reply');
    made.push(f);
  }
  return made;
}
/** The pod's own new outbound TCP flow to the server: an entry, the SYN-ACK is its reply, the pod's ACK established. */
function outbound(ct: Probe, ep: number, sport: number, now: number): boolean {
  const f: ConntrackFlow = { src: pod(ep), dst: server, proto: TCP, sport, dport: 443, tcpFlags: SYN };
  return ct.create('egress', f, now, ep) === 'created' && ct.lookup('ingress', { ...reverse(f), tcpFlags: SYNACK }, now) === 'reply' &&
    ct.lookup('egress', { ...f, tcpFlags: ACK }, now) === 'established';
}
/** Every entry expired (far past the longest timeout) and gc ran: nothing may stay counted. */
function expectNoLeak(ct: Probe, now: number): void {
  ct.gc(now + 7200);
  const s = ct.stats(1);
  expect([s.entries, s.inbound, s.inboundEvictable, s.destination, s.accounts]).toEqual([0, 0, 0, 0, 0]);
}

describe('a flood into one pod cannot deny new inbound flows into the other pods', () => {
  it('ten sources flooding pod 1 hold at most maxEntries / 4; pod 2 still gets new flows, pod 1 its own', () => {
    const ct = new testhooks.ConntrackProbe(MAX, PER);
    let made = 0;
    for (let s = 0; s < 10; s++) made += answeredFlood(ct, s, 1, PER, 100).length;
    expect(made).toBe(CAP);
    expect(ct.stats(1).destination).toBe(CAP);
    expect(ct.stats(1).counters.conntrack_destination_full).toBe(10 * PER - CAP);
    // another pod's new inbound flow, from one of the flooding sources too
    expect(answeredFlood(ct, 50, 2, 1, 100)).toHaveLength(1);
    expect(answeredFlood(ct, 2, 2, 1, 100, 5000)).toHaveLength(1);
    // the flooded pod's own outbound flows are untouched (the other half)
    expect(outbound(ct, 1, 40000, 100)).toBe(true);
    expect(ct.stats(1).own).toBe(1);
    expect(ct.stats(1).counters.conntrack_inbound_full).toBe(0);
    expectNoLeak(ct, 100);
  });

  it('floods at three pods fill the half: a fourth pod displaces idle answered flows of the pod holding most', () => {
    const ct = new testhooks.ConntrackProbe(MAX, PER);
    // pod 1: 250 (its bound), pod 3: 200, pod 4: 50; the half (500) is full of answered flows
    const one = [0, 1, 2].flatMap((s) => answeredFlood(ct, s, 1, s === 2 ? 50 : PER, 100));
    expect(one).toHaveLength(CAP);
    expect([3, 4].flatMap((s) => answeredFlood(ct, s, 3, PER, 100))).toHaveLength(200);
    expect(answeredFlood(ct, 5, 4, 50, 100)).toHaveLength(50);
    expect(ct.stats(1).inbound).toBe(HALF);
    // every flow of pod 1 saw a packet this second: nothing is displaced, pod 2's flow is refused
    expect(answeredFlood(ct, 60, 2, 1, 100)).toHaveLength(0);
    expect(ct.stats(1).counters.conntrack_inbound_full).toBe(1);
    expect(ct.stats(1).counters.conntrack_displaced).toBe(0);
    // a second later, 100 of pod 1's flows carry traffic; pod 2 (0 < 500 / 4) gets room from pod 1,
    // its idle flows down to its fair share (125), at most once a second
    for (const f of one.slice(0, 100)) expect(ct.lookup('ingress', f, 101)).toBe('established');
    expect(answeredFlood(ct, 60, 2, 1, 101)).toHaveLength(1);
    const fair = HALF / 4;
    expect(ct.stats(1).counters.conntrack_displaced).toBe(CAP - fair);
    expect([ct.stats(1).destination, ct.stats(3).destination, ct.stats(4).destination, ct.stats(2).destination]).toEqual([fair, 200, 50, 1]);
    for (const f of one.slice(0, 100)) expect(ct.lookup('ingress', f, 101)).toBe('established');
    // under pressure the displaced pod, and pod 3 over its share, cannot take the room back; pod 4 below it can
    expect(answeredFlood(ct, 70, 1, 5, 101)).toHaveLength(0);
    expect(answeredFlood(ct, 70, 3, 5, 101, 2000)).toHaveLength(0);
    expect(answeredFlood(ct, 70, 4, 5, 101, 3000)).toHaveLength(5);
    // pod 2 fills the freed room, then (the half full again) waits for the next second's displacement (pod 3)
    expect(answeredFlood(ct, 61, 2, PER, 101).length + answeredFlood(ct, 63, 2, PER, 101).length).toBe(HALF - 376 - 5);
    expect(answeredFlood(ct, 62, 2, 1, 102)).toHaveLength(1);
    expect(ct.stats(3).destination).toBe(fair);
    expect(outbound(ct, 1, 40001, 102)).toBe(true);
    expectNoLeak(ct, 102);
  });

  it("a displacement takes the pod's unanswered entries before its answered ones", () => {
    const ct = new testhooks.ConntrackProbe(MAX, PER);
    answeredFlood(ct, 0, 1, PER, 100);
    answeredFlood(ct, 1, 1, PER, 100);
    answeredFlood(ct, 2, 1, 30, 100);
    const probes = Array.from({ length: 20 }, (_, i) => udp(source(2), pod(1), 9000 + i, 53)); // never answered
    for (const f of probes) expect(ct.create('ingress', f, 100, 1)).toBe('created');
    [3, 4].forEach((s) => answeredFlood(ct, s, 3, PER, 100));
    answeredFlood(ct, 5, 4, 50, 100);
    // 20 evictable entries: fewer than 1/16 of the half, not worth a sweep of their own
    expect([ct.stats(1).inbound, ct.stats(1).inboundEvictable, ct.stats(1).destination]).toEqual([HALF, 20, CAP]);
    expect(answeredFlood(ct, 60, 2, 1, 101)).toHaveLength(1);
    expect(ct.stats(1).counters.conntrack_displaced).toBe(CAP - HALF / 4);
    for (const f of probes) expect(ct.lookup('ingress', f, 101)).toBe('miss');
    expectNoLeak(ct, 101);
  });

  it('after 60 s without a full half the share bound lifts (the cap stays)', () => {
    const ct = new testhooks.ConntrackProbe(MAX, PER);
    for (const [s, ep] of [[0, 1], [1, 1], [2, 1], [3, 3], [4, 3], [5, 3]]) answeredFlood(ct, s, ep, PER, 100);
    expect(ct.stats(1).inbound).toBe(HALF); // pods 1 and 3 at their cap: full
    expect(answeredFlood(ct, 60, 2, 1, 101)).toHaveLength(1); // displaces 250 - 166 of one of them
    const after = ct.stats(1).destination + ct.stats(3).destination;
    expect(after).toBe(HALF - (CAP - Math.floor(HALF / 3)));
    // 60 s after the half was last full (no gc since t = 160: nothing expired), the displaced pod may grow to
    // its cap again, as far as the half has room
    ct.gc(160);
    expect(answeredFlood(ct, 10, 1, PER, 161, 6000).length + answeredFlood(ct, 11, 3, PER, 161, 6000).length).toBe(HALF - 1 - after);
    expectNoLeak(ct, 161);
  });
});

describe('accounting invariants over random sequences', () => {
  // Not a full reference model (which entries a displacement takes is the table's order): after every step the
  // documented bounds hold, the destinations' counts sum to the inbound half's, entries = inbound + pods' own;
  // pods' own established flows are never displaced; every count returns to zero once the entries expire. The
  // sequence (seeded) fills the half, displaces, sweeps evictable entries and hits every refusal reason.
  it('bounds hold, no account leaks, pods keep their own flows, over random floods and idle periods', () => {
    let seed = 0x5eed;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 4; round++) {
      const ct = new testhooks.ConntrackProbe(MAX, PER);
      const own = new Map<string, ConntrackFlow>();
      let now = 1000;
      let port = 1024;
      for (let step = 0; step < 3000; step++) {
        const op = rnd(100);
        if (op < 85) {
          // a new inbound UDP flow from one of 40 sources to one of 4 pods (pod 1 the most flooded), answered or not
          const ep = rnd(10) < 6 ? 1 : 2 + rnd(3);
          const f = udp(source(rnd(40)), pod(ep), port++, 53);
          if (ct.create('ingress', f, now, ep) === 'created' && rnd(10) > 0) ct.lookup('egress', reverse(f), now);
        } else if (op < 90) {
          const ep = 1 + rnd(4), sport = port++;
          if (own.size < 4 * PER && outbound(ct, ep, sport, now)) own.set(`${ep}:${sport}`, { src: pod(ep), dst: server, proto: TCP, sport, dport: 443 });
        } else if (op < 97) {
          now += 1;
        } else {
          now += rnd(20) === 0 ? 61 : 0; // now and then a quiet minute: every flow others started expires
          ct.gc(now);
        }
        const byDest = [1, 2, 3, 4].map((ep) => ct.stats(ep));
        const s = byDest[0];
        expect(s.entries).toBeLessThanOrEqual(MAX);
        expect(s.inbound).toBeLessThanOrEqual(HALF);
        expect(s.inboundEvictable).toBeLessThanOrEqual(s.inbound);
        for (const d of byDest) expect(d.destination).toBeLessThanOrEqual(CAP);
        expect(byDest.reduce((n, d) => n + d.destination, 0)).toBe(s.inbound);
        expect(s.entries).toBe(s.inbound + byDest.reduce((n, d) => n + d.own, 0));
        if (step % 100 === 0) {
          // a pod's own established flow (TCP, 1 h idle; looked up every 100 steps) is never displaced or evicted
          for (const f of own.values()) expect(ct.lookup('egress', { ...f, tcpFlags: ACK }, now)).toBe('established');
        }
      }
      expectNoLeak(ct, now);
    }
  });
});
