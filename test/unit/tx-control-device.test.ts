// The TX thread's control round on the real device (native/src/wireguard/device_txctl.cc): one probe round of the
// probe monitor queues a probe for every watched peer at once (ProbeMonitor round, device_mesh.cc), so watching more
// peers than one round's arena holds (7 MiB of 64-byte slots: 114,688; main's 8 MiB: 131,072) overflows it
// deterministically. Before, the overflow ended the round and dropped the rest of the queue, and since the
// monitor lists its peers in the same order every round, the same peers (past 131,072) were never probed: they
// would never be seen alive. Oracle: every watched peer is probed (probes_sent ≥ 1) once as many probes as there
// are peers have gone out. The peers hold no endpoint (no 150,000 sends a round on a shared machine): the probe is counted
// when the round packs it, then dropped as no-endpoint, each one counted.
import { describe, expect, it } from 'vitest';
import type { NativeDevice } from '../../src/native/binding.js';
import { keyedPeer, loopbackDevices, until } from '../helpers/native-loopback.js';

const open = loopbackDevices();

describe('TX control round on the device (arena overflow)', () => {
  it('probes every one of 150,000 watched peers: what a round cannot fit goes in the next', { timeout: 60_000 }, async () => {
    const d = open();
    const N = 150_000;
    const ids = Array.from({ length: N }, (_, i) => i + 1);
    for (const id of ids) d.upsertPeer(id);
    d.probeWatch(ids, []);
    // a round's worth has gone through tx_process (each probe there counted as no-endpoint): then look per peer
    // (peerStats of 150,000 peers costs ~1 s, so only once)
    await until(() => (d.counters().drop_no_endpoint ?? 0) >= N);
    d.probeWatch([], ids);
    const probed = d.peerStats().filter((s) => s.probesSent >= 1).length;
    expect({ probed, controlOverflow: d.counters().drop_control_overflow }).toEqual({ probed: N, controlOverflow: 0 });
  });

  // A use-after-free found in review: the control round packs its segments under one hold of the
  // peer table's lock and the batch runs under another, TUN reads between; a peer removed in that gap was read
  // through its freed Peer* (its mutex: the TX thread hung holding the table's lock, and removePeer with it, 2 runs
  // in 3 of the reviewer's). Segments now carry the peer's id, found again in the batch. Oracle: after removing
  // every peer while their probe rounds are in flight, the device still answers and holds no peer.
  it('removing peers while a probe round is in flight leaves the device working', { timeout: 60_000 }, async () => {
    const d = open();
    const N = 120_000;
    for (let round = 0; round < 3; round++) {
      const ids = Array.from({ length: N }, (_, i) => round * N + i + 1);
      for (const id of ids) d.upsertPeer(id);
      d.probeWatch(ids, []);
      const before = d.counters().drop_no_endpoint ?? 0;
      await until(() => (d.counters().drop_no_endpoint ?? 0) > before); // the round has started
      for (const id of ids) d.removePeer(id);
      d.probeWatch([], ids);
    }
    expect(d.peerStats()).toEqual([]);
  });
});

// A peer flooding probe requests (device_txctl.cc queue_probe_reply): each one asks the TX thread for a reply, and
// before, only the queue's shared bound (114,688 messages) limited them, so one authenticated peer could keep the
// queue at it and every other peer's replies were refused meanwhile. Now a peer has at most 8 replies queued.
// Device e plays the peers (its probe() sends real probe requests over a real session), d answers. Oracle, counted
// on d whatever the sockets lose: every request d received from a peer was answered or refused and counted (its
// rxPackets = its txPackets + its refusals: d sends these peers nothing else); an honest peer (one request at a time)
// is never refused; the flooder is (drop_probe_reply_quota); no peer's queued count is left over once it drains.
describe('TX control queue on the device: probe replies per peer', () => {
  const FLOODER = 10;
  const HONEST = [11, 12, 13, 14, 15, 16];
  const pair = (d: NativeDevice, e: NativeDevice, ids: number[]) => {
    d.enablePolicy(); // probes are mesh mode's
    e.enablePolicy();
    for (const id of ids) keyedPeer(d, e, id, 2 * id);
  };
  const stats = (d: NativeDevice) => new Map(d.peerStats().map((s) => [s.id, s]));
  /** The honest peers probe (one request each, again once answered) until each has an answer; returns the rounds. */
  const honestUntilAnswered = async (e: NativeDevice, during: () => boolean) => {
    for (let i = 0; i < 250; i++) {
      const got = stats(e);
      const waiting = HONEST.filter((id) => (got.get(id)?.probeReplies ?? 0) === 0);
      if (waiting.length === 0 && !during()) return;
      e.probe(waiting.length ? waiting : HONEST);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  /** Waits until d's per-peer counts stop moving (the flood has drained). */
  const drained = async (d: NativeDevice) => {
    let last = '';
    await until(() => {
      const now = JSON.stringify(d.peerStats().map((s) => [s.id, s.rxPackets, s.txPackets, s.probeRepliesQueued]));
      const same = now === last;
      last = now;
      return same;
    });
  };

  it('one peer flooding 200,000 probe requests is refused past 8 queued; every honest request is answered', { timeout: 60_000 }, async () => {
    const d = open();
    const e = open();
    pair(d, e, [FLOODER, ...HONEST]);
    const FLOOD = 200_000;
    e.probe(Array.from({ length: FLOOD }, () => FLOODER));
    await honestUntilAnswered(e, () => (stats(e).get(FLOODER)?.probesSent ?? 0) < FLOOD);
    await drained(d);
    const got = stats(d);
    const f = got.get(FLOODER)!;
    const c = d.counters();
    expect({
      floodAccounted: f.txPackets + c.drop_probe_reply_quota!,
      overflow: c.drop_control_overflow,
      honest: HONEST.map((id) => ({ id, refused: got.get(id)!.rxPackets - got.get(id)!.txPackets, queued: got.get(id)!.probeRepliesQueued })),
      floodQueued: f.probeRepliesQueued,
    }).toEqual({
      floodAccounted: f.rxPackets,
      overflow: 0,
      honest: HONEST.map((id) => ({ id, refused: 0, queued: 0 })),
      floodQueued: 0,
    });
    expect(c.drop_probe_reply_quota).toBeGreaterThan(0); // the flood did outrun the TX thread: it was refused
    for (const id of HONEST) expect({ id, answered: stats(e).get(id)!.probeReplies >= 1 }).toEqual({ id, answered: true });
  });

  it('removing the flooder while its replies are queued leaves no count behind; the rest are answered', { timeout: 60_000 }, async () => {
    const d = open();
    const e = open();
    const NEXT = 20; // a peer added after the removal (ids are never reused)
    pair(d, e, [FLOODER, ...HONEST]);
    e.probe(Array.from({ length: 200_000 }, () => FLOODER));
    await until(() => (stats(d).get(FLOODER)?.rxPackets ?? 0) > 1000); // the flood is arriving
    d.removePeer(FLOODER);
    await honestUntilAnswered(e, () => (stats(e).get(FLOODER)?.probesSent ?? 0) < 200_000);
    pair(d, e, [NEXT]);
    for (let i = 0; i < 250 && (stats(e).get(NEXT)?.probeReplies ?? 0) === 0; i++) {
      e.probe([NEXT]);
      await new Promise((r) => setTimeout(r, 20));
    }
    await drained(d);
    const got = stats(d);
    expect({
      flooder: got.has(FLOODER),
      overflow: d.counters().drop_control_overflow,
      peers: [...HONEST, NEXT].map((id) => ({ id, refused: got.get(id)!.rxPackets - got.get(id)!.txPackets, queued: got.get(id)!.probeRepliesQueued })),
      answered: [...HONEST, NEXT].filter((id) => stats(e).get(id)!.probeReplies >= 1),
    }).toEqual({
      flooder: false,
      overflow: 0,
      peers: [...HONEST, NEXT].map((id) => ({ id, refused: 0, queued: 0 })),
      answered: [...HONEST, NEXT],
    });
  });
});
