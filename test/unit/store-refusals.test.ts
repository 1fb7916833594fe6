// What the store itself refuses under a ListWatcher (a key or value that is not valid UTF-8) is counted with the
// decoders' refusals: in the agent's Rejections (wiremesh_records_rejected_total, status) and in kvstoremesh's under
// the remote (wiremesh_kvstoremesh_rejected_records_total, the remote's status). Before, ListWatcher counted them in
// `rejectedEvents` only, which no metric and no status showed. A relist, which lists them again, does not count
// them again; a key that is not text names no cluster (origin "", not its hex).
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { KEY_NOT_UTF8, VALUE_NOT_UTF8 } from '../../src/controlplane/etcdwatch.js';
import { decoded, ListWatcher, type KVStore, type WatchHandlers } from '../../src/controlplane/kvstore.js';
import { DEFAULT_BUDGET, RemoteReplication } from '../../src/controlplane/kvstoremesh.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { nodeCodec, Rejections, Trust } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { agentOn, nodeKey } from '../helpers/admitting-agent.js';
import { mirrorOf, node as meshNode } from './meshfakes.js';
import { stateKey, syncedKey, syncedPrefix } from '../../src/controlplane/keys.js';

const BINARY_KEY = 'ff00'; // as etcdwatch.ts reports a key that is not text: in hex

/**
 * `mem` as a store that also refuses, in every list of a prefix, the records `refused` names under it (as EtcdStore
 * reports bytes that are not valid UTF-8); `watching` holds each prefix's watch handlers (a test calls their
 * `rejected` as the watch would).
 */
function refusing(mem: MemKV, refused: Array<{ under: string; key: string; reason: string; rev?: string }>) {
  const watching = new Map<string, WatchHandlers>();
  const store: KVStore = {
    list: async (prefix, rejected) => {
      for (const r of refused) if (r.under === prefix) rejected?.(r.key, r.reason, r.rev);
      return mem.list(prefix);
    },
    watch: (prefix, from, h) => {
      watching.set(prefix, h);
      return mem.watch(prefix, from, h);
    },
  };
  return { store, watching };
}

/** Forces a relist of every watch on `mem`: an outage whose history is compacted. */
async function relist(mem: MemKV): Promise<void> {
  mem.disconnect();
  for (let i = 0; i < 2; i++) await mem.put('unwatched/x', String(i)); // history past every watch's next revision
  mem.compact(mem.revision);
  mem.reconnect();
}

describe("a store's refusals under ListWatcher are counted as the decoders' are", () => {
  it('regression: the agent counts them by the cluster the key names (once across relists, again on the watch)', async () => {
    const mem = new MemKV();
    const prefix = 'wiremesh/cache/nodes/v1/';
    const { store, watching } = refusing(mem, [
      { under: prefix, key: nodeKey('bad'), reason: VALUE_NOT_UTF8, rev: '5' },
      { under: prefix, key: BINARY_KEY, reason: KEY_NOT_UTF8 },
    ]);
    const { rejections, watchers } = agentOn(store);
    const lw = watchers.find((w) => (w as unknown as { prefix: string }).prefix === prefix)!;
    void lw.start();
    await lw.firstSync();
    const counted = () => rejections.recent.map((e) => `${e.origin}|${e.type}|${e.reason}|${e.key}`);
    expect(counted()).toEqual([`c2|node|not-json|${nodeKey('bad')}`, `|node|key|${BINARY_KEY}`]); // before: []
    await relist(mem);
    await vi.waitFor(() => expect(lw.rejectedEvents).toBe(4), { timeout: 5000 }); // listed again, seen again...
    expect(rejections.total).toBe(2); // ...but not counted again
    watching.get(prefix)!.rejected!(nodeKey('bad'), VALUE_NOT_UTF8, '5'); // a refused write on the watch: a new one
    expect(rejections.total).toBe(3);
    expect(rejections.rows()).toContainEqual({ origin: 'c2', type: 'node', reason: 'not-json', count: 2 });
    await lw.stop();
  });

  it('regression: the agent counts those under its sync markers (wiremesh/synced/) as sync-marker refusals of the cluster the key names, once across relists (before: logged, in rejectedEvents only)', async () => {
    const mem = new MemKV();
    await mem.put(syncedKey('c2', 'nodes'), '{}');
    const { store } = refusing(mem, [
      { under: syncedPrefix(), key: syncedKey('c3', 'nodes'), reason: VALUE_NOT_UTF8, rev: '4' },
      { under: syncedPrefix(), key: BINARY_KEY, reason: KEY_NOT_UTF8 },
    ]);
    const { rejections, watchers } = agentOn(store, [syncedPrefix()]);
    const lw = watchers[0]!;
    void lw.start();
    await lw.firstSync();
    const counted = () => rejections.recent.map((e) => `${e.origin}|${e.type}|${e.reason}|${e.key}`);
    expect(counted()).toEqual([`c3|sync-marker|not-json|${syncedKey('c3', 'nodes')}`, `|sync-marker|key|${BINARY_KEY}`]); // before: []
    await relist(mem);
    await vi.waitFor(() => expect(lw.rejectedEvents).toBe(4), { timeout: 5000 });
    expect(rejections.rows()).toEqual([
      { origin: 'c3', type: 'sync-marker', reason: 'not-json', count: 1 },
      { origin: '', type: 'sync-marker', reason: 'key', count: 1 },
    ]);
    await lw.stop();
  });

  it('regression: logged once, by the rejections, not by ListWatcher too (which logs only for a sink that does not count)', async () => {
    const lines: string[] = [];
    const by = (o: { msg: string; prefix?: string }) => `${o.msg} (${o.prefix === undefined ? 'rejections' : 'ListWatcher'})`;
    const log = pino({ level: 'warn' }, new Writable({ write: (c, _e, cb) => void (lines.push(by(JSON.parse(String(c)))), cb()) }));
    const mem = new MemKV();
    const { store } = refusing(mem, [{ under: 'p/', key: 'p/a', reason: VALUE_NOT_UTF8, rev: '3' }]);
    const counting = new ListWatcher(store, 'p/', decoded(nodeCodec, { upsert: () => undefined, remove: () => undefined }, new Rejections(log)), log);
    const plain = new ListWatcher(store, 'p/', { upsert: () => undefined, remove: () => undefined }, log);
    for (const w of [counting, plain]) void w.start();
    await Promise.all([counting.firstSync(), plain.firstSync()]);
    expect(lines.sort()).toEqual(['record rejected (ListWatcher)', 'record rejected (rejections)']); // the plain sink's, the counting one's
    await Promise.all([counting.stop(), plain.stop()]);
  });

  it("regression: kvstoremesh counts them as the remote's (its status, the metric)", async () => {
    const remote = new MemKV();
    const local = new MemKV();
    await remote.put(stateKey('nodes', 'c2', 'n1'), meshNode('c2', 2, 'n1'));
    const { store } = refusing(remote, [{ under: 'wiremesh/state/nodes/v1/c2/', key: stateKey('nodes', 'c2', 'bad'), reason: VALUE_NOT_UTF8, rev: '2' }]);
    const pinned = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.pin(pinned);
    const rejections = new Rejections(silentLogger);
    const r = new RemoteReplication({ name: 'c2', endpoints: [] }, pinned, trust, mirrorOf(local), silentLogger, rejections, DEFAULT_BUDGET, () => ({ store, close: () => undefined }));
    await r.start();
    await vi.waitFor(() => expect(r.status().synced.nodes).toBe(true), { timeout: 5000 });
    expect(r.status().rejected).toEqual({ 'node/not-json': 1 }); // before: no rejection
    expect(r.status().recentRejections?.map((e) => e.key)).toEqual([stateKey('nodes', 'c2', 'bad')]);
    await r.stop(false, 1000);
  });
});
