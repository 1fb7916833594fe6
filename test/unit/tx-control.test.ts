// The TX thread's control round (native/src/wireguard/device_txctl.cc, Device::pack_control) over real Peer structs
// and a small arena (testhooks TxControl), so rounds overflow it at will with distinguishable staged packets. The
// device's arena is 8 MiB: before, a flush that did not fit lost the rest of that peer's staged packets uncounted,
// and a keepalive or probe that did not fit ended the round and lost every later control message of every peer.
// Oracle: the documented contract, modelled here in its own terms: each round takes the queued messages in order
// and packs whole messages while they fit (a keepalive or probe: a 64-byte slot; a staged packet: 16 + length + 32
// rounded up to 16), a flush sends its peer's queue oldest first; the first thing that does not fit ends the round
// and waits, in order, for the next one; a peer's queue holds at most 128 (the oldest dropped, counted); a packet
// larger than the whole arena is dropped and counted; nothing else is ever lost.
import { describe, expect, it } from 'vitest';
import { testhooks } from '../../src/native/testhooks.js';
import { prng } from '../helpers/prng.js';

type Kind = 'keepalive' | 'flush' | 'flush-or-keepalive' | 'probe';
interface Ctl { kind: Kind; peer: number; probe?: Buffer }
interface Sent { peer: number; data: Buffer }

const STAGED_MAX = 128;
const CTL_SLOT = 64;
const slot = (len: number) => (16 + len + 32 + 15) & ~15;

/** The contract: one round of the model (mutates it); what leaves, in arena order, and what it dropped. */
function modelRound(staged: Map<number, Buffer[]>, ctl: Ctl[], cap: number): { sent: Sent[]; dropped: number } {
  const sent: Sent[] = [];
  let used = 0;
  let dropped = 0;
  while (ctl.length > 0) {
    const c = ctl[0]!;
    const q = staged.get(c.peer);
    if (!q) {
      ctl.shift(); // the peer is gone
      continue;
    }
    const single = c.kind === 'keepalive' || c.kind === 'probe' || (c.kind === 'flush-or-keepalive' && q.length === 0);
    if (single) {
      if (used + CTL_SLOT > cap) break;
      sent.push({ peer: c.peer, data: c.kind === 'probe' ? c.probe! : Buffer.alloc(0) });
      used += CTL_SLOT;
      ctl.shift();
      continue;
    }
    while (q.length > 0 && (slot(q[0]!.length) > cap || used + slot(q[0]!.length) <= cap)) {
      const pkt = q.shift()!;
      if (slot(pkt.length) > cap) {
        dropped++;
        continue;
      }
      sent.push({ peer: c.peer, data: pkt });
      used += slot(pkt.length);
    }
    if (q.length > 0) break; // the rest waits, and so does every later message
    ctl.shift();
  }
  return { sent, dropped };
}

const hex = (s: Sent[]) => s.map((x) => `${x.peer}:${x.data.toString('hex')}`);

describe('TX control round (arena overflow)', () => {
  it.each([1, 2, 3, 4, 5, 6])('carries what does not fit over to the next rounds, in order, losing nothing (seed %i)', (seed) => {
    const rnd = prng(seed);
    const t = new testhooks.TxControl();
    const staged = new Map<number, Buffer[]>();
    const ctl: Ctl[] = [];
    const PEERS = [1, 2, 3, 4, 5];
    for (const id of PEERS) {
      t.addPeer(id);
      staged.set(id, []);
    }
    let seq = 0;
    let droppedModel = 0;
    let droppedNative = 0;
    let stagedTotal = 0;
    const stagedSent = new Set<number>();
    const stageSome = (n: number) => {
      for (let i = 0; i < n; i++) {
        const peer = PEERS[Math.floor(rnd() * PEERS.length)]!;
        const pkt = Buffer.alloc(8 + Math.floor(rnd() * 1800), seq & 0xff);
        pkt.writeUInt32BE(peer, 0); // byte 0 is 0: never a probe (0x20..) nor a keepalive (empty)
        pkt.writeUInt32BE(seq, 4);
        seq++;
        stagedTotal++;
        droppedNative += t.stage(peer, pkt);
        const q = staged.get(peer)!;
        q.push(pkt);
        if (q.length > STAGED_MAX) {
          q.shift();
          droppedModel++;
        }
      }
    };
    const queueSome = (n: number) => {
      const kinds: Kind[] = ['keepalive', 'flush', 'flush-or-keepalive', 'probe'];
      for (let i = 0; i < n; i++) {
        const peer = rnd() < 0.05 ? 9 : PEERS[Math.floor(rnd() * PEERS.length)]!; // 9: gone
        const kind = kinds[Math.floor(rnd() * kinds.length)]!;
        const probe = kind === 'probe' ? Buffer.alloc(16, 0x20 + (seq++ & 0x3f)) : undefined;
        if (probe) probe.writeUInt32BE(seq, 8);
        t.control(kind, peer, probe);
        ctl.push({ kind, peer, probe });
      }
    };
    stageSome(400);
    queueSome(60);
    const flushAll = () => {
      for (const id of PEERS) {
        t.control('flush', id);
        ctl.push({ kind: 'flush', peer: id });
      }
    };
    flushAll(); // everything staged leaves in the end
    let rounds = 0;
    let overflowed = 0;
    while (t.pending() > 0 && rounds < 5000) {
      const cap = [2048, 4096, 8192, 30000][Math.floor(rnd() * 4)]!;
      const before = ctl.length;
      const want = modelRound(staged, ctl, cap);
      const got = t.round(cap);
      if (ctl.length > 0) overflowed++;
      expect({ rounds, sent: hex(got.sent), done: got.done, dropped: got.dropped }).toEqual({
        rounds,
        sent: hex(want.sent),
        done: before - ctl.length,
        dropped: want.dropped,
      });
      droppedModel += want.dropped;
      droppedNative += got.dropped;
      for (const s of got.sent.filter((x) => x.data.length >= 8 && x.data[0] === 0)) {
        expect(stagedSent.has(s.data.readUInt32BE(4))).toBe(false); // each leaves once
        stagedSent.add(s.data.readUInt32BE(4));
      }
      rounds++;
      if (rnd() < 0.3) {
        // new arrivals between rounds: packets staged behind what was put back, more control messages
        stageSome(Math.floor(rnd() * 40));
        queueSome(Math.floor(rnd() * 6));
        flushAll();
      }
    }
    expect({ pending: t.pending(), model: ctl.length, droppedNative }).toEqual({ pending: 0, model: 0, droppedNative: droppedModel });
    for (const id of PEERS) expect({ id, left: t.staged(id).length }).toEqual({ id, left: 0 });
    expect(overflowed).toBeGreaterThan(5); // the rounds did overflow the arena
    expect(stagedSent.size + droppedModel).toBe(stagedTotal); // every staged packet left or was counted
  });

  it('sends a keepalive queued after an overflowing flush, and the flush whole, oldest first', () => {
    const t = new testhooks.TxControl();
    t.addPeer(1);
    t.addPeer(2);
    const pkts = Array.from({ length: 100 }, (_, i) => Buffer.alloc(1000, i));
    for (const p of pkts) expect(t.stage(1, p)).toBe(0);
    t.control('flush', 1);
    t.control('keepalive', 2);
    const cap = 16 * slot(1000); // 16 packets a round
    const out: Sent[] = [];
    for (let r = 0; r < 10 && t.pending() > 0; r++) {
      const got = t.round(cap);
      expect(got.dropped).toBe(0);
      out.push(...got.sent);
    }
    expect(t.pending()).toBe(0);
    expect(hex(out)).toEqual(hex([...pkts.map((data) => ({ peer: 1, data })), { peer: 2, data: Buffer.alloc(0) }]));
  });

  it('keeps a keepalive or probe that does not fit, and every message after it, for the next round', () => {
    const t = new testhooks.TxControl();
    for (const id of [1, 2, 3]) t.addPeer(id);
    const pkt = Buffer.alloc(1000, 1);
    const probe = Buffer.alloc(16, 0x20);
    t.stage(1, pkt);
    t.control('flush', 1);
    t.control('keepalive', 2);
    t.control('probe', 3, probe);
    t.control('keepalive', 1);
    const first = t.round(slot(1000) + CTL_SLOT + 32); // the packet and one slot: not the probe
    expect({ sent: hex(first.sent), done: first.done, pending: t.pending() }).toEqual({
      sent: hex([{ peer: 1, data: pkt }, { peer: 2, data: Buffer.alloc(0) }]),
      done: 2,
      pending: 2,
    });
    const second = t.round(slot(1000));
    expect({ sent: hex(second.sent), pending: t.pending() }).toEqual({
      sent: hex([{ peer: 3, data: probe }, { peer: 1, data: Buffer.alloc(0) }]),
      pending: 0,
    });
  });

  it('puts unsent packets back in front, keeps the newest 128 and counts the rest', () => {
    const t = new testhooks.TxControl();
    t.addPeer(1);
    const pkt = (i: number) => Buffer.from([i >> 8, i & 0xff]);
    for (let i = 0; i < 100; i++) t.stage(1, pkt(1000 + i));
    const back = Array.from({ length: 50 }, (_, i) => pkt(i)); // older than the 100
    expect(t.unstage(1, back)).toBe(22);
    const want = [...back.slice(22), ...Array.from({ length: 100 }, (_, i) => pkt(1000 + i))];
    expect(t.staged(1).map((b) => b.toString('hex'))).toEqual(want.map((b) => b.toString('hex')));
    expect(t.stage(1, pkt(2000))).toBe(1); // full: the oldest goes
    expect(t.staged(1)[0]!.toString('hex')).toBe(pkt(23).toString('hex'));
  });

  it('drops and counts a staged packet larger than the whole arena instead of carrying it forever', () => {
    const t = new testhooks.TxControl();
    t.addPeer(1);
    t.stage(1, Buffer.alloc(600, 1));
    t.stage(1, Buffer.alloc(10, 2));
    t.control('flush', 1);
    const got = t.round(512);
    expect({ sent: hex(got.sent), dropped: got.dropped, pending: t.pending() }).toEqual({
      sent: hex([{ peer: 1, data: Buffer.alloc(10, 2) }]),
      dropped: 1,
      pending: 0,
    });
  });
});
