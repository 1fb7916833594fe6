// Tunnel liveness (src/services/health.ts) against a fake device and clock:
// dead after an unanswered second, alive again on an answer, and a stall of
// our own event loop (no probes sent) is not taken for a dead node.
import { describe, expect, it } from 'vitest';
import { DEAD_AFTER_MS, NodeHealth } from '../../src/services/health.js';
import { FakeDevice } from '../../src/native/fakedevice.js';

function fake() {
  let now = 1_000_000;
  const answering = new Set<number>([1]);
  const dev = new FakeDevice({ now: () => now });
  for (const id of [1, 2]) dev.upsertPeer(id);
  dev.onProbe = (ids) => {
    for (const id of ids) if (answering.has(id)) dev.answerProbe(id, 300); // answered at once
  };
  let changes = 0;
  const h = new NodeHealth(dev, () => changes++);
  return { h, answering, advance: (ms: number) => (now += ms), changes: () => changes };
}

describe('node liveness', () => {
  it('a node that stops answering is dead after a second, and alive again when it answers', () => {
    const f = fake();
    f.h.watch(new Map([['c1/n2', 1]]));
    for (let i = 0; i < 10; i++) (f.h.tick(), f.advance(200));
    expect(f.h.get('c1/n2')).toMatchObject({ alive: true, rttMs: 0.3 });
    f.answering.delete(1);
    let deadAfter = 0;
    while (f.h.get('c1/n2').alive) (f.h.tick(), f.advance(200), (deadAfter += 200));
    expect(deadAfter).toBeGreaterThanOrEqual(DEAD_AFTER_MS);
    expect(deadAfter).toBeLessThanOrEqual(DEAD_AFTER_MS + 600);
    f.answering.add(1);
    f.h.tick(); // sends a probe, answered
    f.advance(200);
    f.h.tick();
    expect(f.h.get('c1/n2').alive).toBe(true);
  });

  it('our own stall (no probes for 3 s) does not make a healthy node dead', () => {
    const f = fake();
    f.h.watch(new Map([['c1/n2', 1]]));
    for (let i = 0; i < 5; i++) (f.h.tick(), f.advance(200));
    f.advance(3000); // the event loop was busy: no tick, no probe
    f.h.tick();
    expect(f.h.get('c1/n2').alive).toBe(true);
  });

  it('a node is used only once it has answered; unwatched nodes count as alive', () => {
    const f = fake();
    f.h.watch(new Map([['c2/n1', 2], ['c1/n2', 1]]));
    f.h.tick(); // first probes
    f.advance(200);
    f.h.tick();
    expect(f.h.get('c1/n2').alive).toBe(true); // answered the first probe
    expect(f.h.get('c2/n1').alive).toBe(false); // never answered: no new flows go there
    expect(f.h.get('c9/n9').alive).toBe(true);
    expect(f.changes()).toBeGreaterThan(0);
  });
});
