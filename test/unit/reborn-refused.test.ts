// A key deleted and created again whose new value admission refuses must not keep the deleted value admitted
// (review of s8: the agent's sinks dropped ListWatcher's `reborn` flag and Admission kept the last admitted value
// "while it still holds itself", right within one incarnation, wrong across a delete). The whole path: MemKV,
// ListWatcher, the agent's sinks (sinks.ts), Admission; the delete is unseen (an outage, the history compacted,
// a relist), so the new value reaches admission only as a put of a new incarnation.
import { describe, expect, it, vi } from 'vitest';
import { ListWatcher } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { agentOn, ep, epKey, node, nodeKey } from '../helpers/admitting-agent.js';

describe('admission across a delete it did not see (reborn)', () => {
  it('regression: a node re-created with a conflicting value loses its old value (and its endpoint); admitted once the conflict goes', async () => {
    const mem = new MemKV();
    await mem.put(nodeKey('n1'), JSON.stringify(node('n1', ['100.66.1.0/24'], '198.18.2.1', 'A')));
    await mem.put(nodeKey('n2'), JSON.stringify(node('n2', ['100.66.2.0/24'], '198.18.2.2', 'B')));
    await mem.put(epKey('n1', '100.66.1.10'), JSON.stringify(ep('n1', '100.66.1.10')));
    const { seen, rejections, watchers } = agentOn(mem);
    for (const w of watchers) void w.start();
    await Promise.all(watchers.map((w) => w.firstSync()));
    expect([...seen.node.keys()].sort()).toEqual([nodeKey('n1'), nodeKey('n2')]);
    expect([...seen.endpoint.keys()]).toEqual([epKey('n1', '100.66.1.10')]);

    // unseen: n1 deleted and created again claiming n2's pod CIDR too (a conflict: n2 was admitted first)
    mem.disconnect();
    await mem.delete(nodeKey('n1'));
    await mem.put(nodeKey('n1'), JSON.stringify(node('n1', ['100.66.1.0/24', '100.66.2.0/25'], '198.18.2.1', 'A')));
    mem.compact(mem.revision);
    mem.reconnect();
    await vi.waitFor(() => expect(watchers[0]!.relists).toBe(1), { timeout: 5000 });
    await vi.waitFor(() => expect(rejections.recent.map((e) => `${e.key} ${e.reason}`)).toEqual([`${nodeKey('n1')} conflict`]), { timeout: 5000 });
    expect([...seen.node.keys()]).toEqual([nodeKey('n2')]); // before: n1's deleted value stayed admitted
    expect([...seen.endpoint.keys()]).toEqual([]); // and the endpoint with it (its node is gone)

    // the candidate is kept: admitted with its new value once n2 goes, its endpoint with it
    await mem.delete(nodeKey('n2'));
    expect(seen.node.get(nodeKey('n1'))?.podCIDRs).toEqual(['100.66.1.0/24', '100.66.2.0/25']);
    expect([...seen.endpoint.keys()]).toEqual([epKey('n1', '100.66.1.10')]);
    await Promise.all(watchers.map((w) => w.stop()));
  });
});

describe('ListWatcher across a delete it did not see', () => {
  it('regression: a sink that throws on a value of a new incarnation does not keep the old value (removed, as if refused)', async () => {
    const mem = new MemKV();
    await mem.put('p/k', 'old');
    const state = new Map<string, string>();
    const sink = {
      upsert: (k: string, v: string) => {
        if (v === 'boom') throw new Error('sink bug');
        state.set(k, v);
      },
      remove: (k: string) => void state.delete(k),
    };
    const lw = new ListWatcher(mem, 'p/', sink);
    void lw.start();
    await lw.firstSync();
    mem.disconnect();
    await mem.delete('p/k');
    await mem.put('p/k', 'boom');
    mem.compact(mem.revision);
    mem.reconnect();
    await vi.waitFor(() => expect(lw.sinkErrors).toBe(1), { timeout: 5000 });
    expect([...state]).toEqual([]); // before: 'old' stayed
    await lw.stop();
  });
});
