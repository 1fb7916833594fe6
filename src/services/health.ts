/**
 * Tunnel liveness of the nodes that host service backends.
 *
 * Every PROBE_INTERVAL_MS the agent sends one liveness probe through the
 * WireGuard tunnel to each watched node (native probe frames, answered by the
 * peer's RX thread without JavaScript: docs/wire-format.md). A node is dead
 * when a probe sent DEAD_AFTER_MS ago is still unanswered, so a node that
 * stops answering leaves service selection in about a second, long before its
 * etcd lease would expire. Counting from the oldest unanswered probe (not from
 * the last answer) keeps a stall of our own event loop, which also stops the
 * probes, from declaring healthy nodes dead. Answers also carry the
 * round-trip time that affinity "nearest" compares.
 *
 * A node that has not answered since we started watching it is not alive
 * yet: new flows go only to nodes that have shown they answer (the first
 * answer comes a handshake after the first probe).
 */
import type { NativeDevice } from '../native/binding.js';

export const PROBE_INTERVAL_MS = 200;
export const DEAD_AFTER_MS = 1000;

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
  /** since: when we started watching; unanswered: when the oldest probe sent after the last answer went out. */
  private readonly watched = new Map<string, { peer: number; since: number; unanswered?: number }>();
  private readonly state = new Map<string, NodeLiveness>();
  private timer: NodeJS.Timeout | undefined;
  /** Bumped whenever what get() answers for some node changes (alive or RTT): readers compare it to skip unchanged rounds. */
  version = 0;

  /**
   * now: the device's monotonic clock (ms), the clock of the native
   * lastProbeReplyMs; onChange: called after a tick that changed any node's
   * alive state, with those nodes' ids.
   */
  constructor(
    private readonly dev: ProbeDevice,
    private readonly now: () => number,
    private readonly onChange: (changed: string[]) => void,
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
      if (!w) this.version++; // newly watched: not alive until it answers
      if (!w || w.peer !== peer) this.watched.set(id, { peer, since: now });
    }
    for (const id of [...this.watched.keys()]) {
      if (!nodes.has(id)) {
        this.watched.delete(id);
        this.state.delete(id);
        this.version++;
      }
    }
  }

  /** Liveness of a watched node (not alive before its first answer); unwatched nodes (e.g. this one) count as alive. */
  get(id: string): NodeLiveness {
    return this.state.get(id) ?? { alive: !this.watched.has(id) };
  }

  tick(): void {
    if (this.watched.size === 0) return;
    const stats = new Map(this.dev.peerStats().map((s) => [s.id, s]));
    const now = this.now();
    const changed: string[] = [];
    for (const [id, w] of this.watched) {
      const s = stats.get(w.peer);
      const last = s?.lastProbeReplyMs ?? 0;
      if (w.unanswered !== undefined && last >= w.unanswered) w.unanswered = undefined; // answered since
      const overdue = w.unanswered !== undefined && now - w.unanswered > DEAD_AFTER_MS;
      const alive = last >= w.since && !overdue;
      const prev = this.state.get(id);
      const next: NodeLiveness = { alive, ...(s?.probeRttUs ? { rttMs: s.probeRttUs / 1000 } : {}), ...(last ? { lastReplyAgoMs: now - last } : {}) };
      if (!prev || prev.alive !== alive) changed.push(id);
      if (!prev || prev.alive !== alive || prev.rttMs !== next.rttMs) this.version++;
      this.state.set(id, next);
    }
    for (const w of this.watched.values()) w.unanswered ??= now;
    this.dev.probe([...this.watched.values()].map((w) => w.peer));
    if (changed.length) this.onChange(changed);
  }
}
