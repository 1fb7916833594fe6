/**
 * Per-source query bound of the DNS servers (the node's service DNS and the
 * gateway DNS entry point share it through DnsServer): a token bucket per
 * source, `ratePerS` queries a second with bursts of `burst`, in a table of
 * at most `maxSources` sources, kept as two generations of maxSources/2: a
 * source not seen during two generations is forgotten (a flooding source is
 * always recent, so it keeps its empty bucket; a forgotten source comes back
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

/**
 * gateway-dns's second bound, per IPv6 /48 (one customer's site: RFC 6177
 * assigns /48s to sites), checked with the /64 one: 8 x a /64's figures,
 * 1600 q/s with bursts of 3200, so a site with up to 8 subnets resolving at
 * a /64's full rate at once is not limited, and a site cycling through its
 * 65 536 /64s gets 1600 q/s in all instead of 65 536 x 200. 16384 /48s
 * (~2.5 MiB at most).
 */
export const DNS_PREFIX_LIMITS: SourceLimits = { ratePerS: 1600, burst: 3200, maxSources: 16384 };

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill, ms. */
  at: number;
}

export class SourceLimiter {
  /**
   * Two generations instead of one map in last-seen order: deleting and
   * re-inserting on every hit leaves deleted slots at the front of V8's
   * ordered Map, and evicting the oldest then walks them (O(table) per new
   * source: ~9 µs at 16384 sources). A source is looked up in both; a hit in
   * `old` is copied to `current` (old's copy is never read again); when
   * `current` holds maxSources/2, `old` is dropped whole and `current` becomes
   * `old`. O(1) amortised, no delete per hit; at most maxSources entries.
   */
  private current = new Map<string, Bucket>();
  private old = new Map<string, Bucket>();
  /** Entries of `old` copied to `current` (not forgotten when `old` is dropped). */
  private promoted = 0;
  /** Sources forgotten because the table was full. */
  evicted = 0;

  constructor(readonly limits: SourceLimits = DNS_SOURCE_LIMITS) {}

  /** Sources in the table now (≤ maxSources; a source promoted from the old generation counts once). */
  get size(): number {
    return this.current.size + this.old.size - this.promoted;
  }

  /**
   * Takes one token of `source`'s bucket: true when it had one (answer the
   * query), false when the source is over its quota (drop it). `nowMs` is a
   * monotonic clock in ms (performance.now()).
   */
  allow(source: string, nowMs: number): boolean {
    const b = this.refilled(source, nowMs);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /**
   * Whether `source` has a token now, without taking it: with take(), a query
   * checked against two buckets (DnsServer's prefix bound) costs a token of
   * both or of neither.
   */
  ready(source: string, nowMs: number): boolean {
    return this.refilled(source, nowMs).tokens >= 1;
  }

  /** Takes the token ready() just saw (same source, no other call between). */
  take(source: string): void {
    const b = this.current.get(source);
    if (b && b.tokens >= 1) b.tokens -= 1;
  }

  /** `source`'s bucket, refilled to nowMs, in the current generation. */
  private refilled(source: string, nowMs: number): Bucket {
    const { ratePerS, burst, maxSources } = this.limits;
    let b = this.current.get(source);
    if (!b) {
      b = this.old.get(source);
      if (b) this.promoted++;
      else b = { tokens: burst, at: nowMs };
      if (this.current.size >= Math.max(1, maxSources >> 1)) this.rotate();
      this.current.set(source, b);
    }
    b.tokens = Math.min(burst, b.tokens + (Math.max(0, nowMs - b.at) * ratePerS) / 1000);
    b.at = nowMs;
    return b;
  }

  /** Forgets the old generation (the sources not seen since it was current). */
  private rotate(): void {
    this.evicted += this.old.size - this.promoted;
    this.old = this.current;
    this.current = new Map();
    this.promoted = 0;
  }
}
