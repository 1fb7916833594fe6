// The TX thread's memory after a control round (native/src/wireguard/tx_scratch.h). A file of its own: vitest runs
// each file in a process of its own, and glibc's counts are the process's, so no other test's devices (freed when
// V8 collects them) are in them.
import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { native } from '../../src/native/binding.js';
import { loopbackDevices, until } from '../helpers/native-loopback.js';

const open = loopbackDevices();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('TX thread scratch after a control round', () => {
  // Issue 16, found in s33: the TX thread's per-batch vectors (the round's segments and control messages, the peer
  // index) kept the room of the largest round for the thread's life: 8.7 MiB after one probe round over 120,000
  // peers here, before the window rule (main 38da438). Now a size not seen for 2–4 s is freed at the loop's next
  // turn (tx_scratch.h), down to the floor of 4,096 entries a vector. Oracle: glibc's bytes in use (mallinfo2 over
  // every arena, and its own mappings) once the round is over and its peers gone, against before the peers came,
  // read until it is back within the bound (10 s at most: main's never is). The peers have no endpoint: each probe
  // is counted (drop_no_endpoint) and dropped, so the send's vectors are not exercised here.
  it('after a probe round over 120,000 peers the TX thread keeps no more than its floor of room (< 4 MiB)', { timeout: 60_000 }, async () => {
    const d = open();
    // (a vector past glibc's mmap threshold is a mapping of its own, counted apart)
    const inUse = () => {
      const m = native.mallocInfo();
      return m && m.inUseBytes + m.mmapBytes;
    };
    const counted = () => d.counters().drop_no_endpoint ?? 0;
    // both packet threads in their loops, their buffers made (TX's 8 MiB arena, RX's 4 MiB), before the first
    // reading: RX has counted a stray datagram, TX a round of one peer
    const sock = createSocket('udp4');
    sock.send(Buffer.from('not wireguard'), d.port, '127.0.0.1', () => sock.close());
    d.upsertPeer(1);
    d.probeWatch([1], []);
    await until(() => counted() >= 1 && (d.counters().drop_not_wireguard ?? 0) >= 1);
    d.probeWatch([], [1]);
    d.removePeer(1);
    expect(counted()).toBeGreaterThanOrEqual(1);
    const before = inUse();
    if (!before) return; // not glibc ≥ 2.33: nothing to read
    const N = 120_000;
    const ids = Array.from({ length: N }, (_, i) => i + 2);
    for (const id of ids) d.upsertPeer(id);
    d.probeWatch(ids, []);
    await until(() => counted() >= N + 1);
    expect(counted()).toBeGreaterThanOrEqual(N + 1);
    d.probeWatch([], ids);
    for (const id of ids) d.removePeer(id);
    // the rounds under way end (the count stops moving: nothing is watched now), then the windows pass
    for (let last = -1, now = counted(); now !== last; now = counted()) {
      last = now;
      await sleep(100);
    }
    const bound = 4 * 2 ** 20;
    for (let t = 0; t < 100 && inUse()! - before >= bound; t++) await sleep(100);
    const grown = inUse()! - before;
    expect(grown, `${(grown / 2 ** 20).toFixed(1)} MiB still in use`).toBeLessThan(bound);
  });
});
