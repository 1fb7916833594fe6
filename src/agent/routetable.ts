/**
 * The TUN's routes to peers' CIDRs (RouteTable), reference-counted by the
 * peer reconciler (peers.ts) and written to the kernel by `ip -force -batch`
 * off the agent's thread: one batch in flight at a time, changes made
 * meanwhile coalesced into the next, failed lines retried from the desired
 * state (issue 16: no blocking spawn per reconcile pass).
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../log.js';
import { parsePrefix, type Prefix } from '../net/ip.js';
import { PrefixTrie } from '../net/prefixtrie.js';

/**
 * What one batch run reported: the 0-based indexes of the lines that failed,
 * each with the error text the runner printed for it. Lines not named applied.
 */
export interface BatchResult {
  failed: Map<number, string>;
}

/**
 * Runs `ip -batch` lines; resolves with the failed lines, rejects when the
 * run itself failed (no process, killed, unreadable answer): then every line
 * counts as failed.
 */
export type BatchRunner = (ops: string[]) => Promise<BatchResult>;

/** stderr kept of one batch (bytes): past it the answer is unreadable and every line counts as failed. */
const STDERR_CAP = 4 << 20;
/** ms an `ip -batch` run may take before it is killed (its batch then failed as a whole and is retried). */
const IP_TIMEOUT_MS = 30_000;

/**
 * `ip -force -batch` failures as line indexes (0-based) with their messages.
 * iproute2 prints a failing line's error, then `Command failed -:<line>` (1-based).
 */
export function parseBatchErrors(stderr: string, lines: number): Map<number, string> {
  const failed = new Map<number, string>();
  let msg: string[] = [];
  for (const l of stderr.split('\n')) {
    const m = /^Command failed -:(\d+)\s*$/.exec(l);
    if (!m) {
      if (l.trim()) msg.push(l.trim());
      continue;
    }
    const i = Number(m[1]) - 1;
    if (i >= 0 && i < lines) failed.set(i, msg.join('; ') || 'failed');
    msg = [];
  }
  return failed;
}

/**
 * The shipped runner: one `ip -force -batch -` process per batch, never waited
 * on by the thread; in network namespace `netns` (`ip -n`) if given, else ours.
 */
export function ipBatch(netns?: string): BatchRunner {
  return (ops) =>
    new Promise((resolve, reject) => {
      // -force: one failing line (a route already gone) must not stop the rest
      // a stuck ip is killed (then the batch failed as a whole): the agent's stop awaits the batch in flight
      const child = spawn('ip', [...(netns ? ['-n', netns] : []), '-force', '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'], timeout: IP_TIMEOUT_MS, killSignal: 'SIGKILL' });
      let stderr = '';
      let truncated = false;
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (stderr.length + d.length <= STDERR_CAP) stderr += d;
        else truncated = true;
      });
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (code === 0) return resolve({ failed: new Map() });
        // exit 1 after running every line is -force's "some lines failed"; anything else (a signal, an abort
        // mid-batch) may have left lines unrun that no error names: the batch failed as a whole
        const failed = parseBatchErrors(stderr, ops.length);
        if (signal !== null || code !== 1 || failed.size === 0 || truncated) return reject(new Error(`ip -batch exited with ${code ?? signal}: ${stderr.slice(0, 500).trim()}`));
        resolve({ failed });
      });
      child.stdin.on('error', () => {
        /* EPIPE when ip died early: its exit reports it */
      });
      child.stdin.end(ops.join('\n') + '\n');
    });
}

/** Claims on the TUN's routes, as the peer reconciler makes them (peers.ts). */
export interface RouteClaims {
  claim(routes: readonly string[]): void;
  release(routes: readonly string[]): void;
  /** Starts applying the changes since the last flush (asynchronous: see RouteTable.flushed()). */
  flush(): void;
  /** Whether some CIDR a peer claims now holds addr: O(address bits), whatever the number of peers. */
  covers(addr: Buffer): boolean;
}

/** Counters of the kernel writes (monotonic since start). */
export interface RouteTableStats {
  batches: number;
  ops: number;
  /** Lines that failed (each is retried from the desired state). */
  failedOps: number;
  /** Batches whose run failed as a whole (every line retried). */
  failedRuns: number;
}

interface Op {
  cidr: string;
  add: boolean;
}

/**
 * The TUN's routes: the CIDRs some peer claims (reference counts), so a CIDR
 * that moved from one peer to another in a pass (a relay handed over) stays
 * installed. Only CIDRs whose count changed are looked at on flush(), and they
 * go out as one batch (`run`, ipBatch() by default) without blocking the
 * thread. One batch is in flight at a time: flush() while one runs marks the
 * CIDRs touched meanwhile for the next batch, started when it ends (the pending
 * set is bounded by the CIDRs claimed or installed). A CIDR's installed bit
 * changes only for lines that applied; a failed line's CIDR goes back to the touched set, so
 * the next batch (the next pass, or a retry after `retryMs`, doubling to
 * `maxRetryMs`) recomputes it from the claims.
 *
 * A CIDR's books are a small integer, count × 2 + installed (claims ≤ peers ×
 * CIDRs per record, far below the 2^30 where `& ~1` would wrap): 3 (one claim,
 * installed) for nearly every pod CIDR at rest. Those have no entry in `books`:
 * the trie of claimed CIDRs, whose owner is the CIDR's own text, tells that the
 * CIDR is claimed (two texts of one prefix stay apart there, as in `books`), so
 * `booksOf` reads 3 for a CIDR the trie holds and `books` does not. Every other
 * non-zero value (1, 2, 4, 5, …) has an entry. Before s39 every CIDR claimed or
 * installed had an entry (s21peer had made one Map of a Map and a Set): ~29 B per
 * pod CIDR at 16,000 (issue 16). `books` is bounded by the CIDRs claimed or
 * installed, as before; at rest it holds the CIDRs claimed twice (a relay handed
 * over) or waiting for a line to apply.
 */
export class RouteTable implements RouteClaims {
  /**
   * Per CIDR claimed or installed but for those at 3 (see the class's comment): how many peers claim it × 2, + 1
   * when the kernel holds the route as far as our applied lines say (all peers' CIDRs point at the same device).
   * No entry: 3 when the trie holds the CIDR, else 0 (no claim, not installed).
   */
  private readonly books = new Map<string, number>();
  /** The CIDRs whose count changed (or whose line failed) since the last batch. */
  private readonly touched = new Set<string>();
  /**
   * CIDRs of a batch whose run failed as a whole (ip killed midway): some of
   * its lines may have applied, so the next batch writes them whatever
   * its installed bit says (replace is idempotent; a del of a route gone is ESRCH).
   */
  private readonly uncertain = new Set<string>();
  /** The claimed CIDRs (count > 0) by prefix, each owned by its text: for covers(), and booksOf's 3 (see above). */
  private readonly trie = new PrefixTrie<string>();
  private inFlight: Promise<void> | undefined;
  private inFlightOps = 0;
  /** flush() was called while a batch ran: start the next when it ends. */
  private again = false;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  private retryDelay: number;
  readonly stats: RouteTableStats = { batches: 0, ops: 0, failedOps: 0, failedRuns: 0 };

  constructor(
    private readonly tun: string,
    private readonly run: BatchRunner,
    private readonly log: Logger,
    private readonly opts: { retryMs?: number; maxRetryMs?: number } = {},
  ) {
    this.retryDelay = opts.retryMs ?? 1000;
  }

  /** A CIDR's books: count × 2 + installed. */
  private booksOf(r: string): number {
    const v = this.books.get(r);
    if (v !== undefined) return v;
    let p: Prefix;
    try {
      p = parsePrefix(r);
    } catch {
      // no claim holds a text that does not parse (claim throws on it): a release of one does nothing, as before s39
      return 0;
    }
    return this.trie.holds(p, r) ? 3 : 0;
  }

  /** Sets a CIDR's books; the trie must hold it already when `v` ≥ 2 (claim inserts it first). */
  private setBooks(r: string, v: number): void {
    if (v === 0 || v === 3) this.books.delete(r);
    else this.books.set(r, v);
  }

  claim(routes: readonly string[]): void {
    for (const r of routes) {
      const v = this.booksOf(r);
      if (v < 2) this.trie.insert(parsePrefix(r), r); // its first claim
      this.setBooks(r, v + 2);
      this.touched.add(r);
    }
  }

  release(routes: readonly string[]): void {
    for (const r of routes) {
      const v = this.booksOf(r);
      if (v >= 2) {
        // one claim less; the last one leaves the trie (and the books, unless the route is installed)
        if (v < 4) this.trie.remove(parsePrefix(r), r);
        this.setBooks(r, v - 2);
      }
      this.touched.add(r);
    }
  }

  covers(addr: Buffer): boolean {
    return this.trie.covering({ addr, cidr: addr.length * 8 }) !== undefined;
  }

  flush(): void {
    if (this.closed) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    const ops: Op[] = [];
    for (const r of this.touched) {
      const v = this.booksOf(r);
      const want = v >= 2;
      if (want !== ((v & 1) === 1) || this.uncertain.has(r)) ops.push({ cidr: r, add: want });
    }
    this.touched.clear();
    if (ops.length === 0) return;
    // (ip -batch takes no per-line options like -6: the prefix tells the family)
    const lines = ops.map((o) => `route ${o.add ? 'replace' : 'del'} ${o.cidr} dev ${this.tun}`);
    this.stats.batches++;
    this.stats.ops += ops.length;
    this.inFlightOps = ops.length;
    let run: Promise<BatchResult>;
    try {
      run = this.run(lines);
    } catch (err) {
      run = Promise.reject(err as Error); // (a runner that throws instead of rejecting: the same)
    }
    this.inFlight = run
      .then(
        (r) => ({ failed: r.failed, whole: false }),
        (err: Error) => {
          this.stats.failedRuns++;
          for (const o of ops) this.uncertain.add(o.cidr);
          return { failed: new Map(lines.map((_, i) => [i, err.message])), whole: true };
        },
      )
      .then(({ failed, whole }) => this.settle(ops, lines, failed, whole));
  }

  /** Books a finished batch, then starts the next one if flush() was called meanwhile. */
  private settle(ops: Op[], lines: string[], failed: Map<number, string>, whole: boolean): void {
    const report: string[] = [];
    let nFailed = 0;
    ops.forEach((o, i) => {
      const err = failed.get(i);
      // a route already gone is what a del wanted (ESRCH): said of this line, not in a failed run's message
      if (err !== undefined && (whole || !(!o.add && /No such process/.test(err)))) {
        this.touched.add(o.cidr);
        if (report.length < 20) report.push(`${lines[i]}: ${err}`);
        nFailed++;
        return;
      }
      this.uncertain.delete(o.cidr);
      this.setInstalled(o.cidr, o.add);
    });
    this.inFlight = undefined;
    this.inFlightOps = 0;
    this.stats.failedOps += nFailed;
    if (nFailed) {
      this.log.warn({ failed: nFailed, lines: report, retryMs: this.retryDelay }, 'some route changes failed: retried');
      this.scheduleRetry();
    } else this.retryDelay = this.opts.retryMs ?? 1000;
    if (this.again) {
      this.again = false;
      this.flush();
    }
  }

  /** Books whether the kernel holds the route to `cidr` (an applied line); a CIDR neither claimed nor installed leaves. */
  private setInstalled(cidr: string, on: boolean): void {
    this.setBooks(cidr, (this.booksOf(cidr) & ~1) | (on ? 1 : 0));
  }

  private scheduleRetry(): void {
    if (this.retry || this.closed) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.flush();
    }, this.retryDelay);
    this.retry.unref();
    this.retryDelay = Math.min(this.retryDelay * 2, this.opts.maxRetryMs ?? 30_000);
  }

  /**
   * Resolves once the batch in flight and those started after it for flushes
   * made meanwhile have ended (applied or booked as failed); never rejects.
   * Changes not yet flush()ed are not waited for.
   */
  async flushed(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  /** CIDRs whose kernel state may differ from the claims: touched or failed since the last batch, or in flight. */
  get pending(): number {
    return this.touched.size + this.inFlightOps;
  }

  /** Stops retries and flushes; resolves when the batch in flight has ended. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    await this.flushed();
  }
}
