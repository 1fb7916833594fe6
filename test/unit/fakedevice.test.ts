// The fake native device (src/native/fakedevice.ts) reads back what the control
// plane's own encoders write: ipcache rows, policy rows (encodeEntries), service
// rows (frontendRow, backendRows); events reach the start() callback; calls on
// unknown peers are ignored as the addon ignores them.
import { describe, expect, it } from 'vitest';
import { EVENT_KEYPAIR_CONFIRMED } from '../../src/native/events.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { parseIP } from '../../src/net/ip.js';
import { encodeEntries, type PolicyEntry } from '../../src/policy/compile.js';
import { backendRows, frontendRow, ipcacheRow as encodeIpcacheRow } from '../../src/native/rows.js';

/** An ipcache row as the agent's datapath writes it (src/native/rows.ts, docs/wire-format.md). */
const ipcacheRow = (addr: string, cidr: number, identity = 0, endpoint = 0): Buffer => encodeIpcacheRow(parseIP(addr)!, cidr, identity, endpoint);

describe('FakeDevice', () => {
  it('keeps peers, endpoints, allowed IPs (one owner per prefix) and keypairs; ignores unknown peers', () => {
    const dev = new FakeDevice();
    dev.upsertPeer(1);
    dev.upsertPeer(2);
    dev.setEndpoint(1, '198.18.0.2', 51820);
    dev.setAllowedIPs(1, [[parseIP('100.64.1.0')!, 24], [parseIP('100.64.9.0')!, 24]]);
    dev.setAllowedIPs(2, [[parseIP('100.64.9.0')!, 24]]);
    dev.setEndpoint(7, '198.18.0.9', 1);
    expect(dev.installKeypair(1, 10, 20, Buffer.alloc(32, 1), Buffer.alloc(32, 2), true)).toBe(true);
    expect(dev.installKeypair(7, 10, 20, Buffer.alloc(32, 1), Buffer.alloc(32, 2), true)).toBe(false);
    expect(dev.peer(1)).toMatchObject({ endpoint: { host: '198.18.0.2', port: 51820 }, allowedIPs: ['100.64.1.0/24'], keypairs: [{ localIndex: 10, initiator: true }] });
    expect(dev.peer(2).allowedIPs).toEqual(['100.64.9.0/24']);
    expect(dev.peers.has(7)).toBe(false);
    expect(dev.peerStats(true).map((s) => s.id)).toEqual([1]);
    dev.removePeer(1);
    expect([...dev.peers.keys()]).toEqual([2]);
  });

  it('decodes ipcache, policy and service rows, and answers lookups from them', () => {
    const dev = new FakeDevice();
    dev.ipcacheUpdate(Buffer.concat([ipcacheRow('100.64.0.0', 10, 2), ipcacheRow('100.64.1.5', 32, 300, 7), ipcacheRow('fd00::', 64, 9)]), Buffer.alloc(0));
    dev.ipcacheUpdate(Buffer.alloc(0), ipcacheRow('fd00::', 64));
    expect(Object.fromEntries(dev.ipcache)).toEqual({ '100.64.0.0/10': { identity: 2, endpoint: 0 }, '100.64.1.5/32': { identity: 300, endpoint: 7 } });
    expect(dev.ipcacheLookup(parseIP('100.64.1.5')!)).toEqual({ identity: 300, endpoint: 7 });
    expect(dev.ipcacheLookup(parseIP('100.64.1.6')!)).toEqual({ identity: 2, endpoint: 0 });
    expect(dev.ipcacheLookup(parseIP('198.18.0.1')!)).toBeNull();

    const ingress: PolicyEntry[] = [{ identity: 300, proto: 6, deny: false, lo: 80, hi: 80, rule: 1 }, { identity: 0, proto: 0, deny: false, redirect: true, lo: 0, hi: 65535, rule: 2 }];
    dev.setEndpointPolicy(7, 300, encodeEntries(ingress), null);
    expect(dev.policies.get(7)).toEqual({ identity: 300, ingress, egress: null });

    dev.serviceUpsert(1, 251, frontendRow('100.127.0.10', 80, 'TCP'), backendRows([[{ ip: '100.64.1.5', port: 8080 }, 0], [{ ip: '100.64.2.5', port: 8080 }, 1]]));
    expect(dev.services.get(1)).toEqual({ m: 251, frontends: ['100.127.0.10:80/6'], backends: [{ address: '100.64.1.5', port: 8080, weight: 0 }, { address: '100.64.2.5', port: 8080, weight: 1 }] });
    expect(dev.servicePick(frontendRow('100.127.0.10', 80, 'TCP'), parseIP('100.64.1.1')!, 1234)).toEqual({ address: parseIP('100.64.2.5'), port: 8080 });
    expect(dev.servicePick(frontendRow('100.127.0.10', 81, 'TCP'), parseIP('100.64.1.1')!, 1234)).toBeNull();
  });

  it('refuses malformed rows as the addon does (test/unit/policy.test.ts runs the same rows against it)', () => {
    const dev = new FakeDevice();
    expect(() => dev.ipcacheUpdate(Buffer.alloc(27), Buffer.alloc(0))).toThrow(/28 bytes/);
    for (const [family, len] of [[5, 0], [16, 32], [4, 33]] as const) {
      const bad = Buffer.alloc(28);
      bad[0] = family;
      bad[1] = len;
      expect(() => dev.ipcacheUpdate(bad, Buffer.alloc(0))).toThrow(/family/);
      expect(() => dev.ipcacheUpdate(Buffer.alloc(0), bad)).toThrow(/family/);
    }
    const fe = frontendRow('100.64.0.10', 80, 'TCP');
    fe[0] = 16;
    expect(() => dev.serviceUpsert(1, 7, fe, Buffer.alloc(0))).toThrow(/family/);
  });

  it('delivers injected events to the start() callback and records what it was asked to send', () => {
    const dev = new FakeDevice();
    const seen: number[] = [];
    dev.start((evs) => seen.push(...evs.map((e) => e.kind)));
    dev.keypairConfirmed(1);
    dev.handshakeMessage(Buffer.from([1]), '198.18.0.2', 51820);
    expect(seen[0]).toBe(EVENT_KEYPAIR_CONFIRMED);
    expect(seen).toHaveLength(2);
    expect(dev.sendHandshake('198.18.0.2', 51820, Buffer.from([2]))).toBe(true);
    expect(dev.handshakesSent).toEqual([{ host: '198.18.0.2', port: 51820, msg: Buffer.from([2]) }]);
  });
});
