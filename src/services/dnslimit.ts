/**
 * Per-source query bound of the DNS servers (the node's service DNS and the
 * gateway DNS entry point share it through DnsServer): a token bucket per
 * source, `ratePerS` queries a second with bursts of `burst`, in a table of
 * at most `maxSources` sources. The table is kept in last-seen order; a new
 * source when it is full evicts the one seen longest ago (a flooding source is
 * always recent, so it keeps its empty bucket; an evicted source comes back
 * with a full one, which is what an idle source would have had anyway).
 *
 * The check runs on the datagram's source as the kernel gives it, before the
 * query is decoded, so a query over quota costs a map lookup. A source that
 * forges addresses from more than `maxSources` sources is not bounded by
 * this (each forged address starts with a full bucket): pods cannot (the
 * pod guard, docs/security.md); the gateway DNS's clients on the open
 * network can, and that is left to the network's ingress filtering.
 */

export interface SourceLimits {
  /** Sustained queries a second per source. */
  ratePerS: number;
  /** Queries a source may send at once after being idle (the bucket's size). */
  burst: number;
  /** Sources remembered at once (the bound of the table; ~150 bytes each). */
  maxSources: number;
}

/**
 * 200 q/s per pod (a resolver with a 5-entry search list asks ~12 questions
 * per unknown name; services are few and cached by clients for the TTL) with
 * bursts of 400; 16384 sources (~2.5 MiB at most).
 */
export const DNS_SOURCE_LIMITS: SourceLimits = { ratePerS: 200, burst: 400, maxSources: 16384 };

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill, ms. */
  at: number;
}

export class SourceLimiter {
  private readonly buckets = new Map<string, Bucket>();
  /** Sources forgotten because the table was full. */
  evicted = 0;

  constructor(readonly limits: SourceLimits = DNS_SOURCE_LIMITS) {}

  /** Sources in the table now (≤ maxSources). */
  get size(): number {
    return this.buckets.size;
  }

  /**
   * Takes one token of `source`'s bucket: true when it had one (answer the
   * query), false when the source is over its quota (drop it). `nowMs` is a
   * monotonic clock in ms (performance.now()).
   */
  allow(source: string, nowMs: number): boolean {
    const { ratePerS, burst, maxSources } = this.limits;
    let b = this.buckets.get(source);
    if (b) {
      this.buckets.delete(source); // re-inserted below: the map's order is last-seen order
      b.tokens = Math.min(burst, b.tokens + (Math.max(0, nowMs - b.at) * ratePerS) / 1000);
      b.at = nowMs;
    } else {
      if (this.buckets.size >= maxSources) {
        const oldest = this.buckets.keys().next().value as string;
        this.buckets.delete(oldest);
        this.evicted++;
      }
      b = { tokens: burst, at: nowMs };
    }
    this.buckets.set(source, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
