/**
 * The exposition text of a metrics listener, rendered at most once per interval. A render (prom-client's
 * registry.metrics() with the collect callbacks) costs 4-16 ms of the process's one JavaScript thread, which also
 * runs DNS, the gateway, etcd watches and lease keepalives; rendered per request, any client that reaches the
 * listener could keep that thread busy (one connection pipelining GET /metrics: a 10 ms timer fired 48 times in
 * 5 s instead of ~480). prom-client 15 has no such cache (registry.metrics() renders every call).
 *
 * A request while a render runs shares it; a request within minIntervalMs of the last render's end gets its
 * outcome (the text, or the failure: a failing render is not retried faster than a good one). So renders start at
 * least minIntervalMs apart, and the thread spends at most render / (render + minIntervalMs) of its time on them
 * whatever the request rate. The text is at most minIntervalMs + one render old: Prometheus scrapes every 15 s+.
 * A render still pending after maxPendingMs (a collect callback that never settles) is given up on (`stalled`):
 * the next request starts a new one, so one stuck render cannot stall the listener for good; the requests that
 * shared the stuck one are closed by the listener's deadline.
 *
 * body() is the same render encoded once (UTF-8): every answer of a render writes that one Buffer, so clients
 * reading slowly hold references to at most one copy per render still being sent, not one copy each.
 */

/** What a scrape reads: the exposition text (one render, one call) and its content type (prom-client's registry). */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

/** The default interval between renders, ms (METRICS_LIMITS.renderIntervalMs). */
export const RENDER_INTERVAL_MS = 1000;

/** How long a render may stay pending before the next request starts another, ms. */
export const RENDER_PENDING_MS = 10_000;

export class ExpositionCache implements MetricsSource {
  /** Renders started since the start (metrics listener tests count them). */
  renders = 0;
  /** Renders given up on after maxPendingMs without settling. */
  stalled = 0;
  private last: Promise<string> | undefined;
  /** The last render's text as bytes, encoded once (body()). */
  private lastBody: Promise<Buffer> | undefined;
  /** When the last render settled (performance.now() ms); undefined while one runs or before the first. */
  private settledAt: number | undefined;
  /** When the last render started (performance.now() ms). */
  private startedAt = 0;

  constructor(
    private readonly source: MetricsSource,
    private readonly minIntervalMs = RENDER_INTERVAL_MS,
    private readonly now = () => performance.now(),
    private readonly maxPendingMs = RENDER_PENDING_MS,
  ) {}

  get contentType(): string {
    return this.source.contentType;
  }

  /** The last render's text (or its error) when it is fresh enough or running for < maxPendingMs; else a new render's. */
  text(): Promise<string> {
    const now = this.now();
    if (this.last && this.settledAt === undefined && now - this.startedAt < this.maxPendingMs) return this.last;
    if (this.last && this.settledAt !== undefined && now - this.settledAt < this.minIntervalMs) return this.last;
    if (this.last && this.settledAt === undefined) this.stalled++;
    this.renders++;
    this.settledAt = undefined;
    this.startedAt = now;
    const p = this.source.text();
    // a stalled render settling late says nothing of the one that replaced it
    const settle = () => {
      if (this.last === p) this.settledAt = this.now();
    };
    p.then(settle, settle);
    this.last = p;
    this.lastBody = p.then((t) => Buffer.from(t));
    // its failure is reported to the callers of body(), if any; none is not an unhandled rejection
    this.lastBody.catch(() => undefined);
    return p;
  }

  /** text() as UTF-8 bytes: one Buffer per render, shared by every caller (do not modify it); rejects like text(). */
  body(): Promise<Buffer> {
    void this.text().catch(() => undefined);
    return this.lastBody!;
  }
}
