/**
 * ListWatcher's DigestTable (src/controlplane/digesttable.ts) of this tree against another build's (--base DIR: a
 * built checkout, e.g. main), side by side in one process: bytes per key (heap used + array buffers, after full
 * GCs; the forms are made before the first reading and kept, so only the table is counted) and ns per set (a new
 * key), get, set of a held key (a new digest), keys() per key, and delete. Rounds alternate the two builds;
 * medians are printed, with this/base ratios.
 *
 * Keys: short IPv4 compact forms (compactkeys.ts), as the endpoint prefix holds them: `--per` endpoints per node
 * base, addresses consecutive in one pod CIDR (bench/memory.ts's layout). A control: plain key texts (IPv6
 * endpoint keys, which stay in the Map part in both builds).
 *
 * Usage: node --expose-gc --single-threaded-gc dist/bench/digesttable.js --base /work/main [--n 160000]
 * [--per 10] [--rounds 5], under the host lock.
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { shortIPv4Form } from '../src/controlplane/compactkeys.js';
import { DigestTable } from '../src/controlplane/digesttable.js';
import { arg, compareBuilds, fullGc, nsPer, used } from './util.js';

type Table = Pick<DigestTable, 'set' | 'get' | 'delete' | 'keys'>;
type Make = () => Table;

const KEYS = ['bytes', 'set', 'get', 'same', 'keys', 'del'] as const;
type Reading = Record<(typeof KEYS)[number], number>;

function measure(make: Make, forms: string[], digests: Float64Array): Reading {
  fullGc();
  const before = used();
  const t = make();
  const set = nsPer(forms.length, () => forms.forEach((f, i) => t.set(f, digests[i]!, i + 1)));
  fullGc();
  const bytes = (used() - before) / forms.length;
  let sink = 0;
  const get = nsPer(forms.length, () => forms.forEach((f) => (sink += t.get(f)!)));
  const same = nsPer(forms.length, () => forms.forEach((f, i) => t.set(f, digests[forms.length - 1 - i]!, i + 1)));
  const keys = nsPer(forms.length, () => {
    for (const k of t.keys()) sink += k.length;
  });
  const del = nsPer(forms.length, () => forms.forEach((f) => t.delete(f)));
  if (sink < 0) console.log(sink);
  return { bytes, set, get, same, keys, del };
}

async function main(): Promise<void> {
  const [n, per, rounds] = (['n', 'per', 'rounds'] as const).map((k) => Number(arg(k, { n: '160000', per: '10', rounds: '5' }[k])));
  const base = resolve(arg('base', ''));
  const { DigestTable: BaseTable } = (await import(pathToFileURL(join(base, 'dist/src/controlplane/digesttable.js')).href)) as { DigestTable: new () => Table };
  const impls: Record<'this' | 'base', Make> = { this: () => new DigestTable(), base: () => new BaseTable() };
  const pod = ((100 << 24) | (64 << 16)) >>> 0;
  const layouts: Record<string, string[]> = {
    [`short IPv4 forms, ${per} per base`]: Array.from({ length: n }, (_, i) => shortIPv4Form(Math.floor(i / per), pod + i)),
    'plain keys (IPv6 endpoint texts, control)': Array.from({ length: n }, (_, i) => `wiremesh/cache/ip/v2/c${i % 4}/n${Math.floor(i / per)}/fd00::${i.toString(16)}`),
  };
  const digests = Float64Array.from({ length: n }, () => Math.floor(Math.random() * 2 ** 48));
  console.log(`DigestTable, ${n} keys, medians of ${rounds} alternating rounds; base ${base}`);
  console.log('keys | build | B/key | set ns | get ns | set held ns | keys() ns/key | delete ns');
  for (const [name, forms] of Object.entries(layouts)) {
    compareBuilds(name, rounds, KEYS, (which) => measure(impls[which], forms, digests));
  }
}

void main();
