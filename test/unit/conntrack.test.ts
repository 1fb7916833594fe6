// Bounded policy conntrack: a pod flooding SYNs fills only its own quota (its
// unreplied entries are evicted first), another pod's established flow keeps
// passing, and a denied flow leaves no entry. Driven through policyCheck.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../src/agent/config.js';
import { ipcacheRow } from '../../src/native/rows.js';
import { parseIP } from '../../src/net/ip.js';
import { testhooks } from '../../src/native/testhooks.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { l4Packet } from '../helpers/packets.js';

const TCP = 6;
const SYN = 0x02, ACK = 0x10;
const R = 70000; // a remote pod's identity
const ip = (s: string) => parseIP(s)!;
const remote = ip('100.64.9.9');
const flooder = ip('100.64.3.1'); // endpoint 3: no policy
const victim = ip('100.64.3.2'); // endpoint 4: ingress default deny (only replies come in)

let d: WireGuardDevice;

function row(addr: Buffer, identity: number, endpoint: number): Buffer {
  return ipcacheRow(addr, 32, identity, endpoint);
}
const tcp = (src: Buffer, dst: Buffer, sport: number, dport: number, tcpFlags: number) => l4Packet({ v: 4, src, dst, proto: TCP, sport, dport, tcpFlags });
const counters = () => d.native.counters() as Record<string, number>;

/** The victim's flow to the remote pod, answered: established both ways. */
function establish(): void {
  expect(d.native.policyCheck(tcp(victim, remote, 50000, 443, SYN))).toBe('forward');
  expect(d.native.policyCheck(tcp(remote, victim, 443, 50000, SYN | ACK), R)).toBe('deliver');
}
const established = () =>
  d.native.policyCheck(tcp(remote, victim, 443, 50000, ACK), R) === 'deliver' && d.native.policyCheck(tcp(victim, remote, 50000, 443, ACK)) === 'forward';

function flood(n: number, dport = 22): void {
  for (let i = 0; i < n; i++) d.native.policyCheck(tcp(flooder, remote, 1024 + (i % 60000), dport + Math.floor(i / 60000), SYN));
}

beforeEach(() => {
  d = new WireGuardDevice({ createTun: false });
  d.native.enablePolicy();
  d.native.ipcacheUpdate(Buffer.concat([row(remote, R, 0), row(flooder, 70003, 3), row(victim, 70004, 4)]), Buffer.alloc(0));
  d.native.setEndpointPolicy(3, 70003, null, null);
  d.native.setEndpointPolicy(4, 70004, Buffer.alloc(0), null);
});
afterEach(() => d.close());

describe('bounded conntrack under a SYN flood', () => {
  it("the flooder's quota: its unreplied entries are evicted, another pod's established flow passes", () => {
    d.native.setConntrackLimits(4000, 500);
    establish();
    flood(5000);
    expect(d.native.ctEndpointEntries(3)).toBeLessThanOrEqual(500);
    expect(d.native.ctEndpointEntries(4)).toBe(1);
    const c = counters();
    expect(c.conntrack_eviction_sweeps).toBeGreaterThan(0);
    expect(c.conntrack_evicted).toBeGreaterThan(4000);
    expect(c.conntrack_table_full).toBe(0);
    expect(established()).toBe(true);
    // the victim's ingress still denies new flows (the entry passed only replies)
    expect(d.native.policyCheck(tcp(remote, victim, 443, 50001, SYN), R)).toBe('drop');
  });

  it('a full table: the endpoint with most unreplied entries pays, never a replied flow', () => {
    d.native.setConntrackLimits(2000, 2000);
    establish();
    flood(6000);
    expect(counters().conntrack_entries).toBeLessThanOrEqual(2000);
    expect(counters().conntrack_eviction_sweeps).toBeGreaterThan(0);
    expect(established()).toBe(true);
    // a new flow of the victim still gets its entry (its reply passes the default-deny ingress)
    expect(d.native.policyCheck(tcp(victim, remote, 50002, 443, SYN))).toBe('forward');
    expect(d.native.policyCheck(tcp(remote, victim, 443, 50002, SYN | ACK), R)).toBe('deliver');
  });

  it('a quota full of answered flows refuses new entries (no sweep per packet); the flows still pass policy', () => {
    d.native.setConntrackLimits(4000, 100);
    for (let i = 0; i < 100; i++) {
      d.native.policyCheck(tcp(flooder, remote, 2000 + i, 80, SYN));
      expect(d.native.policyCheck(tcp(remote, flooder, 80, 2000 + i, SYN | ACK), R)).toBe('deliver');
      d.native.policyCheck(tcp(flooder, remote, 2000 + i, 80, ACK)); // the handshake completes: no longer evictable
    }
    const sweeps = counters().conntrack_eviction_sweeps;
    for (let i = 0; i < 50; i++) expect(d.native.policyCheck(tcp(flooder, remote, 3000 + i, 80, SYN))).toBe('forward');
    expect(counters().conntrack_quota_full).toBe(50);
    expect(counters().conntrack_eviction_sweeps).toBe(sweeps);
    expect(d.native.ctEndpointEntries(3)).toBe(100);
  });

  it('closing entries (RST seen) are evictable like unreplied ones', () => {
    d.native.setConntrackLimits(4000, 100);
    for (let i = 0; i < 100; i++) {
      d.native.policyCheck(tcp(flooder, remote, 2000 + i, 80, SYN));
      d.native.policyCheck(tcp(remote, flooder, 80, 2000 + i, SYN | ACK), R);
      d.native.policyCheck(tcp(flooder, remote, 2000 + i, 80, 0x04)); // RST: what a raw-socket SYN flood's kernel answers
    }
    expect(d.native.policyCheck(tcp(flooder, remote, 3000, 80, SYN))).toBe('forward');
    expect(counters().conntrack_quota_full).toBe(0);
    expect(counters().conntrack_evicted).toBe(100);
    expect(d.native.ctEndpointEntries(3)).toBe(1);
  });

  it('a flow the destination denies leaves no entry at the source either (same node)', () => {
    const before = counters().conntrack_entries;
    expect(d.native.policyCheck(tcp(flooder, victim, 4000, 22, SYN))).toBe('drop');
    expect(counters().conntrack_entries).toBe(before);
    expect(d.native.ctEndpointEntries(3)).toBe(0);
  });
});

describe('node.yaml policy.conntrack', () => {
  const base = 'cluster: { name: c1, id: 1 }\nnode: { name: n1, addresses: [198.18.1.10], podCIDRs: [100.65.1.0/24] }\netcd: { endpoints: ["http://198.18.1.2:2379"] }\n';
  it('defaults, overrides and bounds', () => {
    expect(parseAgentConfig(base).policy.conntrack).toEqual({ maxEntries: 500_000, perEndpoint: 65_536, natPerEndpoint: 65_536 });
    expect(parseAgentConfig(`${base}policy: { conntrack: { maxEntries: 20000 } }\n`).policy.conntrack).toEqual({ maxEntries: 20_000, perEndpoint: 20_000, natPerEndpoint: 20_000 });
    expect(parseAgentConfig(`${base}policy: { conntrack: { maxEntries: 20000, perEndpoint: 500 } }\n`).policy.conntrack.perEndpoint).toBe(500);
    expect(() => parseAgentConfig(`${base}policy: { conntrack: { maxEntries: 20000, perEndpoint: 30000 } }\n`)).toThrow(/policy\.conntrack\.perEndpoint/);
    expect(parseAgentConfig(`${base}policy: { conntrack: { natPerEndpoint: 1000 } }\n`).policy.conntrack.natPerEndpoint).toBe(1000);
    expect(() => parseAgentConfig(`${base}policy: { conntrack: { natPerEndpoint: 1 } }\n`)).toThrow(/policy\.conntrack\.natPerEndpoint/);
    expect(() => parseAgentConfig(`${base}policy: { conntrack: { max: 1 } }\n`)).toThrow(/policy\.conntrack\.max: unknown field/);
  });
});

describe('lock-free lookups (conntrack.h locking rule)', () => {
  it('a TX and an RX thread always find their flows while others create, grow and garbage-collect the table', () => {
    // native threads: 2 readers (established, reply), a creator of short-lived flows, gc; hits counts correct answers
    for (const size of [2_000, 20_000]) {
      const r = testhooks.policyBench('conntrack-mt', size, 0, 2_000_000);
      expect(r.ops).toBe(2_000_000);
      expect(r.hits).toBe(r.ops);
    }
  });
});
