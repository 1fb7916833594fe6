// The RTT the probe monitor reports for affinity "nearest" is a windowed minimum (native/src/wireguard/rtt_window.h):
// spikes of a loaded host's own queueing leave it alone, an increase of the path delay shows 7.5..10 s later, a
// decrease at once. Checked on the native monitor (testhooks ProbeMonitor) and on the fake's mirror
// (src/native/fakeprobe.ts), and the two against each other on random sequences.
import { describe, expect, it } from 'vitest';
import { FakeProbeMonitor } from '../../src/native/fakeprobe.js';
import { RTT_WINDOW_MS, RTT_SLOT_MS } from '../../src/native/rttwindow.js';
import { testhooks } from '../../src/native/testhooks.js';

interface Answer {
  lastMs: number;
  rttUs: number;
  replies: number;
}
interface Monitor {
  watch(add: number[], remove: number[], now: number): void;
  round(now: number, answers: Map<number, Answer>): void;
  drain(): { rows: number[]; lost: boolean };
}

function native(): Monitor {
  const m = new testhooks.ProbeMonitor();
  return {
    watch: (add, remove, now) => m.watch(add, remove, now),
    round: (now, answers) => void m.round(now, [...answers].flatMap(([p, a]) => [p, a.lastMs, a.rttUs, a.replies])),
    drain: () => m.drain(),
  };
}

function fake(): Monitor {
  let clock = 0;
  let answers = new Map<number, Answer>();
  const m = new FakeProbeMonitor({
    now: () => clock,
    probe: () => {},
    reply: (p) => {
      const a = answers.get(p);
      return a && { lastProbeReplyMs: a.lastMs, probeRttUs: a.rttUs, probeReplies: a.replies };
    },
  });
  m.autoRound = false;
  return {
    watch: (add, remove, now) => ((clock = now), m.watch(add, remove)),
    round: (now, a) => ((clock = now), (answers = a), m.round()),
    drain: () => {
      const d = m.drain();
      return { rows: [...d.rows], lost: d.lost };
    },
  };
}

const START = 1_000_000; // a multiple of the slot: the window's phase is the same in every case

/** One peer answering every 200 ms round with rttAt(t) µs; the RTT reported after each round, [t - START, µs]. */
function reported(mon: Monitor, rttAt: (t: number) => number, ms: number): Array<[number, number]> {
  let replies = 0;
  let last = 0;
  const out: Array<[number, number]> = [];
  mon.watch([1], [], START);
  for (let t = START + 200; t <= START + ms; t += 200) {
    mon.round(t, new Map([[1, { lastMs: t - 1, rttUs: rttAt(t - START), replies: ++replies }]]));
    const { rows } = mon.drain();
    for (let i = 0; i + 2 < rows.length; i += 3) if (rows[i + 2]) last = rows[i + 2]!;
    out.push([t - START, last]);
  }
  return out;
}

const firstAt = (seen: Array<[number, number]>, from: number, rtt: number): number => seen.find(([t, r]) => t >= from && r === rtt)![0];

describe.each([
  ['native', native],
  ['fake', fake],
])('windowed-minimum RTT (%s monitor)', (_name, make) => {
  it('spikes (single probes and a 6 s run of them) keep the minimum', () => {
    const spiky = (t: number): number => (t >= 20_000 && t < 26_000 ? 80_000 : t % 1000 === 0 ? 60_000 : 1000);
    const seen = reported(make(), spiky, 40_000);
    expect(new Set(seen.map(([, r]) => r))).toEqual(new Set([1000]));
  });

  it('an increase of the path delay is seen after the window (7.5..10 s), not before', () => {
    const T = 20_000;
    const seen = reported(make(), (t) => (t < T ? 1000 : 41_000), 40_000);
    const after = firstAt(seen, T, 41_000) - T;
    expect(after).toBeGreaterThanOrEqual(RTT_WINDOW_MS - RTT_SLOT_MS);
    expect(after).toBeLessThanOrEqual(RTT_WINDOW_MS);
    expect(seen.filter(([t]) => t < T + after).every(([, r]) => r === 1000)).toBe(true);
  });

  it('a decrease is seen at its first sample', () => {
    const T = 20_000;
    const seen = reported(make(), (t) => (t < T ? 41_000 : 1000), 30_000);
    expect(firstAt(seen, T, 1000)).toBe(T);
  });

  it('a peer watched again starts a fresh window; answers from before watching are no samples', () => {
    const mon = make();
    mon.watch([1], [], START);
    mon.round(START + 200, new Map([[1, { lastMs: START + 100, rttUs: 500, replies: 1 }]]));
    expect(mon.drain().rows).toEqual([1, 1, 500]);
    mon.watch([1], [], START + 300); // again: the answer at +100 is from before
    mon.round(START + 400, new Map([[1, { lastMs: START + 100, rttUs: 500, replies: 1 }]]));
    expect(mon.drain().rows).toEqual([]);
    mon.round(START + 600, new Map([[1, { lastMs: START + 500, rttUs: 3000, replies: 2 }]]));
    expect(mon.drain().rows).toEqual([1, 1, 3000]); // not the 500 of the previous watch
  });
});

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

describe('fake probe monitor mirrors the native one', () => {
  it('same drained rows on random sequences of answers, spikes, silences, stalls and watch changes (seeded)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rand = rng(seed);
      const mons = [native(), fake()];
      const answers = new Map<number, Answer>();
      const base = new Map<number, number>();
      const watched = new Set<number>();
      let now = START + Math.floor(rand() * 5000);
      for (let step = 0; step < 600; step++) {
        const peer = 1 + Math.floor(rand() * 6);
        const op = rand();
        if (op < 0.05) {
          const add = watched.has(peer) && rand() < 0.5 ? [] : [peer];
          const remove = add.length ? [] : [peer];
          if (add.length) watched.add(peer);
          else watched.delete(peer);
          for (const m of mons) m.watch(add, remove, now);
        } else if (op < 0.1) {
          if (base.has(peer)) base.delete(peer);
          else base.set(peer, 200 + Math.floor(rand() * 50_000));
        } else if (op < 0.13) {
          now += 1000 + Math.floor(rand() * 12_000); // the prober stalled, or a long silence
        }
        now += 200;
        for (const [p, rtt] of base) {
          const n = rand() < 0.1 ? 2 : rand() < 0.1 ? 0 : 1; // answers since the last round
          if (!n) continue;
          const spike = rand() < 0.15 ? 20_000 + Math.floor(rand() * 100_000) : 0;
          const prev = answers.get(p)?.replies ?? 0;
          answers.set(p, { lastMs: now - 1 - Math.floor(rand() * 150), rttUs: rtt + spike, replies: prev + n });
        }
        for (const m of mons) m.round(now, new Map(answers));
        if (rand() < 0.6) {
          const [a, b] = mons.map((m) => m.drain());
          const triples = (r: number[]): string[] => Array.from({ length: r.length / 3 }, (_, i) => r.slice(3 * i, 3 * i + 3).join(',')).sort();
          expect({ lost: b!.lost, rows: triples(b!.rows) }, `seed ${seed} step ${step}`).toEqual({ lost: a!.lost, rows: triples(a!.rows) });
        }
      }
    }
  });
});
