// A native peer's traffic state (native/src/wireguard/device.h PeerLive: keypairs, staged packets, counters,
// timers, probe figures) is made by the peer's first activity, not when the peer is added (issue 16: an agent
// holds a peer for every node of every connected cluster and most never carry a packet). Regression for s30peer:
// what the control plane does to idle peers (endpoint, allowed IPs, roaming set, identity, stats reads, a flush,
// keypairs cleared) makes no block and reads as zeros; each thing that makes a peer active makes one; a removed
// peer's block goes with it. Two real devices over loopback (no TUN).
import { describe, expect, it } from 'vitest';
import { keyedPeer, loopbackDevices, until } from '../helpers/native-loopback.js';

const open = loopbackDevices();
const v4 = (a: number, b: number, c: number, d: number) => Buffer.from([a, b, c, d]);

describe('a native peer is made without its traffic state', () => {
  it('idle peers hold no block whatever the control plane sets or reads; activity makes one; removal frees it', async () => {
    const d = open();
    const e = open();
    d.enablePolicy();
    const IDLE = 40;
    for (let id = 1; id <= IDLE; id++) {
      d.upsertPeer(id);
      d.setEndpoint(id, '127.0.0.1', e.port);
      d.setAllowedIPs(id, [[v4(100, 64, id, 0), 24], [v4(198, 18, 0, id), 32]]);
      d.setRoaming(id, ['198.18.0.' + id]);
      d.setPeerIdentity(id, true, 2, [2]);
      d.flushStaged(id, false);
      d.clearKeypairs(id);
    }
    const idle = d.peerStats();
    expect(idle).toHaveLength(IDLE);
    for (const s of idle) {
      expect([s.rxBytes, s.txBytes, s.rxPackets, s.txPackets, s.lastAuthSentMs, s.lastAuthRecvMs, s.lastDataSentMs, s.lastDataRecvMs]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
      expect([s.hasCurrent, s.hasNext, s.probesSent, s.probeReplies, s.probeRepliesQueued]).toEqual([false, false, 0, 0, 0]);
    }
    expect(d.peerStats(true)).toEqual([]);
    expect(d.peersWithState()).toBe(0);

    // a keypair installed: a block (and the traffic it carries is counted in it)
    keyedPeer(d, e, 100, 1000);
    expect(d.peersWithState()).toBe(1);
    d.sendKeepalive(100);
    await until(() => e.peerStats().find((s) => s.id === 100)!.rxPackets > 0);
    expect(d.peerStats().find((s) => s.id === 100)!.txPackets).toBeGreaterThan(0);
    expect(e.peerStats().find((s) => s.id === 100)!.rxPackets).toBeGreaterThan(0);

    // a keepalive with no keypair: the TX thread requests a handshake (the first activity of peer 1)
    d.sendKeepalive(1);
    await until(() => d.peersWithState() === 2);
    expect(d.peersWithState()).toBe(2);
    expect(d.peerStats(true).map((s) => s.id).sort((a, b) => a - b)).toEqual([1, 100]);

    // cleared keypairs keep the block (freed only with the peer); a removed peer's block goes
    d.clearKeypairs(100);
    expect(d.peersWithState()).toBe(2);
    d.removePeer(1);
    d.removePeer(100);
    expect(d.peersWithState()).toBe(0);
    expect(d.peerStats()).toHaveLength(IDLE - 1);
  });
});
