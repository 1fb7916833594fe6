// ListWatcher.forget (kvstoremesh's nodes waiting for a place, src/controlplane/nodeplaces.ts): keys forgotten in the
// sink's synced() come back, each with the value the store holds then, in one more list before the watch, one sink
// call per key (a throw on one loses no other: review s13budget #5); keys no longer held start no list. A sink that
// holds keys in compact forms (ListWatchSink.forms) forgets them by their texts too, and their forms are released.
import { describe, expect, it, vi } from 'vitest';
import { CompactKeys } from '../../src/controlplane/compactkeys.js';
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

  it('forgets keys a sink holds in compact forms by their texts, releasing the forms (review of s13mem #3)', async () => {
    const mem = new MemKV();
    const P = 'wiremesh/cache/ip/v2/c2/';
    const keys = [`${P}n1/100.66.0.1`, `${P}n1/100.66.0.2`, `${P}n2/100.66.1.1`, `${P}n3/fd00::1`];
    for (const k of keys) await mem.put(k, 'v1');
    const forms = new CompactKeys();
    const table = new Map<string, string>(); // the sink's: key text → value
    let answer: boolean | undefined;
    let lists = 0;
    const lw: ListWatcher = new ListWatcher(mem, P, {
      forms,
      upsert: (f, v) => {
        const k = forms.full(f);
        if (lists === 0 && k !== keys[0]) return false; // all but the first wait in the first list
        table.set(k, v);
      },
      remove: (f) => void table.delete(forms.full(f)),
      synced: () => {
        if (lists++ === 0) answer = lw.forget(keys.slice(1));
      },
    });
    void lw.start();
    await lw.firstSync();
    expect(answer).toBe(true); // held in compact forms, found by their texts: one more list
    expect(lists).toBe(2);
    expect(new Map([...table].sort())).toEqual(new Map(keys.map((k) => [k, 'v1'])));
    expect(forms.bases).toBe(3); // n1, n2, n3: each form acquired again after its release, none counted twice
    for (const k of keys) await mem.delete(k);
    await vi.waitFor(() => expect(table.size).toBe(0));
    expect(forms.bases).toBe(0); // every base went with its last key: no reference left behind by forget
    await lw.stop();
  });
});
