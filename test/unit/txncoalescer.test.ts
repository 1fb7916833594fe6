/**
 * TxnCoalescer (src/controlplane/txncoalescer.ts): the remotes' mirror writes of a short window in one local
 * transaction. Checked: the bounds (window, operations, bytes, transactions in flight), per-key order and the
 * final store against the reference (the last value offered per key) on seeded random sequences of writes with
 * failing transactions, and that a failed merged transaction applies nothing and is retried member by member.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { BatchedWriter, type MirrorOps, type MirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { LateWriteError } from '../../src/controlplane/latewrite.js';
import { UnsentWriteError } from '../../src/controlplane/unsentwrite.js';
import { TxnCoalescer, type CoalescerOptions } from '../../src/controlplane/txncoalescer.js';

/**
 * An in-memory store whose write is one atomic transaction; `fail(ops)` says whether a transaction fails, `delay(ops)`
 * how long it takes to answer (ms; a promise: until it settles, a hung etcd while it does not).
 */
function store(fail: (ops: MirrorOps) => boolean = () => false, delay: (ops: MirrorOps) => number | Promise<void> = () => 0) {
  const kv = new Map<string, string>();
  /** Every value each key took, in the order applied. */
  const history = new Map<string, Array<string | null>>();
  const txns: MirrorOps[] = [];
  /** Every transaction tried, in the order sent, and whether it applied. */
  const attempts: Array<{ ops: MirrorOps; ok: boolean }> = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const target: MirrorTarget = {
    keys: async (prefix) => [...kv.keys()].filter((k) => k.startsWith(prefix)),
    entries: async () => undefined,
    revision: async () => '0',
    deletePrefix: async (prefix) => {
      for (const k of [...kv.keys()]) if (k.startsWith(prefix)) kv.delete(k);
    },
    write: async (ops) => {
      const attempt = { ops, ok: false };
      attempts.push(attempt);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const d = delay(ops);
      await (typeof d === 'number' ? (d > 0 ? new Promise((r) => setTimeout(r, d)) : Promise.resolve()) : d);
      inFlight--;
      if (new Set(ops.map(([k]) => k)).size !== ops.length) throw new Error('duplicate key given in txn request');
      if (fail(ops)) throw new Error('txn failed');
      txns.push(ops);
      attempt.ok = true;
      for (const [k, v] of ops) {
        if (v === null) kv.delete(k);
        else kv.set(k, v);
        history.set(k, [...(history.get(k) ?? []), v]);
      }
    },
  };
  return { kv, history, txns, attempts, target, maxInFlight: () => maxInFlight };
}

const OPTS: CoalescerOptions = { windowMs: 10, intervalMs: 0, maxOps: 8, maxBytes: 4096, maxInFlight: 2, deadlineMs: 60_000, maxLate: 16 };

afterEach(() => void vi.useRealTimers());

/**
 * n random puts and deletes (a fifth) of `keys` keys per writer, pausing up to pauseMs now and then; the last value
 * per key (null: deleted) is returned, every value offered per key added to `offered`.
 */
async function randomWrites(rnd: () => number, writers: BatchedWriter[], n: number, keys: number, pauseMs: number, offered = new Map<string, Array<string | null>>()) {
  const want = new Map<string, string | null>();
  for (let i = 0; i < n; i++) {
    const w = Math.floor(rnd() * writers.length);
    const key = `r${w}/k${Math.floor(rnd() * keys)}`;
    const v = rnd() < 0.2 ? null : `v${i}`;
    if (v === null) writers[w]!.delete(key);
    else writers[w]!.put(key, v);
    want.set(key, v);
    offered.set(key, [...(offered.get(key) ?? []), v]);
    if (rnd() < 0.1) await new Promise((r) => setTimeout(r, rnd() * pauseMs));
  }
  return want;
}

/** mulberry32: numbers in [0, 1), a failure reproduces with its seed. */
function seeded(seed: number): () => number {
  let x = seed * 2654435761;
  return () => {
    x = (x + 0x6d2b79f5) | 0;
    let t = Math.imul(x ^ (x >>> 15), 1 | x);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('TxnCoalescer', () => {
  it("regression: one remote's large records are taken by bytes too, so no transaction exceeds the bound (etcd would refuse it every time)", async () => {
    vi.useFakeTimers();
    // etcd's request limit, as the store sees it: a transaction over OPTS.maxBytes fails
    const s = store((ops) => ops.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v ?? ''), 0) > OPTS.maxBytes);
    const c = new TxnCoalescer(s.target, OPTS);
    const w = new BatchedWriter(c, silentLogger, 'c2', Date.now, 5);
    const big = 'é'.repeat(700); // 1,400 bytes, 700 UTF-16 units: three of them exceed the bound in bytes only
    for (let i = 0; i < 6; i++) w.put(`big/${i}`, big);
    w.put('small', 'x');
    const flushed = w.flushed();
    await vi.advanceTimersByTimeAsync(200);
    await flushed;
    expect(s.kv.size).toBe(7);
    expect(c.stats.isolated).toBe(0); // nothing had to fail first
    for (const t of s.txns) expect(t.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v ?? ''), 0)).toBeLessThanOrEqual(OPTS.maxBytes);
  });

  it('regression: counts a write\'s UTF-8 size once (when queued), and the byte bound holds exactly with multi-byte characters', async () => {
    vi.useFakeTimers();
    const spy = vi.spyOn(Buffer, 'byteLength');
    try {
      const s = store();
      const c = new TxnCoalescer(s.target, { ...OPTS, maxBytes: 3000 });
      const writers = [0, 1].map((j) => new BatchedWriter(c, silentLogger, `w${j}`, Date.now, 5));
      const ours = new Set<string>();
      for (let i = 0; i < 8; i++)
        writers.forEach((w, j) => {
          const [k, v] = [`w${j}/k${i}`, `${'ü'.repeat(250)}${j}/${i}`]; // 5 + 503 bytes, 5 + 253 UTF-16 units
          ours.add(k).add(v);
          w.put(k, v);
        });
      const flushed = Promise.all(writers.map((w) => w.flushed()));
      await vi.advanceTimersByTimeAsync(200);
      await flushed;
      expect(s.kv.size).toBe(16);
      // one count per key and per value: not again when taken, nor when packed (main's code counted each twice)
      expect(spy.mock.calls.filter(([x]) => typeof x === 'string' && ours.has(x))).toHaveLength(ours.size);
      const bytes = (t: MirrorOps) => t.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v ?? ''), 0);
      for (const t of s.txns) expect(bytes(t)).toBeLessThanOrEqual(3000);
      // exact, not loose: 5 × 508 bytes fit, a 6th does not (by UTF-16 length all 8 of maxOps would)
      expect(Math.max(...s.txns.map((t) => t.length))).toBe(5);
    } finally {
      spy.mockRestore();
    }
  });

  it('regression: a batch that failed alone goes alone on its next tries, so its co-members pay no failed write again', async () => {
    vi.useFakeTimers();
    let poisonTries = 0;
    // etcd refuses the poisoned write three times, then takes it
    const s = store((ops) => ops.some(([k]) => k === 'p/poison') && ++poisonTries <= 3);
    const c = new TxnCoalescer(s.target, OPTS);
    const [p, a, b] = ['p', 'a', 'b'].map((r) => new BatchedWriter(c, silentLogger, r, Date.now, 5));
    p!.put('p/poison', 'x');
    for (let round = 0; round < 6; round++) {
      a!.put(`a/${round}`, '1');
      b!.put(`b/${round}`, '1');
      await vi.advanceTimersByTimeAsync(6); // the others' writes share windows with the poisoned retries
    }
    const flushed = Promise.all([p, a, b].map((w) => w!.flushed()));
    await vi.advanceTimersByTimeAsync(200);
    await flushed;
    expect(s.kv.size).toBe(13);
    const merged = (ops: MirrorOps) => new Set(ops.map(([k]) => k.split('/')[0])).size > 1;
    // the first merged transaction failed (and was retried member by member); none after it
    expect(s.attempts.filter((t) => !t.ok && merged(t.ops))).toHaveLength(1);
    expect(c.stats.isolated).toBe(3); // p, a and b, once
    expect(c.stats.alone).toBe(2); // tries 3 (refused) and 4 (applied): then it rejoins batching
  });

  it('regression: a writer stays alone while a write that failed alone is still queued, though a smaller retry of its batch applied', async () => {
    vi.useFakeTimers();
    let poisonTries = 0;
    // etcd refuses the poisoned write four times, then takes it
    const s = store((ops) => ops.some(([k]) => k === 'p/7') && ++poisonTries <= 4);
    const c = new TxnCoalescer(s.target, OPTS);
    const [p, a, b] = ['p', 'a', 'b'].map((r) => new BatchedWriter(c, silentLogger, r, Date.now, 5));
    for (let i = 0; i < 8; i++) p!.put(`p/${i}`, 'x'); // a full batch, the poisoned write last: it fails alone
    await vi.advanceTimersByTimeAsync(OPTS.windowMs);
    for (let round = 0; round < 8; round++) {
      // the others' writes ahead of p's retries: p's next batch is taken with less room (a part of the failed one)
      for (let i = 0; i < 5; i++) a!.put(`a/${round}/${i}`, '1');
      b!.put(`b/${round}`, '1');
      await vi.advanceTimersByTimeAsync(6);
    }
    const flushed = Promise.all([p, a, b].map((w) => w!.flushed()));
    await vi.advanceTimersByTimeAsync(500);
    await flushed;
    expect(s.kv.size).toBe(8 + 40 + 8);
    const merged = (ops: MirrorOps) => new Set(ops.map(([k]) => k.split('/')[0])).size > 1;
    // before: once the part without the poisoned write applied, the rest merged with the others' and failed them
    expect(s.attempts.filter((t) => !t.ok && merged(t.ops))).toEqual([]);
    expect(c.stats.isolated).toBe(0);
  });

  it('sends the writes of one window as one transaction, no earlier than the window unless full', async () => {
    vi.useFakeTimers();
    const s = store();
    const c = new TxnCoalescer(s.target, OPTS);
    const done = [c.write([['a/1', 'x']]), c.write([['b/1', 'y']]), c.write([['c/1', null]])];
    await vi.advanceTimersByTimeAsync(9);
    expect(s.txns).toHaveLength(0); // inside the window: waiting for others
    await vi.advanceTimersByTimeAsync(1);
    await Promise.all(done);
    expect(s.txns).toEqual([[['a/1', 'x'], ['b/1', 'y'], ['c/1', null]]]);
    // a full transaction's worth of operations leaves at once, in transactions of at most maxOps
    const many = Array.from({ length: 20 }, (_, i) => c.write([[`k/${i}`, String(i)]]));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.txns.length).toBeGreaterThanOrEqual(2);
    await vi.advanceTimersByTimeAsync(OPTS.windowMs);
    await Promise.all(many);
    expect(s.txns.slice(1).map((t) => t.length)).toEqual([8, 8, 4]);
    expect(c.stats).toMatchObject({ txns: 4, ops: 23 });
  });

  it('keeps a transaction under its byte bound and a key once per transaction, in the order offered', async () => {
    vi.useFakeTimers();
    const s = store();
    const c = new TxnCoalescer(s.target, OPTS);
    const big = 'v'.repeat(3000);
    const done = [c.write([['a', big]]), c.write([['b', big]]), c.write([['a', '2']]), c.write([['a', '3']])];
    await vi.advanceTimersByTimeAsync(100);
    await Promise.all(done);
    for (const t of s.txns) expect(t.reduce((n, [k, v]) => n + k.length + (v?.length ?? 0), 0)).toBeLessThanOrEqual(OPTS.maxBytes);
    expect(s.history.get('a')).toEqual([big, '2', '3']);
    expect(s.kv.get('b')).toBe(big);
  });

  it('applies nothing of a failed merged transaction, then writes each member alone: only the refused one fails', async () => {
    const s = store((ops) => ops.some(([k]) => k === 'poison'));
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0 });
    const results = await Promise.allSettled([c.write([['a', '1'], ['b', '1']]), c.write([['poison', 'x']]), c.write([['c', '1']])].map((p) => p));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(s.kv.has('poison')).toBe(false);
    expect(Object.fromEntries(s.kv)).toEqual({ a: '1', b: '1', c: '1' });
    // each key was applied once: the failed merged transaction left nothing behind
    for (const k of ['a', 'b', 'c']) expect(s.history.get(k)).toEqual(['1']);
  });

  it('on seeded random writes through BatchedWriters, with failing transactions, ends where the last values say, each key in order', async () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rnd = seeded(seed);
      const s = store(() => rnd() < 0.15);
      const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 1, maxOps: 1 + Math.floor(rnd() * 10), maxBytes: 4096, maxInFlight: 1 + Math.floor(rnd() * 3) });
      const writers = Array.from({ length: 4 }, (_, w) => new BatchedWriter(c, silentLogger, `r${w}`, Date.now, 1));
      const offered = new Map<string, Array<string | null>>();
      const want = await randomWrites(rnd, writers, 300, 12, 3, offered);
      await Promise.all(writers.map((w) => w.flushed()));
      const expected = Object.fromEntries([...want].filter(([, v]) => v !== null));
      expect(Object.fromEntries(s.kv), `seed ${seed}`).toEqual(expected);
      // per key, the values applied are a subsequence of those offered (coalescing drops, never reorders)
      for (const [k, applied] of s.history) {
        const seq = offered.get(k)!;
        let j = 0;
        for (const v of applied) {
          while (j < seq.length && seq[j] !== v) j++;
          expect(j < seq.length, `seed ${seed}: ${k} applied out of order`).toBe(true);
          j++;
        }
      }
      expect(s.maxInFlight()).toBeLessThanOrEqual(3);
      // a writer's batch that failed alone goes alone while it holds one of the failed writes unchanged, each
      // until a batch of that writer carrying its key applies
      const failedAlone = new Map<string, Map<string, string | null>>();
      for (const t of s.attempts) {
        const byWriter = new Map<string, Array<MirrorOps[number]>>();
        for (const op of t.ops) byWriter.set(op[0].split('/')[0]!, [...(byWriter.get(op[0].split('/')[0]!) ?? []), op]);
        for (const [w, mine] of byWriter) {
          const f = failedAlone.get(w);
          if (f && mine.some(([k, v]) => f.has(k) && f.get(k) === v)) expect(byWriter.size, `seed ${seed}: ${w}'s batch that failed alone merged`).toBe(1);
          if (t.ok && f) for (const [k] of mine) f.delete(k);
          else if (!t.ok && byWriter.size === 1) failedAlone.set(w, new Map(mine));
        }
      }
      c.stop();
    }
  });
});

describe('TxnCoalescer: pacing (intervalMs)', () => {
  it('a lone write leaves at once; what arrives within intervalMs after a transaction left shares the next; maxOps queued leaves at once', async () => {
    vi.useFakeTimers();
    const s = store();
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0, intervalMs: 25 });
    const first = c.write([['a/1', 'x']]);
    await vi.advanceTimersByTimeAsync(0);
    expect(s.txns).toHaveLength(1); // after a quiet spell no wait at all
    await first;
    const next = [c.write([['b/1', 'y']]), c.write([['c/1', 'z']])];
    await vi.advanceTimersByTimeAsync(5);
    next.push(c.write([['d/1', null]]));
    await vi.advanceTimersByTimeAsync(19);
    expect(s.txns).toHaveLength(1); // 24 ms after the first left: still collecting
    await vi.advanceTimersByTimeAsync(1);
    await Promise.all(next);
    expect(s.txns[1]).toEqual([['b/1', 'y'], ['c/1', 'z'], ['d/1', null]]);
    // a full transaction's worth does not wait for the pacing
    const many = Array.from({ length: OPTS.maxOps }, (_, i) => c.write([[`k/${i}`, String(i)]]));
    await vi.advanceTimersByTimeAsync(0);
    await Promise.all(many);
    expect(c.stats).toMatchObject({ txns: 3, ops: 4 + OPTS.maxOps });
  });

  it('issue 16: copies arriving one by one from many remotes share transactions (one per intervalMs, not one per copy), each key in order', async () => {
    vi.useFakeTimers();
    const s = store(undefined, () => 2);
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0, intervalMs: 25, maxOps: 128 });
    const writers = Array.from({ length: 15 }, (_, j) => new BatchedWriter(c, silentLogger, `c${j + 2}`, Date.now, 5));
    // ~100 copies/s into one kvstoremesh, round robin over the remotes, a few keys rewritten
    const want = new Map<string, string>();
    for (let i = 0; i < 300; i++) {
      const key = `c${(i % 15) + 2}/k${i % 40}`;
      writers[i % 15]!.put(key, `v${i}`);
      want.set(key, `v${i}`);
      await vi.advanceTimersByTimeAsync(10);
    }
    const flushed = Promise.all(writers.map((w) => w.flushed()));
    await vi.advanceTimersByTimeAsync(100);
    await flushed;
    // 3 s of copies: at most one transaction per 25 ms (one copy per transaction before the pacing: ~300)
    expect(c.stats.txns).toBeLessThanOrEqual(3000 / 25 + 2);
    expect(s.kv).toEqual(want);
    for (const [k, vs] of s.history) expect(vs).toEqual([...vs].sort((a, b) => Number(a!.slice(1)) - Number(b!.slice(1)))); // in order
  });
});

describe('TxnCoalescer: what the pacing does not hold back (review of s8kvm)', () => {
  it('regression: batches retried alone go one after the other, not one per intervalMs (a purge queued behind them kept its deadline)', async () => {
    vi.useFakeTimers();
    const s = store();
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0, intervalMs: 100, maxInFlight: 1 });
    await c.write([['first/1', 'x']]); // a merged transaction just left: the next small one waits 100 ms
    const alone = Array.from({ length: 10 }, (_, i) => c.writeFrom(() => ({ ops: [[`r${i}/k`, 'v']], bytes: 10, alone: true }), () => 1));
    const purge = c.write([['purge/1', null]]);
    await vi.advanceTimersByTimeAsync(100);
    await Promise.all([...alone, purge]);
    expect(s.txns).toHaveLength(12); // before: 2 by then (one per 100 ms), the purge's ~1 s later
  });

  it('regression: large transactions are not paced (100 records of 60 KiB took 1.3 s at 100 ms)', async () => {
    vi.useFakeTimers();
    const s = store();
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0, intervalMs: 100 });
    const big = 'v'.repeat(3000); // each its own transaction (maxBytes 4096), each over maxBytes / 2
    const writes = Array.from({ length: 6 }, (_, i) => c.write([[`big/${i}`, big]]));
    await vi.advanceTimersByTimeAsync(0);
    await Promise.all(writes);
    expect(s.txns).toHaveLength(6); // before: 1 at once, then one per 100 ms
  });
});

describe('TxnCoalescer: a local etcd that does not answer', () => {
  // s6fix: with maxInFlight transactions hung (etcd never answers), every other remote's writes waited for ever
  it('regression: a hung transaction fails at its deadline and frees its slot, so other writers\' writes go; bounded by maxLate', async () => {
    vi.useFakeTimers();
    const never = new Promise<void>(() => undefined);
    const s = store(undefined, (ops) => (ops.some(([k]) => k.startsWith('hung/')) ? never : 0));
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0, deadlineMs: 100, maxLate: 3 });
    const hung = [c.write([['hung/1', 'x']]), c.write([['hung/2', 'x']])].map((p) => p.catch((e: Error) => e));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.maxInFlight()).toBe(2); // both slots held by calls that never answer
    const w = new BatchedWriter(c, silentLogger, 'ok', Date.now, 5);
    w.put('ok/1', 'v');
    await vi.advanceTimersByTimeAsync(99);
    expect(s.kv.has('ok/1')).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(s.kv.get('ok/1')).toBe('v'); // before: never
    for (const e of await Promise.all(hung)) expect(e).toBeInstanceOf(LateWriteError);
    expect(c.stats.late).toBe(2);
    // a third hung call reaches maxLate (3): nothing more is sent until one of them settled
    void c.write([['hung/3', 'x']]).catch(() => undefined);
    await vi.advanceTimersByTimeAsync(100);
    const sent = s.attempts.length;
    void c.write([['ok/2', 'v']]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.attempts.length).toBe(sent);
    c.stop();
  });

  it("regression: a transaction that lands after its deadline cannot leave a key at the stale value it carried (it is written again once it settled)", async () => {
    vi.useFakeTimers();
    let release = () => undefined as void;
    const gate = new Promise<void>((r) => (release = r));
    let first = true;
    // the first transaction answers late (after the deadline and after the retry and newer writes applied)
    const s = store(undefined, () => (first ? ((first = false), gate) : 0));
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0, deadlineMs: 100 });
    const w = new BatchedWriter(c, silentLogger, 'r', Date.now, 5);
    w.put('r/a', 'v1');
    w.put('r/b', 'v1');
    await vi.advanceTimersByTimeAsync(150); // past the deadline: retried, applied
    expect(Object.fromEntries(s.kv)).toEqual({ 'r/a': 'v1', 'r/b': 'v1' });
    w.put('r/a', 'v2');
    w.delete('r/b');
    await vi.advanceTimersByTimeAsync(50);
    expect(Object.fromEntries(s.kv)).toEqual({ 'r/a': 'v2' });
    let flushed = false;
    void w.flushed().then(() => (flushed = true));
    await vi.advanceTimersByTimeAsync(50);
    expect(flushed).toBe(false); // the late transaction may still land over what was written
    release(); // it lands now: r/a back at v1, r/b back
    await vi.advanceTimersByTimeAsync(50);
    expect(Object.fromEntries(s.kv)).toEqual({ 'r/a': 'v2' }); // before: { r/a: v1, r/b: v1 }
    expect(flushed).toBe(true);
    c.stop();
  });

  it('on seeded random writes with transactions answering late or failing, ends where the last values say', async () => {
    let late = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const rnd = seeded(seed);
      // a quarter of the transactions answer after the 4 ms deadline (up to 20 ms), some fail
      const s = store(() => rnd() < 0.1, () => (rnd() < 0.25 ? 4 + rnd() * 16 : 0));
      const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 1, maxOps: 1 + Math.floor(rnd() * 10), maxInFlight: 1 + Math.floor(rnd() * 3), deadlineMs: 4, maxLate: 4 });
      const writers = Array.from({ length: 3 }, (_, w) => new BatchedWriter(c, silentLogger, `r${w}`, Date.now, 1));
      const want = await randomWrites(rnd, writers, 200, 8, 5);
      await Promise.all(writers.map((w) => w.flushed()));
      expect(Object.fromEntries(s.kv), `seed ${seed}`).toEqual(Object.fromEntries([...want].filter(([, v]) => v !== null)));
      late += c.stats.late;
      c.stop();
    }
    expect(late).toBeGreaterThan(20); // the late path was taken, many times
  });
});

describe('s6fix review: given-up writes that still land', () => {
  // review s6fix-r1 #1: abandon() resolved when the batch in flight passed its deadline, not when it landed
  it('regression: abandon() of a writer whose batch in flight turns late resolves only once that batch landed', async () => {
    vi.useFakeTimers();
    let release = () => undefined as void;
    const gate = new Promise<void>((r) => (release = r));
    const s = store(undefined, () => gate);
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0, deadlineMs: 100 });
    const w = new BatchedWriter(c, silentLogger, 'r', Date.now, 5);
    w.put('r/a', 'v1');
    await vi.advanceTimersByTimeAsync(10); // in flight, held
    let settled = false;
    const landing = w.abandon();
    expect(landing).toBeDefined();
    void landing!.then(() => (settled = true));
    await vi.advanceTimersByTimeAsync(500); // past the deadline: given up on, not landed
    expect(settled).toBe(false); // before: true (the purge went on while the write could still land)
    release();
    await vi.advanceTimersByTimeAsync(10);
    expect(s.kv.get('r/a')).toBe('v1');
    expect(settled).toBe(true);
    c.stop();
  });
});

describe('s6fix review: the maxLate bound', () => {
  // review s6fix-r1 #4: after a merged transaction failed, each member was sent alone with no look at `late`: with
  // etcd hung from then on, every member hung a deadline each in the slot, all of them outstanding
  it('regression: the member-by-member retry stops at the first member past its deadline and keeps the maxLate bound', async () => {
    vi.useFakeTimers();
    let n = 0;
    const never = new Promise<void>(() => undefined);
    // the first transaction fails (an ordinary error); etcd hangs from then on
    const s = store(() => n === 1, () => (++n === 1 ? 0 : never));
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 10, maxOps: 8, maxInFlight: 1, deadlineMs: 100, maxLate: 2 });
    const settled: Array<Error | undefined> = [];
    for (let i = 0; i < 30; i++) void c.write([[`r${i}/k`, 'v']]).then(() => settled.push(undefined), (e: Error) => settled.push(e));
    await vi.advanceTimersByTimeAsync(150);
    expect(settled.length).toBe(8); // the first transaction's members: one late, the rest failed with it (before: 1)
    expect(settled[0]).toBeInstanceOf(LateWriteError);
    for (const e of settled.slice(1)) expect(e).toBeInstanceOf(UnsentWriteError); // not sent: no landing of theirs
    await vi.advanceTimersByTimeAsync(5000);
    expect(s.maxInFlight()).toBe(2); // calls etcd never answered (before: 8, all the first transaction's members)
    expect(c.stats.late).toBe(2);
    c.stop();
  });

  // review s6fix-r1 #5: with late = maxLate - 1, pump let maxInFlight more calls through, each of which could turn late
  it('regression: at most maxLate calls are ever given up on, whatever maxInFlight', async () => {
    vi.useFakeTimers();
    const never = new Promise<void>(() => undefined);
    const s = store(undefined, () => never);
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 0, maxInFlight: 4, deadlineMs: 100, maxLate: 2 });
    void c.write([['a/k', 'v']]).catch(() => undefined);
    await vi.advanceTimersByTimeAsync(150); // one late: late = maxLate - 1
    for (let i = 0; i < 10; i++) void c.write([[`r${i}/k`, 'v']]).catch(() => undefined);
    await vi.advanceTimersByTimeAsync(5000);
    expect(s.maxInFlight()).toBe(2); // before: 5
    expect(c.stats.late).toBe(2);
    c.stop();
  });

  // review s6fix-r2 #2: the members after the first one past its deadline were rejected with that call's
  // LateWriteError, so they waited for its landing though nothing of theirs was sent: a call etcd never answers
  // pinned them for good (a writer's flushed() never resolved, a purge stayed pending)
  it('regression: a writer whose batch was not sent behind a call lost for good is flushed once etcd answers again', async () => {
    vi.useFakeTimers();
    let n = 0;
    const never = new Promise<void>(() => undefined);
    // the merged transaction (a/k and the writer's batch) fails; a/k alone is never answered; the rest answer
    const s = store(() => ++n === 1, (ops) => (ops.some(([k]) => k === 'a/k') && n >= 1 ? never : 0));
    const c = new TxnCoalescer(s.target, { ...OPTS, windowMs: 10, deadlineMs: 100 });
    const lost = c.write([['a/k', 'v']]).catch((e: Error) => e);
    const w = new BatchedWriter(c, silentLogger, 'c2', Date.now, 5);
    w.put('c2/k', 'v');
    let flushed = false;
    void w.flushed().then(() => (flushed = true));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(await lost).toBeInstanceOf(LateWriteError);
    expect(s.kv.get('c2/k')).toBe('v');
    expect(flushed).toBe(true); // before: false (waiting on a/k's landing)
    expect(s.attempts.filter((a) => a.ops.length === 1 && a.ops[0]![0] === 'c2/k').length).toBe(1); // retried once, as it was
    c.stop();
  });
});
