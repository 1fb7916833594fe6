/**
 * Admission's per-node endpoint table (src/agent/nodecells.ts) of this tree against another build's (--base DIR: a
 * built checkout, e.g. main), side by side in one process: bytes per record (heap used + array buffers after full
 * GCs: the tables and what they keep of the records, the records themselves dropped first) and ns per set (a new
 * key), get, set of a held key (the same record again), entries() per entry, and delete. Rounds alternate the two
 * builds; medians are printed, with this/base ratios.
 *
 * Records: `--per` per node (one base each), addresses consecutive, names as a Deployment's pods have them
 * (`app-<w>-7d9f8c6b5-<3–5 characters>`), 50 workloads' label sets; each build packs them with its own packEndpoint
 * (a table knows its own PackedEndpoint class).
 *
 * Usage: node --expose-gc dist/bench/nodecells.js --base /work/main [--n 160000] [--per 10] [--rounds 5]
 */
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { shortIPv4Form } from '../src/controlplane/compactkeys.js';
import { formatIPv4Value } from '../src/net/ip.js';
import { arg, compareBuilds, fullGc, nsPer, used } from './util.js';

interface Build {
  ntSet(t: unknown, key: string, v: unknown): unknown;
  ntGet(t: unknown, key: string): unknown;
  ntDelete(t: unknown, key: string): unknown;
  ntEntries(t: unknown): Iterable<[string, unknown]>;
  packEndpoint(rec: unknown, nodeId: string): unknown;
  internLabels(l: Record<string, string>): unknown;
}

const KEYS = ['bytes', 'set', 'get', 'same', 'entries', 'del'] as const;
type Reading = Record<(typeof KEYS)[number], number>;

async function load(dir: string): Promise<Build> {
  const at = (p: string) => import(pathToFileURL(join(dir, 'dist/src', p)).href) as Promise<Partial<Build>>;
  return Object.assign({}, await at('agent/nodecells.js'), await at('agent/packedendpoint.js'), await at('controlplane/records/intern.js')) as Build;
}

/**
 * `n` pod names as flat strings, as a decoded record's are (a template's are cons strings of shared parts); made in
 * a frame of their own, so no temporary of the making stays in the caller's registers while the tables are read.
 */
function podNames(n: number): string[] {
  const texts = Array.from({ length: n }, (_, i) => `app-${i % 50}-7d9f8c6b5-${(i * 7919 + 12345).toString(36).slice(-5)}`);
  return JSON.parse(JSON.stringify(texts)) as string[];
}

function measure(b: Build, n: number, per: number): Reading {
  const nodes = Math.ceil(n / per);
  const keys = Array.from({ length: n }, (_, i) => shortIPv4Form(Math.floor(i / per), (0x64400000 + i) >>> 0));
  const labels = Array.from({ length: 50 }, (_, w) => b.internLabels({ app: `app-${w}`, tier: 'web' }));
  const make = (i: number, name: string) =>
    b.packEndpoint({ ip: formatIPv4Value((0x64400000 + i) >>> 0), cluster: 'c1', node: `n${Math.floor(i / per)}`, namespace: 'default', name, labels: labels[i % 50], identity: 1000 + (i % 50) }, `c1/n${Math.floor(i / per)}`);
  fullGc();
  const before = used();
  const names = podNames(n);
  let recs: unknown[] = names.map((name, i) => make(i, name));
  names.length = 0;
  const tables: unknown[] = new Array(nodes).fill(undefined);
  const set = nsPer(n, () => recs.forEach((r, i) => (tables[Math.floor(i / per)] = b.ntSet(tables[Math.floor(i / per)], keys[i]!, r))));
  const held = recs;
  recs = [];
  const heldSet = nsPer(n, () => held.forEach((r, i) => (tables[Math.floor(i / per)] = b.ntSet(tables[Math.floor(i / per)], keys[i]!, r))));
  held.length = 0;
  fullGc();
  const bytes = (used() - before) / n;
  let sink = 0;
  const get = nsPer(n, () => keys.forEach((k, i) => (sink += b.ntGet(tables[Math.floor(i / per)], k) === undefined ? 1 : 0)));
  const entries = nsPer(n, () => {
    for (const t of tables) for (const [k, v] of b.ntEntries(t)) sink += k.length + ((v as { name: string }).name.length);
  });
  const del = nsPer(n, () => keys.forEach((k, i) => (tables[Math.floor(i / per)] = b.ntDelete(tables[Math.floor(i / per)], k))));
  if (sink < 0) console.log(sink);
  return { bytes, set, get, same: heldSet, entries, del };
}

async function main(): Promise<void> {
  const [n, per, rounds] = (['n', 'per', 'rounds'] as const).map((k) => Number(arg(k, { n: '160000', per: '10', rounds: '5' }[k])));
  const base = resolve(arg('base', ''));
  const here = fileURLToPath(new URL('../..', import.meta.url));
  const builds = { this: await load(here), base: await load(base) };
  console.log(`NodeCells, ${n} records, ${per} per node, medians of ${rounds} alternating rounds; base ${base}`);
  console.log('records | build | B/record | set ns | get ns | set held ns | entries ns/entry | delete ns');
  compareBuilds(`${per} per node`, rounds, KEYS, (which) => measure(builds[which], n, per));
}

await main();
