/**
 * ListWatcher's `reborn` (kvstore.ts, s34: told from the revision it has handed over through, with no create
 * revision kept per key) against an oracle written from etcd's model, not from the watcher: a key's incarnation
 * changes exactly when it is deleted and put again (its create_revision then moves). On seeded random histories
 * over MemKV (etcd's semantics: test/controlplane/kvstore-contract.test.ts), some followed live and some hidden by
 * an outage whose history is compacted (the watcher relists), every value the sink is handed must say `reborn`
 * exactly when the sink holds a value of an older incarnation, and a key whose value and incarnation are unchanged
 * across a relist must not be handed over again.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ListWatcher } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { prng } from '../helpers/prng.js';

const PREFIX = 'wiremesh/t/';
// fake timers: the watcher's relist backoff (200 ms doubled per unstable watch, up to 5 s) runs on them
const settle = () => vi.advanceTimersByTimeAsync(0);

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await vi.advanceTimersByTimeAsync(100);
  if (!cond()) throw new Error(`timed out: ${what}`);
}

describe('ListWatcher: reborn against the incarnations of the history', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`says reborn exactly for a new incarnation of a key the sink holds, live and across compacted gaps (seed ${seed})`, async () => {
      const rand = prng(seed);
      const kv = new MemKV();
      const keys = Array.from({ length: 12 }, (_, i) => `${PREFIX}k${i}`);
      // the oracle: per key, the incarnation etcd holds now (a counter bumped by every create) ...
      const incarnation = new Map<string, number>();
      let created = 0;
      // ... and what the sink holds (value, incarnation), from what the watcher handed it
      const held = new Map<string, { value: string; inc: number }>();
      const handed: Array<{ key: string; reborn: boolean; want: boolean }> = [];
      let redundant = 0;
      const lw = new ListWatcher(kv, PREFIX, {
        upsert: (key, value, reborn) => {
          const inc = incarnation.get(key)!;
          const before = held.get(key);
          handed.push({ key, reborn: reborn === true, want: before !== undefined && before.inc !== inc });
          if (before && before.value === value && before.inc === inc) redundant++;
          held.set(key, { value, inc });
        },
        remove: (key) => void held.delete(key),
      });
      const put = async (k: string) => {
        if (!kv.get(k)) incarnation.set(k, ++created);
        await kv.put(k, `v${Math.floor(rand() * 3)}`); // often the same value again: an unchanged key
      };
      for (const k of keys.slice(0, 6)) await put(k);
      void lw.start();
      await waitFor(() => lw.revision !== undefined, 'the first list');
      for (let round = 0; round < 12; round++) {
        const gap = round % 2 === 1;
        if (gap) kv.disconnect();
        for (let step = 0; step < 15; step++) {
          const k = keys[Math.floor(rand() * keys.length)]!;
          const r = rand();
          if (r < 0.5) await put(k);
          else if (r < 0.75 && kv.get(k)) await kv.delete(k);
          else if (kv.get(k)) {
            // deleted and created again at once: a new incarnation the watch sees as a delete and a put, a relist not
            await kv.delete(k);
            await put(k);
          }
        }
        if (gap) {
          kv.compact(kv.revision); // what the outage missed is gone: the watcher must relist
          const relists = lw.relists;
          kv.reconnect();
          await waitFor(() => lw.relists > relists && lw.revision === String(kv.revision + 1), 'the relist');
        }
        await settle();
        // the sink mirrors the store, each key at its current incarnation
        const now = new Map(kv.entries(PREFIX).map((e) => [e.key, { value: e.value, inc: incarnation.get(e.key)! }]));
        expect(held).toEqual(now);
      }
      expect(lw.relists).toBeGreaterThan(0);
      for (const h of handed) if (h.reborn !== h.want) expect(h).toEqual({ ...h, reborn: h.want });
      expect(handed.some((h) => h.want)).toBe(true); // the histories do make new incarnations of held keys
      expect(redundant).toBe(0);
      await lw.stop();
    });
  }
});
