// Regression (review of s6prop): a remote that breaks every new watch (a response over the channel's limit, an
// event etcd never sends) made ListWatcher relist the whole prefix in a loop, 236 times a second in the
// reviewer's probe. A watch that broke before delivering anything or staying up STABLE_WATCH_MS now waits
// 200 ms doubling to 5 s before the next relist; one that delivered relists at once.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ListWatcher, STABLE_WATCH_MS, type KV, type KVStore, type WatchHandlers } from '../../src/controlplane/kvstore.js';

function breakingStore() {
  const st = { lists: 0, deliverFirst: false, at: [] as number[] };
  const store: KVStore = {
    async list(): Promise<{ revision: string; kvs: KV[] }> {
      st.lists++;
      st.at.push(Date.now());
      return { revision: '10', kvs: [{ key: 'p/a', value: '1' }] };
    },
    async watch(_p: string, _r: string, h: WatchHandlers) {
      setImmediate(() => {
        if (st.deliverFirst) h.put({ key: 'p/a', value: String(st.lists) }, '11');
        h.broken(new Error('response over the channel limit'));
      });
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

  it('relists at once after a watch that delivered, or stayed up STABLE_WATCH_MS', async () => {
    const { store, st } = breakingStore();
    st.deliverFirst = true;
    const lw = new ListWatcher(store, 'p/', { upsert: () => undefined, remove: () => undefined });
    void lw.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(st.lists).toBeGreaterThan(1);
    await lw.stop();
    expect(STABLE_WATCH_MS).toBe(10_000);
  });
});
