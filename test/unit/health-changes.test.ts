// NodeHealth drains only changes from the device's probe monitor
// (src/native/fakeprobe.ts, the rules of native/src/wireguard/probe_monitor.h).
// Reference: the former full scan, every watched node evaluated from the
// peers' last answers each round (dead when a probe sent DEAD_AFTER_MS ago is
// unanswered; not alive before the first answer after watching began; the RTT
// the minimum of every sample since the window's oldest slot began), on
// seeded random sequences of answers, silences, RTT moves, watch changes,
// stalls of the prober and drains that skip rounds or overflow the queue.
import { describe, expect, it } from 'vitest';
import { DEAD_AFTER_MS, NodeHealth, PROBE_INTERVAL_MS } from '../../src/services/health.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { RTT_SLOT_MS, RTT_WINDOW_SLOTS } from '../../src/native/rttwindow.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

interface RefPeer {
  since: number;
  unanswered?: number;
  alive: boolean;
  /** The RTT samples the rounds took since watching began: [round ms, µs] (one per round that saw a new answer). */
  samples: Array<[number, number]>;
  replies: number;
  /** The least sample since the window's oldest slot began at the last round (rtt_window.h), 0 = none. */
  rttUs: number;
}
const newRef = (since: number): RefPeer => ({ since, alive: false, samples: [], replies: 0, rttUs: 0 });

/** The full-scan reference: per watched peer, when watching began, the oldest unanswered probe and every RTT sample. */
class Reference {
  readonly watched = new Map<number, RefPeer>();
  constructor(private readonly dev: FakeDevice) {}
  round(now: number): void {
    const from = (Math.floor(now / RTT_SLOT_MS) - (RTT_WINDOW_SLOTS - 1)) * RTT_SLOT_MS;
    for (const [peer, w] of this.watched) {
      const { lastProbeReplyMs: last, probeRttUs, probeReplies } = this.dev.peers.get(peer)!.stats;
      if (probeReplies !== w.replies && last >= w.since && last > 0) (w.replies = probeReplies), w.samples.push([now, probeRttUs]);
      const inWindow = w.samples.filter(([t]) => t >= from).map(([, r]) => r);
      w.rttUs = inWindow.length ? Math.min(...inWindow) : 0;
      if (w.unanswered !== undefined && last >= w.unanswered) w.unanswered = undefined;
      w.alive = last > 0 && last >= w.since && !(w.unanswered !== undefined && now - w.unanswered > DEAD_AFTER_MS);
      w.unanswered ??= now;
    }
  }
}

function run(seed: number, steps: number): { drains: number; emptyDrains: number; lost: number } {
  const rand = rng(seed);
  let now = 5_000_000;
  const dev = new FakeDevice({ now: () => now });
  dev.probeMonitor.autoRound = false;
  if (seed % 3 === 0) dev.probeMonitor.queueMax = 1; // forces full resyncs
  const drainP = seed % 2 ? 0.7 : 0.3; // drains that skip rounds
  const PEERS = 12;
  const rtt = new Map<number, number>(); // answering peers -> RTT µs
  for (let p = 1; p <= PEERS; p++) dev.upsertPeer(p);
  dev.onProbe = (ids) => {
    for (const id of ids) if (rtt.has(id)) dev.answerProbe(id, rtt.get(id)!);
  };
  const ref = new Reference(dev);
  let changedCalls = 0;
  const h = new NodeHealth(dev, () => changedCalls++);
  const nodes = new Map<string, number>();
  let drains = 0;
  let emptyDrains = 0;
  let lost = 0;
  const origDrain = dev.probeChanges;
  const probeChanges = (): ReturnType<FakeDevice['probeChanges']> => {
    const r = origDrain();
    if (r.lost) lost++;
    if (r.rows.length === 0) emptyDrains++;
    return r;
  };
  (dev as { probeChanges: FakeDevice['probeChanges'] }).probeChanges = probeChanges;
  for (let step = 0; step < steps; step++) {
    const op = rand();
    const peer = 1 + Math.floor(rand() * PEERS);
    if (op < 0.12) {
      // watch or unwatch one node
      const id = `c${peer % 3}/n${peer}`;
      const was = nodes.has(id);
      const again = was && rand() < 0.5; // unwatched and watched again before a drain: starts afresh
      if (was) (nodes.delete(id), ref.watched.delete(peer), h.watch(new Map(nodes)));
      if (again || !was) (nodes.set(id, peer), ref.watched.set(peer, newRef(now)));
      h.watch(new Map(nodes));
    } else if (op < 0.2) {
      if (rtt.has(peer)) rtt.delete(peer); // falls silent
      else rtt.set(peer, 200 + Math.floor(rand() * 5000));
    } else if (op < 0.28 && rtt.has(peer)) {
      rtt.set(peer, Math.max(1, Math.round(rtt.get(peer)! * (0.8 + rand() * 0.4)))); // RTT moves a little or a lot
    } else if (op < 0.31) {
      now += 1000 + Math.floor(rand() * 3000); // the prober stalled: no round, no probe
    }
    // one round of the device thread, then (mostly) a drain
    now += PROBE_INTERVAL_MS;
    ref.round(now);
    dev.probeMonitor.round();
    if (rand() < drainP) {
      h.tick();
      drains++;
      for (const [id, p] of nodes) {
        const got = h.get(id);
        if (got.alive !== ref.watched.get(p)!.alive) expect.fail(`seed ${seed} step ${step} ${id}: alive ${got.alive}`);
        // the reported RTT is within 1/8 of the window's minimum at the last round (none reported: no sample yet;
        // a window left empty by a silence keeps the last one reported)
        const { rttUs: seen, samples } = ref.watched.get(p)!;
        const ok = got.rttMs !== undefined ? seen === 0 || Math.abs(got.rttMs * 1000 - seen) * 8 <= got.rttMs * 1000 : samples.length === 0;
        if (!ok) expect.fail(`seed ${seed} step ${step} ${id}: rtt ${got.rttMs} ms, seen ${seen} µs`);
      }
    }
  }
  return { drains, emptyDrains, lost };
}

describe('node liveness by change-only draining', () => {
  it('matches the full-scan reference on random sequences (seeded)', () => {
    let lost = 0;
    for (let seed = 1; seed <= 30; seed++) lost += run(seed, 400).lost;
    expect(lost).toBeGreaterThan(0); // the overflow -> full resync path ran
  });

  it('at rest a drain returns no rows', () => {
    let now = 1_000_000;
    const dev = new FakeDevice({ now: () => now });
    for (let p = 1; p <= 50; p++) dev.upsertPeer(p);
    dev.onProbe = (ids) => ids.forEach((id) => dev.answerProbe(id, 400));
    const h = new NodeHealth(dev, () => {});
    h.watch(new Map(Array.from({ length: 50 }, (_, i) => [`c1/n${i + 1}`, i + 1])));
    for (let i = 0; i < 5; i++) (h.tick(), (now += PROBE_INTERVAL_MS));
    const v = h.version;
    for (let i = 0; i < 20; i++) {
      dev.probeMonitor.round();
      now += PROBE_INTERVAL_MS;
      expect(dev.probeMonitor.drain().rows.length).toBe(0);
    }
    h.tick();
    expect(h.version).toBe(v);
    expect(h.get('c1/n7')).toEqual({ alive: true, rttMs: 0.4 });
    expect(h.get('c9/n99').alive).toBe(true); // unwatched
  });
});
