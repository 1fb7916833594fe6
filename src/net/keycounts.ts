/**
 * Counts per key that exist only while positive: how many connections a client party (an address, an IPv6 /64,
 * a /48) holds open now. One entry per key with a count above zero, so the map is bounded by what is counted
 * (the connections open). Shared by ClientBounds (the gateway and the metrics listener) and the DNS-over-TCP
 * listener.
 */
export class KeyCounts {
  private readonly counts = new Map<string, number>();

  /** The key's count now (0 when none). */
  of(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string): void {
    this.counts.set(key, this.of(key) + 1);
  }

  /** One less for `key`; its entry goes at zero. */
  remove(key: string): void {
    const n = this.of(key) - 1;
    if (n > 0) this.counts.set(key, n);
    else this.counts.delete(key);
  }
}
