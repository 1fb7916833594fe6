/**
 * PrefixTrie, main's plain bit trie (bench/prefixtrie-main.ts) against the path-compressed one
 * (src/net/prefixtrie.ts), side by side in one process: heap bytes per stored prefix (after full GCs; the
 * prefixes and owner texts are made before the first reading and kept, so only the trie is counted) and nodes
 * per stored prefix, for four layouts, and ns per covering / within / insert+remove on each. Rounds alternate
 * the two; medians are printed, with new/old ratios.
 *
 * Layouts: dense IPv4 /32s (bench/memory.ts's underlay: consecutive addresses from 198.18.0.1), spread IPv4
 * /32s (random), IPv6 /128s random under one /64 (SLAAC / random interface ids), IPv4 /24 pod CIDRs
 * (bench/memory.ts's: consecutive /24s from 100.64.0.0).
 *
 * Usage: node --expose-gc --single-threaded-gc dist/bench/prefixtrie.js [N = 20000] [ROUNDS = 5], under the host
 * lock (without --single-threaded-gc, heapUsed right after gc() still counted garbage left to concurrent sweeping:
 * readings off by up to ±40 %).
 */
import { randomBytes } from 'node:crypto';
import { PrefixTrie } from '../src/net/prefixtrie.js';
import type { Prefix } from '../src/net/ip.js';
import { MainPrefixTrie } from './prefixtrie-main.js';

interface Trie {
  insert(p: Prefix, owner: string): void;
  remove(p: Prefix, owner: string): void;
  covering(p: Prefix, except?: string): string | undefined;
  within(p: Prefix, except?: string): string | undefined;
}
const impls: Record<'old' | 'new', () => Trie> = { old: () => new MainPrefixTrie<string>(), new: () => new PrefixTrie<string>() };

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

const gc = (): void => {
  for (let i = 0; i < 4; i++) (globalThis as { gc?: () => void }).gc!();
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** Nodes reachable from both roots (either layout: children in k0 / k1). */
function nodes(t: Trie): number {
  type N = { k0?: N; k1?: N } | undefined;
  const count = (n: N): number => (n ? 1 + count(n.k0) + count(n.k1) : 0);
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

interface Reading {
  bytes: number;
  nodes: number;
  covering: number;
  within: number;
  churn: number;
}

function measure(which: 'old' | 'new', make: (i: number) => Prefix, n: number): Reading {
  const stored = Array.from({ length: n }, (_, i) => make(i));
  const owners = stored.map((_, i) => `node-${i}`);
  const extra = Array.from({ length: 2000 }, (_, i) => make(n + i));
  // probes: every stored prefix (a hit), and as many fresh ones of the layout (mostly misses when spread)
  const probes = stored.flatMap((p, i) => [p, make(n + 2000 + i)]);
  gc();
  const before = process.memoryUsage().heapUsed;
  const t = impls[which]();
  for (let i = 0; i < n; i++) t.insert(stored[i]!, owners[i]!);
  gc();
  const bytes = (process.memoryUsage().heapUsed - before) / n;
  const r: Reading = {
    bytes,
    nodes: nodes(t) / n,
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

function main(): void {
  const n = Number(process.argv[2] ?? 20000);
  const rounds = Number(process.argv[3] ?? 5);
  console.log(`PrefixTrie old (main) vs new (path-compressed): ${n} prefixes, ${rounds} rounds, medians; ${process.version}`);
  const cols = ['bytes', 'nodes', 'covering', 'within', 'churn'] as const;
  console.log(`| layout | B/prefix old | new | new/old | nodes/prefix old | new | covering ns old | new | new/old | within ns old | new | new/old | insert+remove ns old | new | new/old |`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|`);
  for (const [name, make] of Object.entries(layouts)) {
    const got = { old: [] as Reading[], new: [] as Reading[] };
    // a first reading of each is dropped: it counts code compiled and garbage left by the layout's first use
    measure('old', make, n);
    measure('new', make, n);
    for (let r = 0; r < rounds; r++) for (const which of r % 2 === 0 ? (['old', 'new'] as const) : (['new', 'old'] as const)) got[which].push(measure(which, make, n));
    const m = (which: 'old' | 'new', c: (typeof cols)[number]) => median(got[which].map((x) => x[c]));
    const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
    const ratio = (c: (typeof cols)[number]) => (m('new', c) / m('old', c)).toFixed(2);
    console.log(
      `| ${name} | ${f(m('old', 'bytes'))} | ${f(m('new', 'bytes'))} | **${ratio('bytes')}** | ${f(m('old', 'nodes'))} | ${f(m('new', 'nodes'))} ` +
        `| ${f(m('old', 'covering'))} | ${f(m('new', 'covering'))} | ${ratio('covering')} | ${f(m('old', 'within'))} | ${f(m('new', 'within'))} | ${ratio('within')} ` +
        `| ${f(m('old', 'churn'))} | ${f(m('new', 'churn'))} | ${ratio('churn')} |`,
    );
  }
}

main();
