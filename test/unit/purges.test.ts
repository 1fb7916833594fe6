// Purges (a remote's purge attempts, each within a deadline) over the TxnCoalescer: an attempt whose coalesced
// delete was given up on (LateWriteError) is in flight until that delete landed, and a retry fails at once while it is.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cachePrefix, syncedKey } from '../../src/controlplane/keys.js';
import { LateWriteError } from '../../src/controlplane/latewrite.js';
import type { MirrorOps, MirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { PurgeRetries } from '../../src/controlplane/purgeretries.js';
import { Purges } from '../../src/controlplane/purges.js';
import { UnsentWriteError } from '../../src/controlplane/unsentwrite.js';
import { DEFAULT_COALESCER, TxnCoalescer } from '../../src/controlplane/txncoalescer.js';

afterEach(() => void vi.useRealTimers());

/** A local store whose transactions deleting `remote`'s sync markers are held until release(). */
function heldMarkers(remote: string) {
  let release = () => undefined as void;
  const gate = new Promise<void>((r) => (release = r));
  const s = { landed: 0, prefixes: 0, release: () => release() };
  const target: MirrorTarget = {
    keys: async () => [],
    entries: async () => undefined,
    write: async (ops: MirrorOps) => {
      if (ops.some(([k]) => k === syncedKey(remote, 'nodes'))) await gate;
      s.landed++;
    },
    revision: async () => '0',
    deletePrefix: async () => void s.prefixes++,
  };
  return { s, target };
}

describe('Purges over the TxnCoalescer', () => {
  // review s6fix-r1 #2: the attempt settled when the coalescer gave up on the marker delete, not when it landed:
  // the remote's next replication started, and the late delete removed its new sync markers
  for (const purgeMs of [50, 1000]) {
    it(`regression: an attempt whose coalesced marker delete outran the coalescer's deadline is pending until that delete landed (purge deadline ${purgeMs} ms)`, async () => {
      vi.useFakeTimers();
      const { s, target } = heldMarkers('c2');
      const c = new TxnCoalescer(target, { ...DEFAULT_COALESCER, windowMs: 0, intervalMs: 0, deadlineMs: 100 });
      const settled: string[] = [];
      const purges = new Purges(c, () => purgeMs, (r) => void settled.push(r));
      const run = purges.run('c2').catch((e: Error) => e);
      await vi.advanceTimersByTimeAsync(500); // both deadlines passed: the attempt failed
      const err = await run;
      expect(err).toBeInstanceOf(Error);
      if (purgeMs > 100) expect(err).toBeInstanceOf(LateWriteError);
      expect(purges.pending('c2'), 'the marker delete may still land').toBeDefined(); // before: undefined
      expect(settled).toEqual([]);
      s.release();
      await vi.advanceTimersByTimeAsync(10);
      expect(s.landed).toBe(1);
      expect(purges.pending('c2')).toBeUndefined();
      expect(settled).toEqual(['c2']);
      c.stop();
    });
  }

  // review s6fix-r1 #3: each retry waited up to the deadline in the chain for the attempt still in flight
  it('regression: a retry (waitForPrevious false) fails at once while the previous attempt is in flight, and sends nothing', async () => {
    vi.useFakeTimers();
    const { s, target } = heldMarkers('c2');
    const c = new TxnCoalescer(target, { ...DEFAULT_COALESCER, windowMs: 0, intervalMs: 0, deadlineMs: 100 });
    const purges = new Purges(c, () => 1000);
    void purges.run('c2').catch(() => undefined);
    await vi.advanceTimersByTimeAsync(200);
    let failed: Error | undefined;
    void purges.run('c2', false).catch((e: Error) => (failed = e));
    await vi.advanceTimersByTimeAsync(0);
    expect(failed?.message).toMatch(/still in flight/); // before: waited (up to the 1000 ms deadline)
    expect(c.stats.txns).toBe(1);
    s.release();
    await vi.advanceTimersByTimeAsync(10);
    await purges.run('c2', false); // once it landed, a retry runs
    expect(s.prefixes).toBeGreaterThan(0);
    c.stop();
  });
});

describe('purgeRemote: parallel cache deletes', () => {
  // review s6fix-r2 #1: Promise.all rejected at the first failed delete while another was still in flight: the
  // attempt counted as settled (pending() undefined) and the held delete landed after the next replication wrote
  it('regression: one cache delete failing at once while another hangs keeps the attempt pending until that one landed', async () => {
    let release = () => undefined as void;
    const gate = new Promise<void>((r) => (release = r));
    let landed = 0;
    const target: MirrorTarget = {
      keys: async () => [],
      entries: async () => undefined,
      write: async () => undefined,
      revision: async () => '0',
      deletePrefix: async (p: string) => {
        if (p === cachePrefix('nodes', 'c2')) return void (await gate, landed++);
        if (p === cachePrefix('ip', 'c2')) throw new Error('etcdserver: leader changed');
      },
    };
    const c = new TxnCoalescer(target, { ...DEFAULT_COALESCER, windowMs: 0 });
    const purges = new Purges(c, () => 50);
    const err = await purges.run('c2').catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(landed).toBe(0);
    expect(purges.pending('c2'), 'the nodes cache delete may still land').toBeDefined(); // before: undefined
    release();
    await vi.waitFor(() => expect(purges.pending('c2')).toBeUndefined());
    expect(landed).toBe(1);
    c.stop();
  });

  it('an attempt whose delete failed (none in flight) rejects with that error once all settled', async () => {
    const target: MirrorTarget = {
      keys: async () => [],
      entries: async () => undefined,
      write: async () => undefined,
      revision: async () => '0',
      deletePrefix: async (p: string) => {
        if (p === cachePrefix('ip', 'c2')) throw new Error('etcdserver: leader changed');
      },
    };
    const c = new TxnCoalescer(target, { ...DEFAULT_COALESCER, windowMs: 0 });
    const purges = new Purges(c, () => 1000);
    await expect(purges.run('c2')).rejects.toThrow(/leader changed/);
    expect(purges.pending('c2')).toBeUndefined();
    c.stop();
  });
});

describe('Purges: a marker delete not sent behind a lost call', () => {
  // review s6fix-r2 #2: the marker delete, merged with a/k, was refused with it; a/k sent alone was never answered,
  // and the marker delete (never sent) got a/k's LateWriteError and landing: the purge stayed pending for good, so
  // the remote was neither purged nor started again
  it('regression: the attempt fails (not sent) and is not pending; a retry then purges', async () => {
    vi.useFakeTimers();
    let n = 0;
    const target: MirrorTarget = {
      keys: async () => [],
      entries: async () => undefined,
      write: (ops: MirrorOps) => {
        if (++n === 1) return Promise.reject(new Error('etcdserver: request is too large')); // the merged txn
        if (ops.some(([k]) => k.startsWith('a/'))) return new Promise<void>(() => undefined); // lost for good
        return Promise.resolve();
      },
      revision: async () => '0',
      deletePrefix: async () => undefined,
    };
    const c = new TxnCoalescer(target, { ...DEFAULT_COALESCER, windowMs: 10, intervalMs: 0, deadlineMs: 100 });
    const purges = new Purges(c, () => 1000);
    void c.write([['a/k', 'v']]).catch(() => undefined);
    const run = purges.run('c2').catch((e: Error) => e);
    await vi.advanceTimersByTimeAsync(200);
    expect(await run).toBeInstanceOf(UnsentWriteError);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(purges.pending('c2')).toBeUndefined(); // before: pending for good (a/k's landing)
    const retry = purges.run('c2', false);
    await vi.advanceTimersByTimeAsync(100);
    await expect(retry).resolves.toBeUndefined();
    c.stop();
  });
});

describe('PurgeRetries', () => {
  it('doubles the pause per failure in a row up to max, back to the first once a purge held; one retry pending per remote', async () => {
    vi.useFakeTimers();
    const retried: Array<[string, number]> = [];
    const r = new PurgeRetries({ first: 10, max: 40 }, (name) => void retried.push([name, Date.now()]));
    const t0 = Date.now();
    const fail = (name: string) => (r.dequeued(name), r.failed(name));
    r.failed('c2');
    r.failed('c2'); // a second failure while its timer is armed: still one retry
    for (let i = 0; i < 4; i++) {
      await vi.advanceTimersByTimeAsync(100);
      fail('c2');
    }
    expect(retried.map(([, t]) => t - t0)).toEqual([10, 100 + 40, 200 + 40, 300 + 40]); // 1st failure: 10; 3rd: 40; then capped at 40
    r.held('c2');
    expect(r.size).toBe(0);
    r.failed('c2');
    await vi.advanceTimersByTimeAsync(10);
    expect(retried).toHaveLength(5); // back to the first pause
    r.stop();
  });

  it('again(): a write that may have landed after the purge queues the retry at once, in place of an armed timer, once', async () => {
    vi.useFakeTimers();
    const retried: string[] = [];
    const r = new PurgeRetries({ first: 1000, max: 4000 }, (name) => void retried.push(name));
    r.failed('c2'); // a timer armed for 1 s
    r.again('c2');
    expect(retried).toEqual(['c2']); // now, not after the pause
    r.again('c2'); // already queued: not twice
    await vi.advanceTimersByTimeAsync(5000);
    expect(retried).toEqual(['c2']); // the armed timer was cancelled
    expect(r.dequeued('c2')).toBe(true);
    r.again('c3'); // a remote not waiting for a retry (its purge held): queued too
    expect(retried).toEqual(['c2', 'c3']);
    r.stop();
  });
});
