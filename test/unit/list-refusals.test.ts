// The readers that list a prefix themselves (not through ListWatcher) count what they refuse, as ListWatcher's
// sinks do: the identity collector (kvstoremesh) and the agent's namespace load. Before, the store's refusals
// (bytes that are not valid UTF-8) and the collector's decode failures were dropped unseen.
import { describe, expect, it } from 'vitest';
import { statePrefix, stateKey } from '../../src/controlplane/keys.js';
import { VALUE_NOT_UTF8 } from '../../src/controlplane/etcdwatch.js';
import { KVStoreMeshMetrics } from '../../src/controlplane/meshmetrics.js';
import { Rejections } from '../../src/controlplane/records/index.js';
import { IdentityCollector, type CollectorStore } from '../../src/identity/allocator.js';
import { silentLogger } from '../../src/log.js';

describe('list() callers count their refusals', () => {
  it('regression: the identity collector counts a record the store refused and one that does not decode (logged, in metrics)', async () => {
    const prefix = statePrefix('identities', 'c1');
    const store: CollectorStore = {
      list: async (p, rejected) => {
        expect(p).toBe(prefix);
        rejected?.(stateKey('identities', 'c1', '1001'), VALUE_NOT_UTF8);
        return [{ key: stateKey('identities', 'c1', '1002'), value: '{', modRevision: '5' }];
      },
      keys: async () => [],
      deleteIfUnchanged: async () => false,
    };
    const rejections = new Rejections(silentLogger);
    await new IdentityCollector(store, 'c1', silentLogger, rejections).sweep();
    expect(rejections.recent.map((e) => [e.key, e.type, e.reason])).toEqual([
      [stateKey('identities', 'c1', '1001'), 'identity', 'not-json'],
      [stateKey('identities', 'c1', '1002'), 'identity', 'not-json'],
    ]);
    const mesh = { failures: { chain: 0, status: 0, statusPut: 0, start: 0, lease: 0 }, pending: () => ({ unpurged: 0, startRetries: 0 }), statusPutMs: 5000, lateWrites: 0, rejections };
    const text = await new KVStoreMeshMetrics('c1', mesh as never).text();
    expect(text).toContain('wiremesh_kvstoremesh_rejected_records_total{origin="c1",type="identity",reason="not-json",cluster="c1"} 2\n');
  });
});
