/**
 * PrefixTrie of this tree (src/net/prefixtrie.ts) against another build's (--base DIR: a built checkout, e.g.
 * main), side by side in one process: bytes per stored prefix and per trie node (heap used + array buffers,
 * after full GCs: this tree's nodes are typed arrays, off the JS heap once large; the prefixes and owner texts
 * are made before the first reading and kept, so only the trie is counted), nodes per stored prefix, and ns per
 * insert (building the trie), covering / within (every stored prefix and as many fresh ones), insert+remove of
 * a fresh prefix. Rounds alternate the two builds; medians are printed, with this/base ratios.
 *
 * Layouts: dense IPv4 /32s (bench/memory.ts's underlay: consecutive addresses from 198.18.0.1), spread IPv4
 * /32s (random), IPv6 /128s random under one /64 (SLAAC / random interface ids), IPv4 /24 pod CIDRs
 * (bench/memory.ts's: consecutive /24s from 100.64.0.0).
 *
 * Usage: node --expose-gc --single-threaded-gc dist/bench/prefixtrie.js --base /work/main [--n 20000]
 * [--rounds 5], under the host lock (without --single-threaded-gc, heapUsed right after gc() still counted
 * garbage left to concurrent sweeping: readings off by up to ±40 %).
 */
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PrefixTrie } from '../src/net/prefixtrie.js';
import type { Prefix } from '../src/net/ip.js';
import { alternateRounds, arg, fullGc, used } from './util.js';

interface Trie {
  insert(p: Prefix, owner: string): void;
  remove(p: Prefix, owner: string): void;
  covering(p: Prefix, except?: string): string | undefined;
  within(p: Prefix, except?: string): string | undefined;
}
type Which = 'this' | 'base';

const v4 = (x: number, cidr: number): Prefix => {
  const addr = Buffer.alloc(4);
  addr.writeUInt32BE(x >>> 0);
  return { addr, cidr };
};
const slash64 = randomBytes(8);
const layouts: Record<string, (i: number) => Prefix> = {
  'dense IPv4 /32': (i) => v4(((198 << 24) | (18 << 16)) + i + 1, 32),
  'spread IPv4 /32': () => ({ addr: randomBytes(4), cidr: 32 }),
  'IPv6 /128 under one /64': () => ({ addr: Buffer.concat([slash64, randomBytes(8)]), cidr: 128 }),
  'IPv4 /24 pod CIDRs': (i) => v4(((100 << 24) | (64 << 16)) + i * 256, 24),
};

/** Nodes of both families: objects with k0 / k1 (main's layout), or node stores counting theirs (`live`). */
function nodes(t: Trie): number {
  type N = { k0?: N; k1?: N; live?: number } | undefined;
  const count = (n: N): number => (n ? (n.live ?? 1 + count(n.k0) + count(n.k1)) : 0);
  const f = t as unknown as { v4: N; v6: N };
  return count(f.v4) + count(f.v6);
}

/** ns per call of f over the probes, the loop repeated until ~200 ms passed. */
function timeIt(probes: Prefix[], f: (p: Prefix) => unknown): number {
  let sink = 0;
  let calls = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < 200_000_000n) {
    for (const p of probes) if (f(p) !== undefined) sink++;
    calls += probes.length;
    elapsed = process.hrtime.bigint() - start;
  }
  if (sink < 0) console.log(sink);
  return Number(elapsed) / calls;
}

const cols = ['bytes', 'perNode', 'nodes', 'insert', 'covering', 'within', 'churn'] as const;
type Reading = Record<(typeof cols)[number], number>;

function measure(make: () => Trie, stored: Prefix[], owners: string[], probes: Prefix[], extra: Prefix[]): Reading {
  const n = stored.length;
  fullGc();
  const before = used();
  const t = make();
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) t.insert(stored[i]!, owners[i]!);
  const insert = Number(process.hrtime.bigint() - start) / n;
  fullGc();
  const bytes = used() - before;
  const r: Reading = {
    bytes: bytes / n,
    perNode: bytes / nodes(t),
    nodes: nodes(t) / n,
    insert,
    covering: timeIt(probes, (p) => t.covering(p)),
    within: timeIt(probes, (p) => t.within(p)),
    churn: timeIt(extra, (p) => {
      t.insert(p, 'x');
      t.remove(p, 'x');
      return undefined;
    }),
  };
  if (t.covering(stored[0]!) !== owners[0]) throw new Error('wrong answer');
  return r;
}

async function main(): Promise<void> {
  const base = resolve(arg('base', ''));
  const n = Number(arg('n', '20000'));
  const rounds = Number(arg('rounds', '5'));
  const mod = (await import(pathToFileURL(join(base, 'dist/src/net/prefixtrie.js')).href)) as { PrefixTrie: new () => Trie };
  const impls: Record<Which, () => Trie> = { this: () => new PrefixTrie<string>(), base: () => new mod.PrefixTrie() };
  console.log(`PrefixTrie this vs base (${base}): ${n} prefixes, medians of ${rounds} alternating rounds; ${process.version}`);
  console.log('| layout | build | B/prefix | B/node | nodes/prefix | insert ns | covering ns | within ns | insert+remove ns |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [name, make] of Object.entries(layouts)) {
    const stored = Array.from({ length: n }, (_, i) => make(i));
    const owners = stored.map((_, i) => `node-${i}`);
    const extra = Array.from({ length: 2000 }, (_, i) => make(n + i));
    // probes: every stored prefix (a hit), and as many fresh ones of the layout (mostly misses when spread)
    const probes = stored.flatMap((p, i) => [p, make(n + 2000 + i)]);
    // a first reading of each is dropped: it counts code compiled and garbage left by the layout's first use
    for (const which of ['this', 'base'] as const) measure(impls[which], stored, owners, probes, extra);
    const m = alternateRounds(rounds, (which) => measure(impls[which], stored, owners, probes, extra));
    const med = (which: Which, c: (typeof cols)[number]): number => m[which][c];
    const f = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
    for (const which of ['this', 'base'] as const) console.log(`| ${name} | ${which} | ${cols.map((c) => f(med(which, c))).join(' | ')} |`);
    console.log(`| ${name} | this/base | ${cols.map((c) => `**${(med('this', c) / med('base', c)).toFixed(2)}**`).join(' | ')} |`);
  }
}

void main();
