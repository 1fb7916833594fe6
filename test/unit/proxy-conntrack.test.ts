// Regression (CI of 2026-11-30, proxy-isolation): a flow that policy admits
// only through the L7 proxy got a conntrack entry at its first packet, before
// the device tried the redirect. When the redirect did not happen (the proxy
// was down and its port unset) or its NAT pair was later closed (an RST, then
// the client reuses the tuple), the next packet of the same 5-tuple hit that
// entry as "established" and was delivered straight to the pod: an L7-denied
// path answered 200. The rule (docs/security.md, fail closed): a conntrack
// entry never turns an L7 decision into an L4 pass; the flow's own direction
// goes to the proxy again, or nowhere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIP } from '../../src/net/ip.js';
import { encodeEntries } from '../../src/policy/compile.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { l4Packet } from '../helpers/packets.js';
import { ipcacheRow } from '../../src/native/rows.js';

const TCP = 6;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;
const X = 70000; // the client's identity
const ip = (s: string) => parseIP(s)!;
const CLIENT = ip('100.64.1.1');
const POD = ip('100.64.2.2'); // endpoint 1: HTTP rules on 80 (redirect), TCP/9090 plainly allowed

let d: WireGuardDevice;

beforeAll(() => {
  d = new WireGuardDevice({ createTun: false });
  d.native.enablePolicy();
  d.native.ipcacheUpdate(Buffer.concat([ipcacheRow(CLIENT, 32, X, 0), ipcacheRow(POD, 32, 70001, 1)]), Buffer.alloc(0));
  d.native.setEndpointPolicy(1, 70001, encodeEntries([
    { identity: X, proto: TCP, deny: false, redirect: true, lo: 80, hi: 80, rule: 1 },
    { identity: X, proto: TCP, deny: false, lo: 9090, hi: 9090, rule: 2 },
  ]), null);
});
afterAll(() => d.close());

const send = (sport: number, dport: number, tcpFlags: number) =>
  d.native.policyCheck(l4Packet({ v: 4, src: CLIENT, dst: POD, proto: TCP, sport, dport, tcpFlags }), X);

describe('conntrack of a flow admitted for the L7 proxy', () => {
  it('the SYN retransmitted after a failed redirect goes to the proxy again, not to the pod', () => {
    expect(send(30001, 80, SYN)).toBe('redirect');
    expect(send(30001, 80, SYN)).toBe('redirect'); // was 'deliver'
    expect(send(30001, 80, ACK)).toBe('redirect');
  });

  it('a tuple reused after an RST cannot ride the old entry past the proxy', () => {
    expect(send(30002, 80, SYN)).toBe('redirect');
    expect(send(30002, 80, RST | ACK)).toBe('redirect');
    expect(send(30002, 80, SYN)).toBe('redirect');
  });

  it('a plainly allowed port still passes as established (the marking is per flow)', () => {
    expect(send(30003, 9090, SYN)).toBe('deliver');
    expect(send(30003, 9090, ACK)).toBe('deliver');
  });
});
