#!/usr/bin/env node
/**
 * Where a V8 heap snapshot's bytes are (issue 16: which owner a cut should aim at), the companion of
 * cpuprofile-top.mjs. Reads one snapshot (node --heapsnapshot-signal, v8.writeHeapSnapshot, or bench:controlplane's
 * CP_MEMORY_SNAPSHOT=PREFIX: PREFIX-0 before the load, PREFIX-1 at rest) or two, and prints the second minus the
 * first:
 * - self size by kind: the node type and constructor name ("object Object", "string", "array", the typed arrays'
 *   "native system / JSArrayBufferData"), count and bytes, and bytes per item with --per N (e.g. the remote
 *   endpoints the load added);
 * - strings by length: V8 rounds a one-byte string of n characters to 16 + n bytes up to a multiple of 8 (no
 *   pointer compression), so a length names a kind of key (an 8-character endpoint key form, a 13-character
 *   address);
 * - owners: each typed array's store of 16 KiB or more, and each Map's or Set's table of 16 KiB or more, with the
 *   chain of first retainers above it (ProbeTable <- PairMap <- DigestTable <- ListWatcher), largest first;
 * - with --retainers WHAT (a constructor name, "string:LEN", or "TYPE@NAME" for a node of another type than
 *   an object: `array@(object elements)`, the elements stores of arrays): what holds those nodes, by a chain of
 *   first retainers --depth hops up (default 3), counted.
 * "First retainer" is the first strong edge met in the snapshot's order, not the dominator: a chain names an
 * owner, not the bytes it alone keeps, and V8 lists its roots first, so what a root list also reaches (the string
 * table, the startup cache, the stack) is credited to that list. Sizes are self sizes (a Map's table is its own
 * node). A flat string's name is its text (cut at 1024 characters: the "≥1024" row); a concatenated or sliced
 * string's is a placeholder, so those are counted as kinds of their own, not by length.
 *
 * Usage: node --max-old-space-size=12000 scripts/heapsnapshot-top.mjs [--per N] [--top N] [--retainers WHAT]
 *        [--depth D] [BEFORE.heapsnapshot] AFTER.heapsnapshot
 * A snapshot of an agent at 160k endpoints is ~250 MB of JSON and needs ~4 GB of heap to read.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: o, positionals: files } = parseArgs({
  allowPositionals: true,
  options: { per: { type: 'string' }, top: { type: 'string' }, retainers: { type: 'string' }, depth: { type: 'string' } },
});
if (files.length < 1 || files.length > 2) {
  console.error('usage: node scripts/heapsnapshot-top.mjs [--per N] [--top N] [--retainers WHAT] [--depth D] [BEFORE] AFTER');
  process.exit(2);
}
const PER = Number(o.per ?? 1);
const TOP = Number(o.top ?? 30);
const DEPTH = Number(o.depth ?? 3);
const OWNED_MIN = 16 * 1024;

/** The snapshot's graph with each node's first strong retainer (index and edge name). */
function load(file) {
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const m = s.snapshot.meta;
  const nf = m.node_fields.length, ef = m.edge_fields.length;
  const at = (f) => m.node_fields.indexOf(f);
  const [TYPE, NAME, SIZE, EDGES] = [at('type'), at('name'), at('self_size'), at('edge_count')];
  const nodeTypes = m.node_types[0], edgeTypes = m.edge_types[0];
  const N = s.nodes, E = s.edges, S = s.strings;
  const count = N.length / nf;
  const type = (i) => nodeTypes[N[i * nf + TYPE]];
  const name = (i) => S[N[i * nf + NAME]];
  const size = (i) => N[i * nf + SIZE];
  const parent = new Int32Array(count).fill(-1);
  const via = new Array(count);
  for (let i = 0, e = 0; i < count; i++) {
    for (let k = N[i * nf + EDGES]; k > 0; k--, e++) {
      const et = edgeTypes[E[e * ef]];
      const to = E[e * ef + 2] / nf;
      if (et === 'weak' || et === 'shortcut' || parent[to] !== -1) continue;
      parent[to] = i;
      const n = et === 'element' || et === 'hidden' ? '' : String(S[E[e * ef + 1]]);
      via[to] = /^\d*$/.test(n) ? '[]' : n; // an index (an array's, a Map table's) would make every chain its own
    }
  }
  return { count, type, name, size, parent, via };
}

const isString = (t) => t === 'string' || t === 'concatenated string' || t === 'sliced string';
/** A flat string's length class (its name is its text, cut at 1024), else its type: a rope's name is a placeholder. */
const lengthClass = (g, i) => (g.type(i) !== 'string' ? `(${g.type(i)})` : g.name(i).length >= 1024 ? '≥1024 chars' : `${String(g.name(i).length).padStart(4)} chars`);
/** A node's kind: its type and, but for strings and numbers, its constructor name. */
const kindOf = (g, i) => {
  const t = g.type(i);
  return isString(t) ? 'string' : t === 'number' ? 'number' : `${t} ${g.name(i).slice(0, 60)}`;
};
const describe = (g, i) => `${g.type(i)}:${isString(g.type(i)) ? lengthClass(g, i) : g.name(i).slice(0, 40)}`;
const chain = (g, i, depth) => {
  let out = '';
  for (let d = 0, x = i; d < depth && g.parent[x] >= 0; d++, x = g.parent[x]) out += ` <-${g.via[x]}- ${describe(g, g.parent[x])}`;
  return out;
};

/** kind -> {n, bytes} over the graph, with `sign` (+1 after, -1 before). */
function tally(g, key, into, sign) {
  for (let i = 0; i < g.count; i++) {
    const k = key(g, i);
    if (k === undefined) continue;
    const e = into.get(k) ?? { n: 0, bytes: 0 };
    e.n += sign;
    e.bytes += sign * g.size(i);
    into.set(k, e);
  }
}

function table(title, rows) {
  console.log(`\n${title}`);
  console.log(`${'bytes'.padStart(12)} ${'per item'.padStart(9)} ${'count'.padStart(9)}  what`);
  for (const [k, e] of [...rows].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, TOP)) console.log(`${String(e.bytes).padStart(12)} ${(e.bytes / PER).toFixed(1).padStart(9)} ${String(e.n).padStart(9)}  ${k}`);
}

const graphs = files.map(load);
const before = graphs.length === 2 ? graphs[0] : undefined;
const after = graphs[graphs.length - 1];
const diff = (key) => {
  const rows = new Map();
  if (before) tally(before, key, rows, -1);
  tally(after, key, rows, 1);
  return rows;
};

const kinds = diff(kindOf);
let total = 0;
for (const e of kinds.values()) total += e.bytes;
console.log(`${files.length === 2 ? 'growth' : 'heap'}: ${total} B in all${PER !== 1 ? `, ${(total / PER).toFixed(1)} B per item (--per ${PER})` : ''}`);
table('self size by kind', kinds);
table('strings by length (characters)', diff((g, i) => (isString(g.type(i)) ? lengthClass(g, i) : undefined)));

console.log(`\nowners of typed-array stores and Map/Set tables of ${OWNED_MIN / 1024} KiB or more (the last snapshot)`);
const owned = [];
for (let i = 0; i < after.count; i++) {
  if (after.size(i) < OWNED_MIN) continue;
  const store = after.name(i) === 'system / JSArrayBufferData';
  const table = after.type(i) === 'array' && after.parent[i] >= 0 && after.via[i] === 'table';
  if (store || table) owned.push(i);
}
for (const i of owned.sort((a, b) => after.size(b) - after.size(a)).slice(0, TOP)) console.log(`${String(after.size(i)).padStart(12)} ${chain(after, i, 5)}`);

if (o.retainers) {
  const want = o.retainers.startsWith('string:') ? Number(o.retainers.slice(7)) : o.retainers;
  const [type, name] = typeof want === 'string' && want.includes('@') ? want.split('@', 2) : ['object', want];
  const match = typeof want === 'number' ? (g, i) => g.type(i) === 'string' && g.name(i).length === want : (g, i) => g.type(i) === type && g.name(i) === name;
  const rows = new Map();
  tally(after, (g, i) => (match(g, i) ? chain(g, i, DEPTH) || ' (no strong retainer)' : undefined), rows, 1);
  table(`what holds ${o.retainers} (first retainers, ${DEPTH} hops; the last snapshot)`, rows);
}
