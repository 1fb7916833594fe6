/**
 * Tunnel liveness of the nodes that host service backends.
 *
 * The device's probe monitor (native/src/wireguard/probe_monitor.h, on its TX
 * thread) sends one liveness probe through the WireGuard tunnel to each watched
 * node every PROBE_INTERVAL_MS (native probe frames, answered by the peer's RX
 * thread without JavaScript: docs/wire-format.md) and keeps each node's state.
 * A node is dead when a probe sent DEAD_AFTER_MS ago is still unanswered, so a
 * node that stops answering leaves service selection in about a second, long
 * before its etcd lease would expire. Counting from the oldest unanswered probe
 * (not from the last answer) keeps a stall of the prober, which also stops the
 * probes, from declaring healthy nodes dead: the prober is the TX thread now, so
 * a stall of our event loop no longer stops probes at all; it only delays when
 * we see a change (the monitor queues them). Answers also carry the round-trip
 * time; affinity "nearest" compares each node's windowed minimum of it (the
 * least RTT of the last 7.5..10 s, native/src/wireguard/rtt_window.h): the
 * path's delay, not the queueing of a loaded host, so a decrease shows at
 * once and an increase 7.5..10 s later. The monitor reports it again only
 * when it moved by more than 1/8 of the last reported value.
 *
 * A node that has not answered since we started watching it is not alive
 * yet: new flows go only to nodes that have shown they answer (the first
 * answer comes a handshake after the first probe).
 *
 * JavaScript tells the device the watched set only when it changes and, every
 * PROBE_INTERVAL_MS, drains the changes: O(1) per round at rest, O(changed
 * nodes) otherwise.
 */
import type { NativeDevice } from '../native/binding.js';

export const PROBE_INTERVAL_MS = 200;
export const DEAD_AFTER_MS = 1000;

export interface NodeLiveness {
  alive: boolean;
  /** Least probe round-trip time of the last 7.5..10 s in ms (within 1/8), if measured. */
  rttMs?: number;
}

/** What NodeHealth needs of the device (the native Device in the agent). */
export type ProbeDevice = Pick<NativeDevice, 'probeWatch' | 'probeChanges'>;

export class NodeHealth {
  /** Watched node id -> WireGuard peer id, and back. */
  private readonly watched = new Map<string, number>();
  private readonly nodeOf = new Map<number, string>();
  private readonly state = new Map<string, NodeLiveness>();
  private timer: NodeJS.Timeout | undefined;
  /** Bumped whenever what get() answers for some node changes (alive or RTT): readers compare it to skip unchanged rounds. */
  version = 0;

  /** onChange: called after a tick that changed any node's alive state, with those nodes' ids. */
  constructor(
    private readonly dev: ProbeDevice,
    private readonly onChange: (changed: string[]) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), PROBE_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** The nodes to probe, node id ("cluster/node") -> WireGuard peer id (one node per peer). O(nodes): call on change. */
  watch(nodes: Map<string, number>): void {
    const add: number[] = [];
    const remove: number[] = [];
    for (const [id, peer] of this.watched) {
      if (nodes.get(id) === peer) continue;
      remove.push(peer);
      this.watched.delete(id);
      this.nodeOf.delete(peer);
      this.state.delete(id);
      this.version++;
    }
    for (const [id, peer] of nodes) {
      if (this.watched.has(id)) continue;
      add.push(peer);
      this.watched.set(id, peer);
      this.nodeOf.set(peer, id);
      this.version++; // newly watched: not alive until it answers
    }
    if (add.length || remove.length) this.dev.probeWatch(add, remove);
  }

  /** Liveness of a watched node (not alive before its first answer); unwatched nodes (e.g. this one) count as alive. */
  get(id: string): NodeLiveness {
    return this.state.get(id) ?? { alive: !this.watched.has(id) };
  }

  /** Drains the device's changes: O(1) when nothing changed. */
  tick(): void {
    if (this.watched.size === 0) return;
    const { rows, lost } = this.dev.probeChanges();
    if (rows.length === 0) return;
    const changed: string[] = [];
    for (let i = 0; i + 2 < rows.length; i += 3) {
      const id = this.nodeOf.get(rows[i]!);
      if (id === undefined) continue; // unwatched since the round
      const alive = rows[i + 1] === 1;
      const rttUs = rows[i + 2]!;
      const prev = this.state.get(id);
      const next: NodeLiveness = rttUs ? { alive, rttMs: rttUs / 1000 } : { alive };
      if (lost && prev && prev.alive === next.alive && prev.rttMs === next.rttMs) continue;
      if ((prev?.alive ?? false) !== alive) changed.push(id);
      this.state.set(id, next);
      this.version++;
    }
    if (changed.length) this.onChange(changed);
  }
}
