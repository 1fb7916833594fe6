// PolicyDatapath.setNode with the previous addresses given by the caller (s23node: the peer reconciler keeps them in
// its node record, the data path keeps no copy per node) against the same data path keeping them itself (the
// representation before): seeded sequences of node changes (one address or several, IPv4 and IPv6, addresses shared
// between nodes and with endpoints, removal, changes back and forth) give the same ipcache, owners and native table.
import { describe, expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { prng } from '../helpers/prng.js';

const log = { info: () => undefined, warn: () => undefined, debug: () => undefined, error: () => undefined };
const settle = () => new Promise((r) => setImmediate(r));
const make = () => {
  const dev = new FakeDevice();
  return { dp: new PolicyDatapath(dev, 'c1', 'n1', { defaultLocalCluster: true }, log as never), native: dev.ipcache };
};
const kept = (dp: PolicyDatapath): Map<string, unknown> => (dp as unknown as { nodeAddresses: Map<string, unknown> }).nodeAddresses;

const POOL = ['198.18.1.1', '198.18.1.2', '198.18.1.3', '198.18.2.1', 'fd00::1', 'fd00::2', 'fd00:1::7', '100.64.0.5'];
const IDS = ['c1/n1', 'c1/n2', 'c2/a', 'c2/b', 'c3/x'];

describe('PolicyDatapath node addresses kept by the caller', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    it(`seed ${seed}: the same ipcache as the data path keeping them itself`, async () => {
      const rnd = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const ref = make();
      const sut = make();
      const last = new Map<string, readonly string[]>(); // the caller's own record of each node's addresses
      for (let step = 0; step < 300; step++) {
        const id = pick(IDS);
        const x = rnd();
        if (x < 0.1) {
          // an endpoint on a node address (ipcache precedence: the node's claim wins, and stays when the node changes)
          const ip = pick(POOL);
          for (const { dp } of [ref, sut]) dp.upsertEndpoint(`k/${ip}`, { ip, cluster: 'c2', node: 'a', namespace: 'y', name: 'p', labels: { pod: 'p' }, identity: 0x10101 }, undefined);
        } else if (x < 0.3) {
          ref.dp.setNode(id, null);
          sut.dp.setNode(id, null, last.get(id) ?? null);
          last.delete(id);
        } else {
          // one address (most nodes), or several; a new array each time, sometimes the same content
          const n = rnd() < 0.6 ? 1 : 2 + Math.floor(rnd() * 3);
          const addrs = [...new Set(Array.from({ length: n }, () => pick(POOL)))];
          ref.dp.setNode(id, addrs);
          sut.dp.setNode(id, addrs, last.get(id) ?? null);
          last.set(id, addrs);
        }
        for (const a of POOL) {
          expect(sut.dp.ipcache.get(a), `step ${step} ${a}`).toEqual(ref.dp.ipcache.get(a));
          expect(sut.dp.ipcache.ownersOf(a), `step ${step} ${a} owners`).toEqual(ref.dp.ipcache.ownersOf(a));
        }
        expect(kept(sut.dp).size).toBe(0);
        if (step % 25 === 0) {
          await settle();
          expect(new Map(sut.native)).toEqual(new Map(ref.native));
        }
      }
      for (const id of IDS) {
        ref.dp.setNode(id, null);
        sut.dp.setNode(id, null, last.get(id) ?? null);
      }
      await settle();
      expect(new Map(sut.native)).toEqual(new Map(ref.native));
      for (const a of POOL) expect(sut.dp.ipcache.ownersOf(a).filter((o) => o.kind === 'node')).toEqual([]);
    });
  }

  it('without `previous` (our own node) the last addresses are still kept here and removed on a change', async () => {
    const { dp, native } = make();
    dp.setNode('c1/n1', ['198.18.1.10', 'fd00::10']);
    await settle();
    expect(native.has('fd00::10/128')).toBe(true);
    dp.setNode('c1/n1', ['198.18.1.10']);
    await settle();
    expect([native.has('198.18.1.10/32'), native.has('fd00::10/128'), kept(dp).size]).toEqual([true, false, 1]);
    dp.setNode('c1/n1', null);
    await settle();
    expect([native.has('198.18.1.10/32'), kept(dp).size]).toEqual([false, 0]);
  });
});
