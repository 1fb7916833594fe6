/**
 * Growth between two V8 heap snapshots of one process, by object type and constructor (strings by length), in
 * bytes of self size per unit: the deterministic reading beside bench/peer-heap.ts's used-heap one (that moves
 * ±50 B per peer between invocations of the same build). Counts every object's self size in each snapshot and
 * subtracts (not by object id: V8 reuses an id for a new object at a dead one's address). Off-heap backing stores
 * count as "native:system / JSArrayBufferData".
 *
 * Usage: node --max-old-space-size=6000 dist/bench/heap-diff.js BEFORE AFTER UNITS [TOP = 15]
 * (e.g. CP_PEER_HEAP_SNAPSHOT=/tmp/p node --expose-gc dist/bench/peer-heap.js 4000 DIST, then /tmp/p.0 /tmp/p.1 4000).
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size by "type:name" (strings: "type:lenN", N capped at 64). */
function selfSizes(file: string): Map<string, number> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const f = s.snapshot.meta.node_fields;
  const [T, N, S] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')];
  const types = s.snapshot.meta.node_types[0];
  const out = new Map<string, number>([['TOTAL', 0]]);
  for (let i = 0; i < s.nodes.length; i += f.length) {
    const type = types[s.nodes[i + T]!]!;
    const name = s.strings[s.nodes[i + N]!]!;
    const key = `${type}:${type.includes('string') ? `len${Math.min(name.length, 64)}` : name.slice(0, 40)}`;
    const size = s.nodes[i + S]!;
    out.set(key, (out.get(key) ?? 0) + size);
    out.set('TOTAL', out.get('TOTAL')! + size);
  }
  return out;
}

const [before, after, units, top] = process.argv.slice(2);
if (!before || !after || !units) throw new Error('usage: heap-diff BEFORE AFTER UNITS [TOP]');
const a = selfSizes(before);
const b = selfSizes(after);
const rows = [...new Set([...a.keys(), ...b.keys()])].map((k) => [k, ((b.get(k) ?? 0) - (a.get(k) ?? 0)) / Number(units)] as const);
rows.sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
for (const [k, v] of rows.slice(0, Number(top ?? 15))) console.log(`${v.toFixed(1).padStart(9)}  ${k}`);
