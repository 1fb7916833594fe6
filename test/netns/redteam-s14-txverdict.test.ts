// Red team s14 (a pod with a raw socket): the TX thread reuses a packet's verdict for the next packet of the same
// addresses, protocol and ports in one TX batch (meant for a TSO super-packet's segments). An ICMP error that passes
// as related to a tracked flow (PolicyEngine::related) carries no ports, so every ICMP packet between the same two
// pods that follows it in the batch rode its verdict: a forged "unreachable" about another pod's connection, or any
// ICMP the destination's policy denies, was hairpinned unchecked. Oracle: the destination's ingress policy allows
// only TCP/80 from the sender, so each error quoting a flow the destination never had with the sender is dropped
// (docs/security.md, "ICMP errors"), however the packets are batched. Review: the reuse key had no IP version, so
// an IPv6 packet between <v4 bytes>:: addresses rode an IPv4 packet's verdict (oracle: the same policy, IPv6 from
// another identity is denied; before, ~200 of 300 passed).
//
// The device's TUN is created here and moved into a namespace of the test's own, where a raw socket sends the
// packets; the TUN's descriptor keeps reading them there.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIP } from '../../src/net/ip.js';
import { encodeEntries } from '../../src/policy/compile.js';
import { ipcacheRow } from '../../src/native/rows.js';
import { canRunNetns, hasCommand, waitFor } from '../../src/testbed/netns.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { l4Packet } from '../helpers/packets.js';

const enabled = canRunNetns() && hasCommand('python3');
const NS = `wmr14b${process.pid % 10000}`;
const TUN = `wmr14b${process.pid % 10000}`;
const ip = (s: string) => parseIP(s)!;
const A = ip('100.64.250.1'); // the attacker pod, identity 70009
const B = ip('100.64.250.2'); // its target: ingress allows only TCP/80 from 70009
const C = ip('100.64.250.3'); // a third pod B talks to
const TCP = 6;
const PAIRS = 300;

// The IPv6 addresses whose first 4 bytes are A's and B's (<v4 bytes>::): an IPv4 address zero-padded to 16 bytes.
const A6 = ip('6440:fa01::');
const B6 = ip('6440:fa02::');

// Sends the hex packets of argv (one per argument) in order, as fast as the loop goes: IPv4 from a raw socket,
// IPv6 (by the version nibble) from a packet socket straight onto the TUN (an IPv6 raw socket will not send from
// an address the namespace does not hold).
const SEND = `import socket, sys
s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s6 = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86dd))
for h in sys.argv[1:]:
    p = bytes.fromhex(h)
    if p[0] >> 4 == 4:
        s4.sendto(p, (socket.inet_ntoa(p[16:20]), 0))
    else:
        s6.sendto(p, ('${TUN}', 0x86dd))
`;

let d: WireGuardDevice;
const counters = () => d.native.counters() as Record<string, number>;

/**
 * Sends `opener` (expected hairpinned), then PAIRS times `pass` (allowed) and `deny` (denied by policy) back to
 * back (so they share TX batches); returns what was hairpinned after the opener and what policy denied.
 */
async function burst(opener: Buffer, pass: Buffer, deny: Buffer): Promise<{ hairpinned: number; denied: number }> {
  const before = counters();
  // what the device wrote back into the TUN, as the kernel counts it (a reused verdict skips the policy counters)
  const received = () => Number(execFileSync('ip', ['netns', 'exec', NS, 'cat', `/sys/class/net/${TUN}/statistics/rx_packets`], { encoding: 'utf8' }));
  const rx0 = received();
  const hairpins = () => received() - rx0;
  const denied = () => counters().drop_policy_default_deny! - before.drop_policy_default_deny!;
  execFileSync('ip', ['netns', 'exec', NS, 'python3', '-c', SEND, opener.toString('hex')]);
  await waitFor(() => hairpins() === 1, 5000);
  const hex = Array.from({ length: PAIRS }, () => [pass.toString('hex'), deny.toString('hex')]).flat();
  execFileSync('ip', ['netns', 'exec', NS, 'python3', '-c', SEND, ...hex]);
  await waitFor(() => hairpins() + denied() >= 1 + 2 * PAIRS, 5000).catch(() => undefined);
  return { hairpinned: hairpins() - 1, denied: denied() };
}

describe.skipIf(!enabled)('TX verdict reuse (a pod with a raw socket)', () => {
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', NS]);
    // what the device hairpins comes back to this namespace's stack: not forwarded (out of the TUN again)
    execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']);
    d = new WireGuardDevice({ tunName: TUN, tickMs: 0 });
    execFileSync('ip', ['link', 'set', TUN, 'netns', NS]);
    execFileSync('ip', ['-n', NS, 'link', 'set', TUN, 'txqueuelen', '10000', 'up']); // the burst is queued whole
    execFileSync('ip', ['-n', NS, 'route', 'add', '100.64.250.0/24', 'dev', TUN]);
    execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=0']);
    d.native.enablePolicy();
    const row = (a: Buffer, identity: number, ep: number) => ipcacheRow(a, 32, identity, ep);
    const row6 = (a: Buffer, identity: number, ep: number) => ipcacheRow(a, 128, identity, ep);
    d.native.ipcacheUpdate(Buffer.concat([row(A, 70009, 1), row(B, 70002, 2), row(C, 70003, 3), row6(A6, 70010, 0), row6(B6, 70002, 2)]), Buffer.alloc(0));
    d.native.setEndpointPolicy(1, 70009, null, null);
    d.native.setEndpointPolicy(2, 70002, encodeEntries([{ identity: 70009, proto: TCP, deny: false, lo: 80, hi: 80, rule: 1 }]), null);
    d.native.setEndpointPolicy(3, 70003, null, null);
  });
  afterAll(() => {
    d?.close();
    execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  });

  it('an ICMP error about a flow the destination never had with the sender is dropped even right after a related one', async () => {
    // port unreachable (type 3 code 3) from A to B quoting the first 28 bytes of a packet B sent
    const error = (quoted: Buffer) => l4Packet({ v: 4, src: A, dst: B, proto: 1, sport: 0x0303, dport: 0, payload: quoted.subarray(0, 28) });
    const syn = l4Packet({ v: 4, src: A, dst: B, proto: TCP, sport: 40000, dport: 80, tcpFlags: 0x02 });
    const related = error(l4Packet({ v: 4, src: B, dst: A, proto: TCP, sport: 80, dport: 40000, tcpFlags: 0x12 }));
    const forged = error(l4Packet({ v: 4, src: B, dst: C, proto: TCP, sport: 80, dport: 5555, tcpFlags: 0x10 }));
    expect(await burst(syn, related, forged)).toEqual({ hairpinned: PAIRS, denied: PAIRS });
  });

  it('an IPv6 packet from/to the <v4 bytes>:: addresses of an allowed IPv4 flow never reuses its verdict', async () => {
    // B admits TCP/80 from A (70009) only: A6 (70010) -> B6:80 is denied; the IPv4 ACKs of A's flow pass
    const v4 = l4Packet({ v: 4, src: A, dst: B, proto: TCP, sport: 41000, dport: 80, tcpFlags: 0x10 });
    const v6 = l4Packet({ v: 6, src: A6, dst: B6, proto: TCP, sport: 41000, dport: 80, tcpFlags: 0x10 });
    const syn = l4Packet({ v: 4, src: A, dst: B, proto: TCP, sport: 41000, dport: 80, tcpFlags: 0x02 });
    expect(await burst(syn, v4, v6)).toEqual({ hairpinned: PAIRS, denied: PAIRS });
  });
});
