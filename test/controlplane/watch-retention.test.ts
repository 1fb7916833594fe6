// An idle etcd watch keeps no copy of its last response, against a real etcd on loopback (the regression test of
// patches/@grpc+grpc-js+*.patch; test/unit/grpc-decoder-retention.test.ts checks the decoder alone). Before the
// patch, grpc-js's decoder held slices of a stream's last message, and of its flag byte, until the next one began:
// every watch at rest kept its last response's socket reads in memory (Node's http2 hands out views of one
// ArrayBuffer per read, up to 64 KiB), up to the 64 MiB receive limit (docs/benchmarks.md s36). Measured as the
// process's ArrayBuffer bytes after a GC: what the patch frees is those reads' ArrayBuffers (unpatched: ~1 MiB
// here; with the message half of the fix alone, the flag's slice kept one read, ~64 KiB; patched: 0).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { EtcdStore } from '../../src/controlplane/kvstore.js';
import { hasCommand, waitFor } from '../../src/testbed/netns.js';
import { loopbackEtcd } from '../helpers/loopback-etcd.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** ArrayBuffer bytes live after full GCs (ArrayBuffers are freed when their wrappers are collected). */
async function liveArrayBuffers(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return process.memoryUsage().arrayBuffers;
}

describe.skipIf(!hasCommand('etcd'))('an idle etcd watch keeps no copy of its last response', () => {
  const etcd = loopbackEtcd('watchretain', 55000);
  afterAll(() => etcd.stop());

  it('after a 1 MiB value is delivered, the process holds nothing of its response', async () => {
    const client = await etcd.client();
    const store = new EtcdStore(client);
    const seen: number[] = [];
    const w = await store.watch('retain/', '1', {
      // the handler keeps the value's length only: nothing of the response is ours to hold
      put: (kv) => void seen.push(kv.value.length),
      delete: () => {},
      broken: () => {},
    });
    try {
      const VALUE = 1 << 20;
      // a small value first: the stream is up and its buffers allocated before the baseline
      await client.put('retain/small').value('x').exec();
      await waitFor(() => seen.length === 1, 5000, 'the small value delivered');
      const before = await liveArrayBuffers();
      await client.put('retain/big').value('v'.repeat(VALUE)).exec();
      await waitFor(() => seen.length === 2, 10_000, 'the 1 MiB value delivered');
      expect(seen[1]).toBe(VALUE);
      const after = await liveArrayBuffers();
      // unpatched: ≥ 1 MiB more; the flag's slice alone: one socket read (~64 KiB); patched: 0 in every run seen
      expect(after - before, `ArrayBuffer bytes: ${before} before, ${after} after`).toBeLessThan(32 * 1024);
    } finally {
      await w.cancel();
    }
  });
});
