/**
 * Tunnel liveness of the nodes that host service backends.
 *
 * Every PROBE_INTERVAL_MS the agent sends one liveness probe through the
 * WireGuard tunnel to each watched node (native probe frames, answered by the
 * peer's RX thread without JavaScript: docs/wire-format.md). A node is dead
 * when no answer came for DEAD_AFTER_MS while probes were going out, so a
 * node that stops answering leaves service selection in about a second, long
 * before its etcd lease would expire. Answers also carry the round-trip time
 * that affinity "nearest" compares.
 *
 * A node just added gets STARTUP_GRACE_MS before it can be called dead: the
 * first probe has to wait for a handshake.
 */
import type { NativeDevice } from '../native/binding.js';

export const PROBE_INTERVAL_MS = 200;
export const DEAD_AFTER_MS = 1000;
export const STARTUP_GRACE_MS = 3000;

export interface NodeLiveness {
  alive: boolean;
  /** Smoothed round-trip time in ms, if measured. */
  rttMs?: number;
  /** ms since the last answer, if any. */
  lastReplyAgoMs?: number;
}

/** What NodeHealth needs of the device (the native Device in the agent). */
export type ProbeDevice = Pick<NativeDevice, 'probe' | 'peerStats'>;

export class NodeHealth {
  private readonly watched = new Map<string, { peer: number; since: number }>();
  private readonly state = new Map<string, NodeLiveness>();
  private timer: NodeJS.Timeout | undefined;

  /**
   * now: the device's monotonic clock (ms), the clock of the native
   * lastProbeReplyMs; onChange: called after a tick that changed any node's
   * alive state.
   */
  constructor(
    private readonly dev: ProbeDevice,
    private readonly now: () => number,
    private readonly onChange: () => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), PROBE_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** The nodes to probe, node id ("cluster/node") -> WireGuard peer id. */
  watch(nodes: Map<string, number>): void {
    const now = this.now();
    for (const [id, peer] of nodes) {
      const w = this.watched.get(id);
      if (!w || w.peer !== peer) this.watched.set(id, { peer, since: now });
    }
    for (const id of [...this.watched.keys()]) {
      if (!nodes.has(id)) {
        this.watched.delete(id);
        this.state.delete(id);
      }
    }
  }

  /** Liveness of a watched node; unwatched nodes (e.g. this one) count as alive. */
  get(id: string): NodeLiveness {
    return this.state.get(id) ?? { alive: true };
  }

  tick(): void {
    if (this.watched.size === 0) return;
    const stats = new Map(this.dev.peerStats().map((s) => [s.id, s]));
    const now = this.now();
    let changed = false;
    for (const [id, w] of this.watched) {
      const s = stats.get(w.peer);
      const last = s?.lastProbeReplyMs ?? 0;
      // answered since we started watching, within DEAD_AFTER_MS
      const answered = last >= w.since && now - last <= DEAD_AFTER_MS;
      const alive = answered || (last < w.since && now - w.since < STARTUP_GRACE_MS);
      const prev = this.state.get(id);
      const next: NodeLiveness = { alive, ...(s?.probeRttUs ? { rttMs: s.probeRttUs / 1000 } : {}), ...(last ? { lastReplyAgoMs: now - last } : {}) };
      if (!prev || prev.alive !== alive) changed = true;
      this.state.set(id, next);
    }
    this.dev.probe([...this.watched.values()].map((w) => w.peer));
    if (changed) this.onChange();
  }
}
