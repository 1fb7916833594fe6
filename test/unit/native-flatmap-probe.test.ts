// FlatMap's multiply-shift hash (native/src/policy/flatmap.h) over structured uint32 key sets: the key sets pods
// and identities really have (consecutive addresses, a /24 per node, addresses strided by 2^8 or 2^16, a cluster id
// in the high bits over consecutive numbers), and remote clusters choose them. Each table draws its own secret seeds,
// so many tables of one key set sample the seeds; every one must probe as random keys do. The figure is linear
// probing's slots per successful lookup, computed from the keys' home slots (testhooks flatmapProbeCost: no timing),
// held to the random-hashing expectation 1/2 (1 + 1/(1 - a)) at load a with 2x slack, and the longest run of
// occupied slots to 3x its random-hashing order, ln(slots) / (a - 1 - ln a) (runs of length L occur with odds
// falling as e^(-L (a - 1 - ln a))). Plain a*k + b failed this for 5-10% of tables (some reading 13-3400 slots per
// hit); random keys, hashed alike, are the control. Two sizes: just under a half-full and a 3/4-full table of
// 2^18 slots, each table's fill limit (FlatMap's kMaxLoad8) reached by one of them.
import { describe, expect, it } from 'vitest';
import { testhooks } from '../../src/native/testhooks.js';
import { prng } from '../helpers/prng.js';

/** Key sets of n keys: i -> the i-th key. */
const sets: Record<string, (i: number, rand: () => number) => number> = {
  'consecutive (a pod CIDR)': (i) => 0x64400000 + i,
  'strided by 2^8': (i) => 0x0a000007 + i * 256,
  'strided by 2^16 (65536 keys)': (i) => 7 + (i % 65536) * 65536,
  '10 per /24 (a grid)': (i) => 0x0a000000 + Math.floor(i / 10) * 256 + (i % 10),
  '200 per /24': (i) => 0x0a000000 + Math.floor(i / 200) * 256 + (i % 200),
  'cluster id in the high 16 bits, consecutive low': (i) => ((i % 16) << 16) + 256 + Math.floor(i / 16),
  'cluster id in the high 8 bits': (i) => (((i % 255) + 1) << 24) + Math.floor(i / 255),
  random: (_, rand) => Math.floor(rand() * 2 ** 32),
};

function keys(name: string, n: number): Uint32Array {
  const rand = prng(7);
  const f = sets[name]!;
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = f(i, rand) >>> 0;
  return out;
}

const TABLES = 16;

/**
 * n keys in TABLES tables of `table`; every table's slots per hit within 2x of linear probing's expectation at its
 * load, and its longest run within 3x of random hashing's order.
 */
function check(table: 'ipcache4' | 'identity', name: string, n: number): void {
  const k = keys(name, n);
  const distinct = new Set(k).size;
  const r = testhooks.flatmapProbeCost(table, k, TABLES);
  const load = distinct / r.slots;
  const expected = 0.5 * (1 + 1 / (1 - load));
  const worst = Math.max(...r.meanHit);
  const longest = Math.max(...r.longest);
  const maxRun = (3 * Math.log(r.slots)) / (load - 1 - Math.log(load));
  const msg = `${table} ${name}: ${distinct} keys in ${r.slots} slots (load ${load.toFixed(3)}, expected ${expected.toFixed(2)} slots per hit): worst ${worst.toFixed(2)}, longest run ${longest} (bound ${maxRun.toFixed(0)})`;
  expect(r.meanHit.length, msg).toBe(TABLES);
  expect(worst, msg).toBeLessThanOrEqual(2 * expected);
  expect(longest, msg).toBeLessThanOrEqual(maxRun);
}

describe('FlatMap multiply-shift over structured uint32 keys (probe cost, many seeds)', () => {
  // Just under a doubling: the table at its fill limit, where clustering costs most.
  for (const name of Object.keys(sets)) {
    it(`ipcache IPv4 table: ${name}`, () => {
      check('ipcache4', name, 131000);
      check('ipcache4', name, 196000);
    });
  }
  it('policy map identities: cluster id in the high 16 bits, consecutive low', () => {
    check('identity', 'cluster id in the high 16 bits, consecutive low', 32000);
  });
  it('rejects a bad table name or key array', () => {
    expect(() => testhooks.flatmapProbeCost('nope' as 'identity', new Uint32Array(1), 1)).toThrow(TypeError);
    expect(() => testhooks.flatmapProbeCost('identity', new Int32Array(1) as unknown as Uint32Array, 1)).toThrow(TypeError);
  });
});
