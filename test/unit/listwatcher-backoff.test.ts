// Regressions (reviews of s6prop and of its fixes): a remote that breaks every new watch (a response over the
// channel's limit, an event etcd never sends) made ListWatcher relist the whole prefix in a loop, 236 times a
// second in the reviewer's probe; then, with a backoff that one delivered event reset, 8,618 relists in 2 s
// (one event, then a break, every time); and a remote that serves the list but fails every watch creation was
// listed every 200 ms forever (the list's success reset the retry wait). One backoff now serves the three:
// 200 ms doubling to 5 s, back to 0 only after a watch stayed up STABLE_WATCH_MS.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ListWatcher, STABLE_WATCH_MS, type KV, type KVStore, type WatchHandlers } from '../../src/controlplane/kvstore.js';

function breakingStore() {
  const st = { lists: 0, deliverFirst: false, failCreate: false, upMs: 0, at: [] as number[] };
  const store: KVStore = {
    async list(): Promise<{ revision: string; kvs: KV[] }> {
      st.lists++;
      st.at.push(Date.now());
      return { revision: '10', kvs: [{ key: 'p/a', value: '1' }] };
    },
    async watch(_p: string, _r: string, h: WatchHandlers) {
      if (st.failCreate) throw new Error('PERMISSION_DENIED on Watch only');
      const brk = () => {
        if (st.deliverFirst) h.put({ key: 'p/a', value: String(st.lists) }, '11');
        h.broken(new Error('response over the channel limit'));
      };
      if (st.upMs > 0) setTimeout(brk, st.upMs);
      else setImmediate(brk);
      return { cancel: async () => undefined };
    },
  } as KVStore;
  return { store, st };
}

describe('ListWatcher after a broken watch', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('regression: waits 200 ms doubling to 5 s before relisting when the watch delivered nothing', async () => {
    const { store, st } = breakingStore();
    const lw = new ListWatcher(store, 'p/', { upsert: () => undefined, remove: () => undefined });
    void lw.start();
    await vi.advanceTimersByTimeAsync(20_000);
    // before: the loop never waited (hundreds of relists a second)
    const gaps = st.at.slice(1).map((t, i) => t - st.at[i]!);
    expect(gaps.length).toBeGreaterThanOrEqual(5);
    expect(gaps.length).toBeLessThanOrEqual(8);
    for (const [i, g] of gaps.entries()) expect(g, `gap ${i}`).toBeGreaterThanOrEqual(Math.min(200 * 2 ** i, 5000));
    await lw.stop();
  });

  /** Relists in `ms` of fake time with the store set up by `setup`, and the gaps between them. */
  async function run(setup: (st: ReturnType<typeof breakingStore>['st']) => void, ms: number) {
    const { store, st } = breakingStore();
    setup(st);
    const lw = new ListWatcher(store, 'p/', { upsert: () => undefined, remove: () => undefined });
    void lw.start();
    await vi.advanceTimersByTimeAsync(ms);
    await lw.stop();
    return { lists: st.lists, gaps: st.at.slice(1).map((t, i) => t - st.at[i]!) };
  }

  it('regression: a watch that delivers one event and then breaks, every time, backs off the same', async () => {
    // before: 0 ms between relists (thousands in 20 s of fake time)
    const { gaps } = await run((st) => (st.deliverFirst = true), 20_000);
    expect(gaps.length).toBeLessThanOrEqual(8);
    for (const [i, g] of gaps.entries()) expect(g, `gap ${i}`).toBeGreaterThanOrEqual(Math.min(200 * 2 ** i, 5000));
  });

  it('regression: a remote that serves the list but fails every watch creation backs off to 5 s', async () => {
    // before: a list every 200 ms (100 in 20 s)
    const { gaps } = await run((st) => (st.failCreate = true), 20_000);
    expect(gaps.length).toBeLessThanOrEqual(8);
    for (const [i, g] of gaps.entries()) expect(g, `gap ${i}`).toBeGreaterThanOrEqual(Math.min(200 * 2 ** i, 5000));
  });

  it('a watch up STABLE_WATCH_MS relists at once; one up a little less waits', async () => {
    expect(STABLE_WATCH_MS).toBe(10_000);
    const stable = await run((st) => (st.upMs = STABLE_WATCH_MS), 120_000);
    for (const g of stable.gaps) expect(g).toBe(STABLE_WATCH_MS);
    const short = await run((st) => (st.upMs = STABLE_WATCH_MS - 100), 120_000);
    for (const [i, g] of short.gaps.entries()) expect(g, `gap ${i}`).toBe(STABLE_WATCH_MS - 100 + Math.min(200 * 2 ** i, 5000));
  });
});
