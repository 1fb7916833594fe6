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

type Kind = 'keepalive' | 'flush' | 'flush-or-keepalive' | 'probe' | 'reply';
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
    const single = c.kind === 'keepalive' || c.kind === 'probe' || c.kind === 'reply' || (c.kind === 'flush-or-keepalive' && q.length === 0);
    if (single) {
      if (used + CTL_SLOT > cap) break;
      sent.push({ peer: c.peer, data: c.probe ?? Buffer.alloc(0) });
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
      const kinds = ['keepalive', 'flush', 'flush-or-keepalive', 'probe'] as const;
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

// Probe replies: the one input of the queue a peer drives (each probe request it sends asks for one). Spec: a peer
// has at most 8 replies in the queue (an honest one sends one request per 200 ms probe round: 1, at most 2-3,
// outstanding); one more is refused and counted drop_probe_reply_quota; any reply is refused (drop_control_overflow)
// while the queue holds 114,688 messages of any kind (7 MiB of the 8 MiB arena in 64-byte slots: a many-peer
// flood, or our own probe round); a reply leaves the peer's count when a round packs it; a removed peer's replies are
// skipped. Oracle: that spec, modelled here (per-peer counts kept by the model from what it queued and sent).
const QUOTA = 8;
const QUEUE_MAX = (7 << 20) / CTL_SLOT; // 114,688
const REPLY = 0x21;

/** A reply to a probe request, distinguishable by (peer, n). */
const replyTo = (peer: number, n: number) => {
  const b = Buffer.alloc(16, 0);
  b[0] = REPLY;
  b.writeUInt32BE(peer, 4);
  b.writeUInt32BE(n, 8);
  return b;
};

/** The spec's answer to a reply for peer, given the model's queue and its per-peer counts (updated when queued). */
function modelReply(ctl: Ctl[], queued: Map<number, number>, peer: number, probe: Buffer): string {
  if ((queued.get(peer) ?? 0) >= QUOTA) return 'drop_probe_reply_quota';
  if (ctl.length >= QUEUE_MAX) return 'drop_control_overflow';
  ctl.push({ kind: 'reply', peer, probe });
  queued.set(peer, (queued.get(peer) ?? 0) + 1);
  return 'queued';
}

describe('TX control queue: probe replies (per-peer quota, the queue bound)', () => {
  it.each([1, 2, 3])('one peer flooding probe requests holds 8 slots; every other peer is answered (seed %i)', (seed) => {
    const rnd = prng(seed);
    const t = new testhooks.TxControl();
    const staged = new Map<number, Buffer[]>(); // the model's peers (no staged packets here)
    const ctl: Ctl[] = [];
    const queued = new Map<number, number>();
    const HONEST = [2, 3, 4, 5, 6];
    let flooder = 1;
    for (const id of [flooder, ...HONEST]) {
      t.addPeer(id);
      staged.set(id, []);
    }
    const tally = new Map<string, number>(); // `${honest|flooder}:${outcome}`, and sent / skipped
    const add = (k: string, v = 1) => tally.set(k, (tally.get(k) ?? 0) + v);
    const who = (peer: number) => (HONEST.includes(peer) ? 'honest' : 'flooder');
    let n = 0;
    const differ: string[] = []; // (200,000 calls: collected, compared once)
    const reply = (peer: number) => {
      const probe = replyTo(peer, n++);
      const want = modelReply(ctl, queued, peer, probe);
      const got = t.reply(peer, probe);
      if (got !== want && differ.length < 5) differ.push(`reply ${n} to ${peer}: ${got}, want ${want}`);
      add(`${who(peer)}:${want}`);
    };
    const round = (cap: number) => {
      const before = ctl.length;
      const want = modelRound(staged, ctl, cap);
      const got = t.round(cap);
      expect({ sent: hex(got.sent), done: got.done }).toEqual({ sent: hex(want.sent), done: before - ctl.length });
      for (const s of want.sent) {
        queued.set(s.peer, queued.get(s.peer)! - 1);
        add(`${who(s.peer)}:sent`);
      }
      for (const id of staged.keys()) expect({ id, queued: t.repliesQueued(id) }).toEqual({ id, queued: queued.get(id) ?? 0 });
    };
    // 200,000 requests from the flooder (far past the queue's bound), in bursts between rounds; each honest peer
    // sends one request now and then; some rounds are too small for the queue (the rest is carried over)
    let flood = 0;
    let removed = false;
    while (flood < 200_000) {
      const burst = Math.floor(rnd() * 20_000);
      for (let i = 0; i < burst; i++) reply(flooder);
      flood += burst;
      // an honest peer: one request per probe round, and ≤ 2 unanswered (the TX thread keeps up with it)
      for (const id of HONEST) if (rnd() < 0.5 && (queued.get(id) ?? 0) < 2) reply(id);
      round([CTL_SLOT * 3, CTL_SLOT * 10, 1 << 20][Math.floor(rnd() * 3)]!);
      if (!removed && flood > 100_000) {
        // the flooder removed with replies queued (a round too small to take them all first): they are skipped,
        // and a successor (a new id: ids are never reused) floods on
        for (let i = 0; i < QUOTA; i++) reply(flooder);
        flood += QUOTA;
        round(CTL_SLOT * 2);
        add('flooder:skipped', queued.get(flooder)!);
        t.removePeer(flooder);
        staged.delete(flooder);
        flooder = 7;
        t.addPeer(flooder);
        staged.set(flooder, []);
        removed = true;
      }
    }
    for (const id of HONEST) reply(id);
    for (let r = 0; r < 10 && t.pending() > 0; r++) round(CTL_SLOT * 4);
    expect({ differ, pending: t.pending(), model: ctl.length }).toEqual({ differ: [], pending: 0, model: 0 });
    for (const id of staged.keys()) expect({ id, queued: t.repliesQueued(id) }).toEqual({ id, queued: 0 }); // no leak
    const get = (k: string) => tally.get(k) ?? 0;
    expect({
      honestRefused: get('honest:drop_probe_reply_quota') + get('honest:drop_control_overflow'),
      honestSent: get('honest:sent'),
      floodOverflow: get('flooder:drop_control_overflow'),
      // every flood request answered, or refused and counted, or queued to the removed flooder and skipped
      floodAccounted: get('flooder:sent') + get('flooder:drop_probe_reply_quota') + get('flooder:skipped'),
      skippedWithinQuota: get('flooder:skipped') > 0 && get('flooder:skipped') <= QUOTA,
    }).toEqual({ honestRefused: 0, honestSent: get('honest:queued'), floodOverflow: 0, floodAccounted: flood, skippedWithinQuota: true });
    expect(get('flooder:drop_probe_reply_quota')).toBeGreaterThan(150_000);
  });

  it('refuses replies from many peers, each within its quota, past 114,688 queued messages of any kind', () => {
    const t = new testhooks.TxControl();
    const OWN = 100_000; // our own probe round (never refused)
    const PEERS = 20_000;
    for (let id = 1; id <= PEERS; id++) t.addPeer(id);
    for (let i = 0; i < OWN; i++) t.control('probe', 1 + (i % PEERS), replyTo(0, i).fill(0x20, 0, 1));
    const got = new Map<string, number>();
    for (let id = 1; id <= PEERS; id++) {
      const r = t.reply(id, replyTo(id, 0));
      got.set(r, (got.get(r) ?? 0) + 1);
    }
    const admitted = QUEUE_MAX - OWN; // 14,688
    expect(Object.fromEntries(got)).toEqual({ queued: admitted, drop_control_overflow: PEERS - admitted });
    // a refused reply holds no slot of its peer's quota; an admitted one holds one
    expect([t.repliesQueued(admitted), t.repliesQueued(admitted + 1)]).toEqual([1, 0]);
    // one round of the device's control budget (7 MiB) takes the whole queue: every count back to 0
    const r = t.round(7 << 20);
    expect({ done: r.done, sent: r.sent.length, pending: t.pending() }).toEqual({ done: QUEUE_MAX, sent: QUEUE_MAX, pending: 0 });
    let left = 0;
    for (let id = 1; id <= PEERS; id++) left += t.repliesQueued(id);
    expect(left).toBe(0);
    expect(t.reply(PEERS, replyTo(PEERS, 1))).toBe('queued'); // refused before, answered now
  });

  it('a reply left for a removed peer whose id comes back does not wrap the new peer\'s count', () => {
    // (never in the device: ids are not reused; the count saturates at 0 rather than refusing the peer forever)
    const t = new testhooks.TxControl();
    t.addPeer(1);
    for (let i = 0; i < 3; i++) expect(t.reply(1, replyTo(1, i))).toBe('queued');
    t.removePeer(1);
    t.addPeer(1);
    expect(t.reply(1, replyTo(1, 3))).toBe('queued');
    expect(t.round(1 << 20).sent.length).toBe(4); // the id is found again: all four go to the new peer
    expect(t.repliesQueued(1)).toBe(0);
    for (let i = 0; i < QUOTA; i++) expect(t.reply(1, replyTo(1, 10 + i))).toBe('queued');
    expect(t.reply(1, replyTo(1, 99))).toBe('drop_probe_reply_quota');
  });
});
