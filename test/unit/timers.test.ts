import { describe, expect, it } from 'vitest';
import {
  KEEPALIVE_TIMEOUT_MS,
  MAX_TIMER_HANDSHAKES,
  PeerTimers,
  REKEY_TIMEOUT_MS,
  ZERO_KEYS_AFTER_MS,
  type TimerAction,
  type TrafficTimes,
} from '../../src/wireguard/timers.js';

/** Runs the timers on a fake clock in 100 ms ticks and records what fired when. */
function run(timers: PeerTimers, traffic: TrafficTimes, fromMs: number, toMs: number, onAction?: (a: TimerAction, now: number) => void) {
  const fired: Array<[number, TimerAction]> = [];
  for (let now = fromMs; now <= toMs; now += 100) {
    for (const a of timers.tick(now, traffic)) {
      fired.push([now, a]);
      onAction?.(a, now);
    }
  }
  return fired;
}

const idle = (): TrafficTimes => ({ lastAuthSentMs: 0, lastAuthRecvMs: 0, sentUnansweredMs: 0, recvUnansweredMs: 0 });

describe('peer timers (fake clock)', () => {
  it('retransmits an unanswered initiation every RekeyTimeout (+jitter) and gives up after 20 initiations (90 s of attempts, as wireguard-go)', () => {
    const t = new PeerTimers(0, () => 200);
    t.handshakeInitiated(1000);
    const fired = run(t, idle(), 1000, 200_000, (a, now) => {
      if (a === 'retransmit-initiation') t.handshakeInitiated(now);
    });
    const retries = fired.filter(([, a]) => a === 'retransmit-initiation');
    // WireGuard (wireguard-go timers.go, the kernel's timers.c): retransmit while attempts <= MaxTimerHandshakes
    // (90 s / RekeyTimeout = 18), so 19 retransmissions after the first initiation, then give up at the 20th
    // expiry: 20 x (5 s + 200 ms jitter) after the first send. (Regression: we gave up one retransmission early.)
    expect(retries.length).toBe(MAX_TIMER_HANDSHAKES + 1);
    expect(retries[0]![0]).toBe(1000 + REKEY_TIMEOUT_MS + 200);
    const giveUp = fired.find(([, a]) => a === 'give-up');
    expect(giveUp![0]).toBe(1000 + 20 * (REKEY_TIMEOUT_MS + 200));
    // the give-up arms key zeroing 540 s later
    const zero = run(t, idle(), 200_100, giveUp![0] + ZERO_KEYS_AFTER_MS + 100).filter(([, a]) => a === 'zero-keys');
    expect(zero.length).toBe(1);
  });

  it('stops retransmitting when the handshake completes', () => {
    const t = new PeerTimers(0, () => 0);
    t.handshakeInitiated(0);
    t.handshakeComplete();
    expect(run(t, idle(), 0, 30_000)).toEqual([]);
  });

  it('sends a passive keepalive 10 s after unanswered data, once', () => {
    const t = new PeerTimers(0);
    const traffic = { ...idle(), recvUnansweredMs: 5_000, lastAuthRecvMs: 5_000 };
    const fired = run(t, traffic, 5_000, 40_000);
    expect(fired).toEqual([[5_000 + KEEPALIVE_TIMEOUT_MS, 'keepalive']]);
  });

  it('starts a new handshake 15 s after sent data goes unanswered', () => {
    const t = new PeerTimers(0);
    const traffic = { ...idle(), sentUnansweredMs: 2_000, lastAuthSentMs: 2_000 };
    const fired = run(t, traffic, 2_000, 60_000);
    expect(fired).toEqual([[2_000 + KEEPALIVE_TIMEOUT_MS + REKEY_TIMEOUT_MS, 'initiate']]);
  });

  it('sends persistent keepalives every interval of silence', () => {
    const t = new PeerTimers(0);
    t.persistentKeepaliveSet(25, 0);
    const traffic = idle();
    const fired = run(t, traffic, 0, 80_000, (a, now) => {
      if (a === 'keepalive') traffic.lastAuthSentMs = now;
    });
    expect(fired.map(([n]) => n)).toEqual([25_000, 50_000, 75_000]);
  });

  it('zeroes keys 540 s after the last session', () => {
    const t = new PeerTimers(0);
    t.sessionDerived(1_000);
    const fired = run(t, idle(), 1_000, 1_000 + ZERO_KEYS_AFTER_MS + 1_000);
    expect(fired).toEqual([[1_000 + ZERO_KEYS_AFTER_MS, 'zero-keys']]);
  });
});
