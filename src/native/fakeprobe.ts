/**
 * The probe monitor of FakeDevice: the same rules as the native one
 * (native/src/wireguard/probe_monitor.h) on the fake's clock, so NodeHealth
 * runs unchanged against the fake. The native device runs a round every
 * PROBE_ROUND_MS on its TX thread; the fake runs one round per probeChanges()
 * call (autoRound, the default) or when a test or benchmark calls round().
 */
import { RttWindow } from './rttwindow.js';

export const PROBE_ROUND_MS = 200;
export const PROBE_DEAD_AFTER_MS = 1000;
/** Changes kept for the next drain before the queue is dropped and the next drain is a full resync. */
export const PROBE_QUEUE_MAX = 65536;

/** An RTT (the windowed minimum, rttwindow.ts) is reported again only when it moved by more than 1/8 (12.5 %) of the last reported value. */
export function rttMoved(reported: number, rttUs: number): boolean {
  return Math.abs(rttUs - reported) * 8 > reported;
}

interface Watched {
  since: number;
  unanswered?: number;
  alive: boolean;
  /** Last reported. */
  rttUs: number;
  /** The answer count of the last sample taken. */
  replies: number;
  /** Answers since watching began. */
  window: RttWindow;
}

export interface ProbeSource {
  now(): number;
  /** Sends one probe to each peer. */
  probe(peerIds: number[]): void;
  /** Monotonic ms of the peer's last answer (0 = none), its RTT in µs and the answers counted so far. */
  reply(peer: number): { lastProbeReplyMs: number; probeRttUs: number; probeReplies: number } | undefined;
}

export class FakeProbeMonitor {
  private readonly watched = new Map<number, Watched>();
  /** Flat rows peer, alive (0/1), rttUs. */
  private queue: number[] = [];
  private lost = false;
  autoRound = true;
  /** Rows kept before the queue is dropped (a test lowers it to force the lost path). */
  queueMax = PROBE_QUEUE_MAX;

  constructor(private readonly src: ProbeSource) {}

  watch(add: readonly number[], remove: readonly number[]): void {
    for (const p of remove) this.watched.delete(p);
    const now = this.src.now();
    for (const p of add) this.watched.set(p, { since: now, alive: false, rttUs: 0, replies: 0, window: new RttWindow() });
    // queued rows of these peers belong to their previous watch (a peer watched again is not alive from an old answer)
    const gone = new Set([...add, ...remove]);
    if (gone.size && this.queue.length) this.queue = this.queue.filter((_, i, q) => !gone.has(q[i - (i % 3)]!));
  }

  /** One round of the device thread: evaluate every watched peer, queue the changes, probe them all. */
  round(): void {
    const now = this.src.now();
    for (const [peer, w] of this.watched) {
      const r = this.src.reply(peer);
      const last = r?.lastProbeReplyMs ?? 0;
      if (w.unanswered !== undefined && last >= w.unanswered) w.unanswered = undefined;
      const overdue = w.unanswered !== undefined && now - w.unanswered > PROBE_DEAD_AFTER_MS;
      const answered = last > 0 && last >= w.since; // since watching began
      const alive = answered && !overdue;
      // several answers between two rounds give one sample, the newest (probe_monitor.h)
      if (r && answered && r.probeReplies !== w.replies && r.probeRttUs) {
        w.replies = r.probeReplies;
        w.window.add(now, r.probeRttUs);
      }
      const rtt = w.window.min(now);
      if (alive !== w.alive || (rtt && (!w.rttUs || rttMoved(w.rttUs, rtt)))) {
        w.alive = alive;
        if (rtt) w.rttUs = rtt;
        if (this.queue.length / 3 >= this.queueMax) (this.lost = true), (this.queue = []);
        if (!this.lost) this.queue.push(peer, alive ? 1 : 0, w.rttUs);
      }
      w.unanswered ??= now;
    }
    if (this.watched.size) this.src.probe([...this.watched.keys()]);
  }

  drain(): { rows: Uint32Array; lost: boolean } {
    if (this.autoRound) this.round();
    if (this.lost) {
      this.lost = false;
      this.queue = [];
      const rows: number[] = [];
      for (const [peer, w] of this.watched) rows.push(peer, w.alive ? 1 : 0, w.rttUs);
      return { rows: Uint32Array.from(rows), lost: true };
    }
    const rows = Uint32Array.from(this.queue);
    this.queue = [];
    return { rows, lost: false };
  }
}
