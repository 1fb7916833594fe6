// gateway-dns's per-source bound (src/services/dnslimit.ts through DnsServer): an IPv6 client counts
// against its /64 (200 q/s, bursts of 400) and its /48 (DNS_PREFIX_LIMITS: 1600 q/s, bursts of 3200);
// an IPv4 client against its address alone. Queries are fed to the server's datagram handler with a
// simulated clock (performance.now mocked): what it limits is deterministic.
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as packet from 'dns-packet';
import type dgram from 'node:dgram';
import { GatewayDns, parseGatewayDnsConfig } from '../../src/gateway/gslb.js';
import { DNS_PREFIX_LIMITS, DNS_SOURCE_LIMITS } from '../../src/services/dnslimit.js';
import { silentLogger } from '../../src/log.js';

const cfg = parseGatewayDnsConfig('etcd: { endpoints: ["http://198.18.1.2:2379"] }\nlisten: { address: 198.18.0.53 }\nnames: { web.example.com: shop/web }\n');
const query = packet.encode({ type: 'query', id: 1, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web.example.com' }] });

/** A gateway-dns server fed directly; send(address, atMs) says whether the query got past the bound. */
function setup() {
  const dns = new GatewayDns(cfg, silentLogger);
  const server = dns.server as unknown as { onMessage(s: dgram.Socket, m: Buffer, r: dgram.RemoteInfo): void };
  const socket = { send: () => undefined } as unknown as dgram.Socket;
  let now = 0;
  vi.spyOn(performance, 'now').mockImplementation(() => now);
  const send = (address: string, atMs: number): boolean => {
    now = atMs;
    const before = dns.server.counters.limited;
    server.onMessage(socket, query, { address, family: address.includes(':') ? 'IPv6' : 'IPv4', port: 5353, size: query.length });
    return dns.server.counters.limited === before;
  };
  return { dns, send };
}

/** `n` queries spread evenly over `ms` from `addressOf(i)`; how many got past the bound. */
function flood(send: (a: string, t: number) => boolean, n: number, ms: number, addressOf: (i: number) => string): number {
  let passed = 0;
  for (let i = 0; i < n; i++) if (send(addressOf(i), (i * ms) / n)) passed++;
  return passed;
}

const perSecond = (l: { ratePerS: number; burst: number }) => l.burst + l.ratePerS; // a full bucket, then one second's refill

afterEach(() => vi.restoreAllMocks());

describe('gateway-dns per-source bound', () => {
  it('regression: a /48 cycling through its /64s is limited at the /48\'s rate', () => {
    // main: every /64 its own bucket, 200 000 queries over 65 536 /64s in 1 s: 0 limited
    const { send } = setup();
    const subnet = (i: number) => `2001:db8:1:${(i % 65536).toString(16)}::1`;
    const passed = flood(send, 200_000, 1000, subnet);
    expect(passed).toBeLessThanOrEqual(perSecond(DNS_PREFIX_LIMITS));
    expect(passed).toBeGreaterThanOrEqual(DNS_PREFIX_LIMITS.burst);
  });

  it('a refused query costs a token of neither bucket: a /64 over its quota leaves the /48 its tokens', () => {
    const { send } = setup();
    // one /64 floods: limited at the /64's rate; its refused queries do not drain the /48
    expect(flood(send, 20_000, 1000, () => '2001:db8:2:1::1')).toBeLessThanOrEqual(perSecond(DNS_SOURCE_LIMITS));
    // so the /48's other /64s still have (almost) its whole burst at once
    expect(flood(send, 4000, 0, (i) => `2001:db8:2:${(2 + (i % 100)).toString(16)}::1`)).toBeGreaterThanOrEqual(DNS_PREFIX_LIMITS.burst - perSecond(DNS_SOURCE_LIMITS));
  });

  it('two different /48s are independent', () => {
    const { send } = setup();
    const a = flood(send, 50_000, 1000, (i) => `2001:db8:3:${(i % 65536).toString(16)}::1`);
    expect(a).toBeLessThanOrEqual(perSecond(DNS_PREFIX_LIMITS));
    // the next /48, at the same time: a full burst of its own
    const b = flood(send, DNS_PREFIX_LIMITS.burst, 0, (i) => `2001:db8:4:${(i % 65536).toString(16)}::1`);
    expect(b).toBe(DNS_PREFIX_LIMITS.burst);
  });

  it('an IPv4 client is unchanged: its address alone, 200/s with bursts of 400; other addresses apart', () => {
    const { send } = setup();
    const passed = flood(send, 20_000, 1000, () => '198.18.7.7');
    expect(passed).toBeLessThanOrEqual(perSecond(DNS_SOURCE_LIMITS));
    expect(passed).toBeGreaterThanOrEqual(DNS_SOURCE_LIMITS.burst + DNS_SOURCE_LIMITS.ratePerS - 1);
    // 8 addresses (more than the /48 multiple): each its full burst
    expect(flood(send, 8 * 400, 1000, (i) => `198.18.8.${i % 8}`)).toBe(8 * DNS_SOURCE_LIMITS.burst);
  });
});
