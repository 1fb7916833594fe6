// The TX thread's control round on the real device (native/src/wireguard/device_txctl.cc): one probe round of the
// probe monitor queues a probe for every watched peer at once (ProbeMonitor round, device_mesh.cc), so watching more
// peers than one round's arena holds (7 MiB of 64-byte slots: 114,688; main's 8 MiB: 131,072) overflows it
// deterministically. Before, the overflow ended the round and dropped the rest of the queue, and since the
// monitor lists its peers in the same order every round, the same peers (past 131,072) were never probed: they
// would never be seen alive. Oracle: every watched peer is probed (probes_sent ≥ 1) once as many probes as there
// are peers have gone out. The peers hold no endpoint (no 150,000 sends a round on a shared machine): the probe is counted
// when the round packs it, then dropped as no-endpoint, each one counted.
import { describe, expect, it } from 'vitest';
import { loopbackDevices, until } from '../helpers/native-loopback.js';

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
