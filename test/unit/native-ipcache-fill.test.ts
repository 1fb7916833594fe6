// The native ipcache's host tables (native/src/policy/ipcache.h, FlatMap: half full before doubling): seeded sequences of
// upserts, removals and lookups through a TUN-less device against a plain Map (exact match on /32 and /128 host
// entries), sized to cross several doublings, with address sets a hostile cluster could choose (consecutive
// addresses, addresses differing only in their high bits, one /64 with only the last bits varying).
import { afterEach, describe, expect, it } from 'vitest';
import { ipcacheRow } from '../../src/native/rows.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { prng } from '../helpers/prng.js';

const devs: WireGuardDevice[] = [];
afterEach(() => {
  for (const d of devs.splice(0)) d.close();
});

function device(): WireGuardDevice['native'] {
  const d = new WireGuardDevice({ createTun: false });
  devs.push(d);
  d.native.enablePolicy();
  return d.native;
}

const v4 = (x: number): Buffer => Buffer.from([x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255]);
const v6 = (x: number): Buffer => {
  const b = Buffer.alloc(16);
  b[0] = 0xfd;
  b.writeUInt32BE(x >>> 0, 12);
  return b;
};

/** Address layouts: i -> the i-th address of the set. */
const layouts: Record<string, (i: number, rand: () => number) => Buffer> = {
  'consecutive IPv4': (i) => v4(((100 << 24) | (64 << 16)) + i),
  'IPv4 differing in the high bits': (i) => v4(((i & 0xff) << 24) | ((i >>> 8) & 0xff) << 16 | 7),
  'random IPv4': (_, rand) => v4(Math.floor(rand() * 2 ** 32)),
  'IPv6, one /64, the last bits': (i) => v6(i),
};

/**
 * n rounds of a random operation on a pool of `pool` addresses: upsert (new identity), remove, or a batch of
 * lookups, checked against the Map after each round; then every address of the pool looked up.
 */
function run(seed: number, layout: (i: number, rand: () => number) => Buffer, pool: number, rounds: number): void {
  const rand = prng(seed);
  const dev = device();
  const addrs = Array.from({ length: pool }, (_, i) => layout(i, rand));
  const want = new Map<string, number>();
  const check = (a: Buffer): void => {
    const got = dev.ipcacheLookup(a);
    const id = want.get(a.toString('hex'));
    expect(got === null ? null : got.identity, a.toString('hex')).toBe(id ?? null);
  };
  for (let r = 0; r < rounds; r++) {
    const op = rand();
    // batches of upserts (the agent's sync) more often than removals, so the table grows through several doublings
    const batch = Array.from({ length: 1 + Math.floor(rand() * 200) }, () => addrs[Math.floor(rand() * pool)]!);
    if (op < 0.6) {
      const rows = batch.map((a) => {
        const id = 256 + Math.floor(rand() * 100_000);
        want.set(a.toString('hex'), id);
        return ipcacheRow(a, a.length * 8, id, 0);
      });
      dev.ipcacheUpdate(Buffer.concat(rows), Buffer.alloc(0));
    } else if (op < 0.8) {
      for (const a of batch) want.delete(a.toString('hex'));
      dev.ipcacheUpdate(Buffer.alloc(0), Buffer.concat(batch.map((a) => ipcacheRow(a, a.length * 8, 0, 0))));
    } else {
      for (const a of batch) check(a);
    }
    expect(dev.counters().ipcache_entries).toBe(want.size);
  }
  for (const a of addrs) check(a);
}

describe('native ipcache host tables: seeded sequences against a Map', () => {
  for (const [name, layout] of Object.entries(layouts))
    for (const seed of [1, 2])
      it(`${name}, seed ${seed}`, () => run(seed * 7919 + name.length, layout, 6000, 300));

  // s30ipc: a slot holds a 32-bit code, the identity itself for a remote endpoint's value (no local endpoint, identity
  // below 2^31) and an index into the table's local values otherwise; 0xFFFFFFFF marks a free slot. Every value the
  // row format carries must read back whole: local endpoints, identities from 2^31 up to 0xFFFFFFFF (the free mark
  // itself), 0 and 2^31 - 1, a value changing kind in place, across doublings and removals, in /32, /24 and /128.
  it('any (identity, endpoint) reads back whole, whichever kind of code holds it, as entries change kind in place', () => {
    for (const seed of [11, 12, 13]) {
      const rand = prng(seed);
      const dev = device();
      const pool = Array.from({ length: 3000 }, (_, i) => (i % 3 === 2 ? { a: v6(i), len: 128 } : { a: v4(((100 << 24) | (64 << 16)) + i * (i % 3 === 1 ? 256 : 1)), len: i % 3 === 1 ? 24 : 32 }));
      const want = new Map<string, { identity: number; endpoint: number }>();
      const pick = (): { identity: number; endpoint: number } => {
        const x = rand();
        const identity = x < 0.1 ? 0xffffffff : x < 0.2 ? 2 ** 31 + Math.floor(rand() * 2 ** 31) : x < 0.25 ? 2 ** 31 - 1 : x < 0.3 ? 0 : x < 0.33 ? 2 ** 31 : 256 + Math.floor(rand() * 100_000);
        return { identity, endpoint: rand() < 0.3 ? 1 + Math.floor(rand() * 2 ** 32 - 1) : 0 };
      };
      const key = (e: { a: Buffer; len: number }) => `${e.a.toString('hex')}/${e.len}`;
      for (let r = 0; r < 200; r++) {
        const batch = Array.from({ length: 1 + Math.floor(rand() * 150) }, () => pool[Math.floor(rand() * pool.length)]!);
        if (rand() < 0.7) {
          const rows = batch.map((e) => {
            const v = pick();
            want.set(key(e), v);
            return ipcacheRow(e.a, e.len, v.identity, v.endpoint);
          });
          dev.ipcacheUpdate(Buffer.concat(rows), Buffer.alloc(0));
        } else {
          for (const e of batch) want.delete(key(e));
          dev.ipcacheUpdate(Buffer.alloc(0), Buffer.concat(batch.map((e) => ipcacheRow(e.a, e.len, 0, 0))));
        }
        expect(dev.counters().ipcache_entries).toBe(want.size);
        // the values held beside the slots are exactly the entries that need one: none leaks, none is shared
        expect(dev.counters().ipcache_local_values).toBe([...want.values()].filter((v) => v.endpoint !== 0 || v.identity >= 2 ** 31).length);
      }
      // longest-prefix match from the rows held (lengths 32 and 24 for IPv4, 128 for IPv6)
      const lpm = (a: Buffer) => {
        if (a.length === 16) return want.get(`${a.toString('hex')}/128`) ?? null;
        const base = Buffer.from([a[0]!, a[1]!, a[2]!, 0]);
        return want.get(`${a.toString('hex')}/32`) ?? want.get(`${base.toString('hex')}/24`) ?? null;
      };
      for (const e of pool) expect(dev.ipcacheLookup(e.a), key(e)).toEqual(lpm(e.a));
    }
  });

  it('a table exactly at its fill limit and one entry past it keeps every entry (the doubling in between)', () => {
    const dev = device();
    // 16-slot table: 8 entries fill it to 1/2, the 9th doubles it; then 16 / 17 for the 32-slot table (and the
    // 3/4 limits s22native measured, 12 / 13, 24 / 25: docs/benchmarks.md)
    for (const n of [8, 9, 11, 12, 13, 16, 17, 24, 25, 96, 97, 2048, 2049, 3072, 3073]) {
      const rows = Array.from({ length: n }, (_, i) => ipcacheRow(v4(((198 << 24) | (51 << 16)) + i), 32, 256 + i, 0));
      dev.ipcacheUpdate(Buffer.concat(rows), Buffer.alloc(0));
      for (let i = 0; i < n; i++) expect(dev.ipcacheLookup(v4(((198 << 24) | (51 << 16)) + i))?.identity).toBe(256 + i);
      expect(dev.ipcacheLookup(v4(((198 << 24) | (51 << 16)) + n))).toBeNull();
    }
  });
});
