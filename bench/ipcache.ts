/**
 * The ipcache table (src/policy/ipcache.ts) of this tree against another build's (--base DIR: a built
 * checkout, e.g. main), side by side in one process: bytes per slot (heap used + array buffers, after full GCs;
 * the addresses and owner texts are made before the first reading and kept, so only the table is counted) and ns
 * per set (a new slot), get, set of a held claim (no change), delete, and takeChanges per changed slot. Rounds
 * alternate the two builds; medians are printed, with this/base ratios.
 *
 * Layouts: dense IPv4 pod addresses (consecutive from 100.64.0.1, as bench/memory.ts's pods), spread IPv4
 * addresses (random in 100.64.0.0/10), IPv6 pod addresses (random under one /64: unchanged by the IPv4 slots,
 * a control).
 *
 * Usage: node --expose-gc --single-threaded-gc dist/bench/ipcache.js --base /work/main [--n 160000]
 * [--rounds 5], under the host lock.
 */
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatIP, formatIPv4Value } from '../src/net/ip.js';
import { IpcacheTable } from '../src/policy/ipcache.js';
import { arg, compareBuilds, fullGc, nsPer, used } from './util.js';

type Table = Pick<IpcacheTable, 'set' | 'get' | 'delete' | 'takeChanges'>;
type Make = () => Table;

const v4 = (x: number): string => formatIPv4Value(x >>> 0);
const slash64 = randomBytes(8);
const layouts: Record<string, (i: number) => string> = {
  'dense IPv4': (i) => v4(((100 << 24) | (64 << 16)) + i + 1),
  'spread IPv4': () => v4(((100 << 24) | (64 << 16)) + Math.floor(Math.random() * 2 ** 22)),
  'IPv6 under one /64': () => formatIP(Buffer.concat([slash64, randomBytes(8)])),
};

type Reading = {
  bytes: number;
  set: number;
  get: number;
  same: number;
  del: number;
  take: number;
};

function measure(make: Make, addrs: string[], owners: string[]): Reading {
  const v = { identity: 70000, endpoint: 0 };
  fullGc();
  const before = used();
  const t = make();
  const set = nsPer(addrs.length, () => addrs.forEach((a, i) => t.set(a, owners[i]!, 'endpoint', v)));
  let take = nsPer(addrs.length, () => t.takeChanges());
  fullGc();
  const bytes = (used() - before) / addrs.length;
  let sink = 0;
  const get = nsPer(addrs.length, () => addrs.forEach((a) => (sink += t.get(a)?.identity ?? 0)));
  const same = nsPer(addrs.length, () => addrs.forEach((a, i) => t.set(a, owners[i]!, 'endpoint', v)));
  const del = nsPer(addrs.length, () => addrs.forEach((a, i) => t.delete(a, owners[i]!)));
  take = (take + nsPer(addrs.length, () => t.takeChanges())) / 2;
  if (sink < 0) console.log(sink);
  return { bytes, set, get, same, del, take };
}

async function main(): Promise<void> {
  const base = resolve(arg('base', ''));
  const n = Number(arg('n', '160000'));
  const rounds = Number(arg('rounds', '5'));
  const { IpcacheTable: BaseTable } = (await import(pathToFileURL(join(base, 'dist/src/policy/ipcache.js')).href)) as { IpcacheTable: new () => Table };
  const impls: Record<'this' | 'base', Make> = { this: () => new IpcacheTable(), base: () => new BaseTable() };
  console.log(`ipcache table, ${n} slots (one endpoint owner each), medians of ${rounds} alternating rounds; base ${base}`);
  console.log('layout | build | B/slot | set ns | get ns | set held ns | delete ns | takeChanges ns/slot');
  for (const [name, make] of Object.entries(layouts)) {
    const addrs = [...new Set(Array.from({ length: n }, (_, i) => make(i)))];
    const owners = addrs.map((_, i) => `\u0001${i % 1000}/${i}`); // compact-key-like owner texts (compactkeys.ts)
    compareBuilds(name, rounds, ['bytes', 'set', 'get', 'same', 'del', 'take'], (which) => measure(impls[which], addrs, owners));
  }
}

void main();
