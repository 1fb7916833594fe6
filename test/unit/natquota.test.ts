// Bounded service NAT: a client flooding SYNs at a service VIP holds at most
// its quota (policy.conntrack.natPerEndpoint) of NAT entries; its own
// half-open pairs are swept first (once a second at most), never another
// client's answered flow, and another client's new flows still get entries.
// Driven through serviceNat (the TX thread's forward / reverse, clock given).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseIP } from '../../src/net/ip.js';
import { backendRows, frontendRow } from '../../src/native/rows.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { l4Packet } from '../helpers/packets.js';

const TCP = 6;
const SYN = 0x02, ACK = 0x10, RST = 0x04;
const ip = (s: string) => parseIP(s)!;
const VIP = '100.96.0.10';
const BACKEND = '100.64.5.5';
const flooder = ip('100.64.3.1');
const other = ip('100.64.3.2');
const T = 1000; // monotonic seconds

let d: WireGuardDevice;
const counters = () => d.native.counters() as Record<string, number>;
const toVip = (src: Buffer, sport: number, flags: number, now = T) => d.native.serviceNat(l4Packet({ v: 4, src, dst: ip(VIP), proto: TCP, sport, dport: 80, tcpFlags: flags }), 'forward', now);
/** The backend's answer to src:sport; 'translated' when the flow has its NAT entries. */
const reply = (dst: Buffer, dport: number, flags: number, now = T) => d.native.serviceNat(l4Packet({ v: 4, src: ip(BACKEND), dst, proto: TCP, sport: 7000, dport, tcpFlags: flags }), 'reverse', now);

beforeEach(() => {
  d = new WireGuardDevice({ createTun: false });
  d.native.enablePolicy();
  d.native.serviceUpsert(1, 251, frontendRow(VIP, 80, 'TCP'), backendRows([[{ ip: BACKEND, port: 7000 }, 1]]));
  d.native.setConntrackLimits(100_000, 100_000, 200); // 100 flows per client
});
afterEach(() => d.close());

describe('service NAT quota per client endpoint', () => {
  it("a SYN flood fills only the flooder's quota; another client's new and answered flows keep their entries", () => {
    expect(toVip(other, 40000, SYN)).toBe('translated');
    expect(reply(other, 40000, SYN | ACK)).toBe('translated');
    for (let i = 0; i < 1000; i++) expect(toVip(flooder, 1024 + i, SYN)).toBe('translated'); // still sent: only its replies lose the VIP
    let c = counters();
    expect(c.service_nat_endpoint_max_entries).toBe(200);
    expect(c.service_nat_endpoint_peak_entries).toBe(200);
    expect(c.service_nat_quota_full).toBe(900);
    expect(c.service_nat_quota_sweeps).toBe(1); // once this second, and nothing was a second idle yet
    expect(c.service_nat_entries).toBe(202);
    // another client's new flow gets its entries during the flood
    expect(toVip(other, 40001, SYN)).toBe('translated');
    expect(reply(other, 40001, SYN | ACK)).toBe('translated');
    // two seconds on: the flooder's half-open pairs go, its new flows get entries again
    for (let i = 0; i < 50; i++) toVip(flooder, 5000 + i, SYN, T + 2);
    c = counters();
    expect(c.service_nat_evicted).toBe(200);
    expect(c.service_nat_quota_sweeps).toBe(2);
    expect(c.service_nat_endpoint_max_entries).toBe(100);
    expect(c.service_nat_endpoint_peak_entries).toBe(200);
    // the other client's answered flows were never swept
    expect(reply(other, 40000, ACK, T + 2)).toBe('translated');
    expect(reply(other, 40001, ACK, T + 2)).toBe('translated');
  });

  it('a quota full of answered flows refuses new entries without a sweep per packet; closed ones make room', () => {
    for (let i = 0; i < 100; i++) {
      toVip(flooder, 2000 + i, SYN);
      expect(reply(flooder, 2000 + i, SYN | ACK)).toBe('translated');
    }
    for (let i = 0; i < 50; i++) toVip(flooder, 3000 + i, SYN, T + 5);
    let c = counters();
    expect(c.service_nat_quota_full).toBe(50);
    expect(c.service_nat_quota_sweeps).toBe(1);
    expect(c.service_nat_evicted).toBe(0);
    // RST from the client (a raw-socket flood's kernel answer): closing pairs are evictable
    for (let i = 0; i < 100; i++) toVip(flooder, 2000 + i, RST, T + 5);
    expect(toVip(flooder, 4000, SYN, T + 7)).toBe('translated');
    expect(reply(flooder, 4000, SYN | ACK, T + 7)).toBe('translated');
    c = counters();
    expect(c.service_nat_evicted).toBe(200);
    expect(c.service_nat_endpoint_max_entries).toBe(2);
  });

  it('idle pairs expire in gc and give their quota back', () => {
    // gc runs on the data path's monotonic clock (CLOCK_MONOTONIC, as hrtime): these pairs are 10 000 s idle
    const long = Number(process.hrtime.bigint() / 1_000_000_000n) - 10_000;
    for (let i = 0; i < 100; i++) toVip(flooder, 2000 + i, SYN, long);
    expect(counters().service_nat_endpoint_max_entries).toBe(200);
    d.native.ctGc();
    expect(counters().service_nat_entries).toBe(0);
    expect(counters().service_nat_endpoint_max_entries).toBe(0);
    expect(toVip(flooder, 3000, SYN)).toBe('translated');
  });
});
