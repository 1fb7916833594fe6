// The lease a kvstoremesh keeps its heartbeat and remote statuses under: 60 s by default (each keep-alive, every
// TTL/3, wakes an idle etcd ~50 times: at the old 15 s it was a sixth of a one-member etcd's idle wakes), or the
// TTL it was given.
import { describe, expect, it } from 'vitest';
import { DEFAULT_BUDGET, KVStoreMesh, LEASE_TTL_S } from '../../src/controlplane/kvstoremesh.js';
import type { MeshLocal } from '../../src/controlplane/mirrorwriter.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { silentLogger } from '../../src/log.js';
import { meshLocalOf } from './meshfakes.js';

/** A MeshLocal on a MemKV that records the TTL of every lease taken. */
function recording(): { local: MeshLocal; ttls: number[] } {
  const base = meshLocalOf(new MemKV());
  const ttls: number[] = [];
  return { local: { ...base, lease: (ttl) => (ttls.push(ttl), base.lease(ttl)) }, ttls };
}

describe('kvstoremesh: its lease', () => {
  it('is taken with a 60 s TTL by default (15 s before: 4 keep-alives a minute to the local etcd instead of 12)', async () => {
    const { local, ttls } = recording();
    const mesh = new KVStoreMesh('c1', local, silentLogger, 60_000, DEFAULT_BUDGET);
    await mesh.start();
    await mesh.stop();
    expect(LEASE_TTL_S).toBe(60);
    expect(ttls).toEqual([60]);
  });

  it('takes the TTL it is given', async () => {
    const { local, ttls } = recording();
    const mesh = new KVStoreMesh('c1', local, silentLogger, 60_000, DEFAULT_BUDGET, { leaseTtlS: 20 });
    await mesh.start();
    await mesh.stop();
    expect(ttls).toEqual([20]);
  });
});
