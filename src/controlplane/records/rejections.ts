/**
 * What a process refused: counted by type and reason (metrics), the latest
 * kept with key and detail (status), and logged. Bounded: the counts have at
 * most types x reasons x origins entries, the history REJECTION_HISTORY, and
 * the log LOGGED_PER_MINUTE lines per (origin, type, reason) a minute, then
 * one line saying how many more were refused: a remote that writes garbage
 * as fast as it can does not flood the logs of every cluster.
 */
import type { Logger } from '../../log.js';
import type { RecordError, RecordType, RejectReason } from './codec.js';

export const REJECTION_HISTORY = 50;
/**
 * The bytes of JSON a remote's status (records/status.ts) gives its latest refusals. Their keys and details are the
 * remote's text (≤ 512 characters each, but a control character is 6 bytes of JSON): 50 of them reached ~330 KiB,
 * past the status codec's 64 KiB, and every reader refused the whole status. With lastError (≤ 2048 characters,
 * ≤ 12 KiB of JSON) and the counts, a status stays under 64 KiB.
 */
export const STATUS_REJECTION_BYTES = 32 * 1024;
export const LOGGED_PER_MINUTE = 10;

export interface RejectionEntry {
  at: string;
  /** The cluster whose record it was (the key's), or "" when the key names none. */
  origin: string;
  type: RecordType;
  key: string;
  reason: RejectReason;
  detail: string;
}

export class Rejections {
  /** "<origin>\t<type>\t<reason>" -> count */
  private readonly counts = new Map<string, number>();
  readonly recent: RejectionEntry[] = [];
  total = 0;
  /** Log lines per (origin, type, reason) in the current minute. */
  private logged = new Map<string, number>();
  private minute = 0;

  constructor(private readonly log?: Logger) {}

  add(err: RecordError, origin = ''): void {
    const k = `${origin}\t${err.type}\t${err.reason}`;
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
    this.total++;
    const e: RejectionEntry = { at: new Date().toISOString(), origin, type: err.type, key: err.key.slice(0, 512), reason: err.reason, detail: err.detail.slice(0, 512) };
    this.recent.push(e);
    if (this.recent.length > REJECTION_HISTORY) this.recent.shift();
    const m = Math.floor(Date.now() / 60_000);
    if (m !== this.minute) {
      for (const [lk, n] of this.logged)
        if (n > LOGGED_PER_MINUTE) {
          const [o, type, reason] = lk.split('\t');
          this.log?.warn({ origin: o || undefined, type, reason, suppressed: n - LOGGED_PER_MINUTE }, 'more records rejected (not logged one by one)');
        }
      this.logged = new Map();
      this.minute = m;
    }
    const n = (this.logged.get(k) ?? 0) + 1;
    this.logged.set(k, n);
    if (n <= LOGGED_PER_MINUTE) this.log?.warn({ key: e.key, type: e.type, reason: e.reason, origin: origin || undefined, detail: e.detail }, 'record rejected');
  }

  /** Counts as rows (metrics) */
  rows(): Array<{ origin: string; type: string; reason: string; count: number }> {
    return [...this.counts].map(([k, count]) => {
      const [origin, type, reason] = k.split('\t') as [string, string, string];
      return { origin, type, reason, count };
    });
  }

  /** Counts of one origin by "<type>/<reason>" (remote status). */
  byTypeReason(origin: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.rows()) if (r.origin === origin) out[`${r.type}/${r.reason}`] = r.count;
    return out;
  }

  /**
   * The latest refusals of one origin, oldest first; with `maxBytes`, only the newest whose JSON takes at most that
   * many bytes in all (a remote's status carries them: STATUS_REJECTION_BYTES).
   */
  recentOf(origin: string, maxBytes = Infinity): RejectionEntry[] {
    const out: RejectionEntry[] = [];
    let bytes = 0;
    for (let i = this.recent.length - 1; i >= 0; i--) {
      const e = this.recent[i]!;
      if (e.origin !== origin) continue;
      bytes += Buffer.byteLength(JSON.stringify(e));
      if (bytes > maxBytes) break;
      out.push(e);
    }
    return out.reverse();
  }
}
