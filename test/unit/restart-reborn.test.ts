// A key the remote deleted and created again while its replication was down (kvstoremesh restarting, or the
// replication rebuilt for a new pin or spec) must reach the cache as a new incarnation, not as an update in place:
// the new replication's ListWatcher has seen no create revision of it, so the first list compares the remote value
// with the cached copy instead (cachedcopies.ts). Reviewer's repro of the exception docs/security.md stated: the
// agent kept n1's deleted value admitted when it refused the new one. Keys that did not change must not blip, nor
// keys only updated: created below the type's watermark (watermark.ts), their cached copy is of their incarnation.
import { describe, expect, it, vi } from 'vitest';
import { stateKey } from '../../src/controlplane/keys.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { Rejections, Trust } from '../../src/controlplane/records/index.js';
import { DEFAULT_BUDGET, RemoteReplication } from '../../src/controlplane/replication.js';
import { silentLogger } from '../../src/log.js';
import { agentOn, node, nodeKey } from '../helpers/admitting-agent.js';
import { mirrorOf } from './meshfakes.js';

const soon = { timeout: 5000 };
const pinned = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
const src = (n: string) => stateKey('nodes', 'c2', n);
const rec = (n: string, cidrs: string[], addr: string, pk: string) => JSON.stringify(node(n, cidrs, addr, pk));

function replication(remote: MemKV, local: MemKV) {
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin(pinned);
  return new RemoteReplication({ name: 'c2', endpoints: [] }, pinned, trust, mirrorOf(local), silentLogger, new Rejections(silentLogger), DEFAULT_BUDGET, () => ({ store: remote, close: () => undefined }));
}

describe('a replication restarted while the remote re-created a key', () => {
  it('regression: the re-created key is copied as a new incarnation (the agent withdraws the refused value); unchanged keys keep theirs', async () => {
    const [remote, local] = [new MemKV(), new MemKV()];
    await remote.put(src('n1'), rec('n1', ['100.66.1.0/24'], '198.18.2.1', 'A'));
    await remote.put(src('n2'), rec('n2', ['100.66.2.0/24'], '198.18.2.2', 'B'));
    await remote.put(src('n3'), rec('n3', ['100.66.3.0/24'], '198.18.2.3', 'C'));
    let r = replication(remote, local);
    await r.start();
    const { seen, rejections, watchers } = agentOn(local);
    for (const w of watchers) void w.start();
    await vi.waitFor(() => expect([...seen.node.keys()].sort()).toEqual([nodeKey('n1'), nodeKey('n2'), nodeKey('n3')]), soon);
    const incarnation = (n: string) => local.get(nodeKey(n))?.createRevision;
    const before = { n1: incarnation('n1'), n2: incarnation('n2'), n3: incarnation('n3') };
    await r.stop(false, 1000);

    // while no replication runs: n1 deleted and created again claiming n2's pod CIDR too (a conflict: n2 was
    // admitted first), n3 updated in place with a valid value, n2 untouched
    await remote.delete(src('n1'));
    await remote.put(src('n1'), rec('n1', ['100.66.1.0/24', '100.66.2.0/25'], '198.18.2.1', 'A'));
    await remote.put(src('n3'), rec('n3', ['100.66.3.0/24'], '198.18.2.33', 'C'));
    const withdrawn: string[] = [];
    const del = seen.node.delete.bind(seen.node);
    seen.node.delete = (k) => (withdrawn.push(k), del(k));

    r = replication(remote, local);
    await r.start();
    await vi.waitFor(() => expect(r.status().synced.nodes).toBe(true), soon);
    await vi.waitFor(() => expect(rejections.recent.map((e) => `${e.key} ${e.reason}`)).toEqual([`${nodeKey('n1')} conflict`]), soon);
    await vi.waitFor(() => expect(seen.node.get(nodeKey('n3'))?.addresses).toEqual(['198.18.2.33']), soon);
    expect([...seen.node.keys()].sort()).toEqual([nodeKey('n2'), nodeKey('n3')]); // before: n1 kept ["100.66.1.0/24"]
    expect(incarnation('n1')).not.toBe(before.n1);
    // n2 did not change, n3 was updated in place: neither is a new incarnation nor ever withdrawn (before the
    // watermark, n3 was copied as delete then put: a blip)
    expect(incarnation('n2')).toBe(before.n2);
    expect(incarnation('n3')).toBe(before.n3);
    expect(withdrawn.filter((k) => k === nodeKey('n2') || k === nodeKey('n3'))).toEqual([]);
    await r.stop(false, 1000);
    await Promise.all(watchers.map((w) => w.stop()));
  });

  it('a cached key refused in the first list is still purged as stale, and one the remote holds no more is deleted', async () => {
    const [remote, local] = [new MemKV(), new MemKV()];
    await remote.put(src('n1'), rec('n1', ['100.66.1.0/24'], '198.18.2.1', 'A'));
    await remote.put(src('n2'), rec('n2', ['100.66.2.0/24'], '198.18.2.2', 'B'));
    let r = replication(remote, local);
    await r.start();
    await vi.waitFor(() => expect(local.get(nodeKey('n2'))).toBeDefined(), soon);
    await r.stop(false, 1000);
    await remote.put(src('n1'), rec('n1', ['100.65.1.0/24'], '198.18.2.1', 'A')); // outside c2's pinned pod CIDRs
    await remote.delete(src('n2'));
    r = replication(remote, local);
    await r.start();
    await vi.waitFor(() => expect(r.status().synced.nodes).toBe(true), soon);
    await vi.waitFor(() => expect(local.entries(nodeKey(''))).toEqual([]), soon);
    await r.stop(false, 1000);
  });
});
