/**
 * The connections the metrics listener holds and which one a new connection evicts when there is no room
 * (MetricsLimits: maxConnections in all, maxPerPrefix per IPv6 /64). A new connection is never refused for want of
 * room: one of those held is reset instead, chosen so that a scraper (one connection, its request sent at once)
 * is the last to go:
 *   1. of the client (one address) holding the most connections;
 *   2. among those, one that has not sent its request head yet (silent) before one being answered: a silent one
 *      costs its holder nothing to reopen, an answer cut part-way costs a scrape;
 *   3. then the oldest.
 * When the new connection's /64 already holds maxPerPrefix, the victim is chosen the same way among that /64's
 * connections only, so one host with many addresses of its /64 cannot take the listener, and a scraper in a full
 * /64 still gets in.
 *
 * Generic over the connection (a Socket in the listener) so that the ranking is testable without sockets. Memory:
 * one entry per connection held (≤ maxConnections) and one count per client and per /64 with one open.
 */
import { KeyCounts } from './keycounts.js';

interface Slot {
  client: string;
  prefix: string;
  silent: boolean;
}

export class MetricsSlots<C> {
  // in accept order (oldest first): Map keeps insertion order
  private readonly live = new Map<C, Slot>();
  private readonly perClient = new KeyCounts();
  private readonly perPrefix = new KeyCounts();

  /** Throws RangeError when a bound is below 1 (no connection could ever be held). */
  constructor(private readonly limits: { maxConnections: number; maxPerPrefix: number }) {
    if (!(limits.maxConnections >= 1 && limits.maxPerPrefix >= 1)) throw new RangeError(`metrics listener bounds must be ≥ 1: ${JSON.stringify(limits)}`);
  }

  /** Connections held now. */
  get size(): number {
    return this.live.size;
  }

  /**
   * The connection to evict before one from `prefix` (its /64; an IPv4 client is its own) is admitted, or
   * undefined when there is room. Always one when there is no room (both bounds are ≥ 1).
   */
  victim(prefix: string): C | undefined {
    const prefixFull = this.perPrefix.of(prefix) >= this.limits.maxPerPrefix;
    if (!prefixFull && this.live.size < this.limits.maxConnections) return undefined;
    let best: [C, Slot] | undefined;
    for (const entry of this.live) {
      if (prefixFull && entry[1].prefix !== prefix) continue;
      if (!best || this.before(entry[1], best[1])) best = entry;
    }
    return best?.[0];
  }

  /** Whether `a` goes before `b` (b older): more held by its client, else silent before answered; ties keep b. */
  private before(a: Slot, b: Slot): boolean {
    const held = this.perClient.of(a.client) - this.perClient.of(b.client);
    if (held !== 0) return held > 0;
    return a.silent && !b.silent;
  }

  /** Holds `c` of `client` in `prefix`, silent until answered(c). */
  add(c: C, client: string, prefix: string): void {
    this.live.set(c, { client, prefix, silent: true });
    this.perClient.add(client);
    this.perPrefix.add(prefix);
  }

  /** `c` sent its request head: it is being answered. */
  answered(c: C): void {
    const slot = this.live.get(c);
    if (slot) slot.silent = false;
  }

  /** Whether `c` is held and has not sent its request head. */
  silent(c: C): boolean {
    return this.live.get(c)?.silent ?? false;
  }

  /** Lets `c` go (closed or evicted); a second call is a no-op. */
  remove(c: C): void {
    const slot = this.live.get(c);
    if (!slot) return;
    this.live.delete(c);
    this.perClient.remove(slot.client);
    this.perPrefix.remove(slot.prefix);
  }
}
