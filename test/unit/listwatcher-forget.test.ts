// ListWatcher.forget (kvstoremesh's nodes waiting for a place, src/controlplane/nodeplaces.ts): keys forgotten in the
// sink's synced() come back, each with the value the store holds then, in one more list before the watch, one sink
// call per key (a throw on one loses no other: review s13budget #5); keys no longer held start no list.
import { describe, expect, it, vi } from 'vitest';
import { ListWatcher } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';

describe('ListWatcher.forget', () => {
  it('hands the forgotten keys over again at once, one call each, then watches', async () => {
    const mem = new MemKV();
    for (const k of ['a', 'b', 'c']) await mem.put(`p/${k}`, `${k}1`);
    const calls: string[] = [];
    let answers: boolean[] = [];
    let lists = 0;
    const lw: ListWatcher = new ListWatcher(mem, 'p/', {
      upsert: (k, v) => {
        calls.push(`${k}=${v}`);
        if (lists === 1 && k === 'p/b') throw new Error('sink bug');
        return lists === 0 && k !== 'p/a' ? false : undefined; // b and c refused in the first list
      },
      remove: (k) => void calls.push(`-${k}`),
      synced: () => {
        calls.push('synced');
        if (lists++ === 0) answers = [lw.forget(['p/gone']), lw.forget(['p/b', 'p/c'])];
      },
    });
    void lw.start();
    await lw.firstSync();
    expect(answers).toEqual([false, true]);
    expect(calls).toEqual(['p/a=a1', 'p/b=b1', 'p/c=c1', 'synced', 'p/b=b1', 'p/c=c1', 'synced']);
    expect(lw.sinkErrors).toBe(1);
    expect(lw.relists).toBe(0); // no watch broke
    await mem.put('p/c', 'c2');
    await vi.waitFor(() => expect(calls.at(-1)).toBe('p/c=c2'));
    await lw.stop();
  });
});
