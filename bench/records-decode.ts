/**
 * Micro-benchmark of kvstoremesh's per-record decode: the records the control-plane benchmark churns (node
 * records and endpoints, as bench/cp-load.ts writes them), decoded by the zod schema alone (the reference:
 * jsonCodec without a fast path, and the readers' compaction, as kvstoremesh decoded them before) and by the
 * codecs kvstoremesh uses now (records/fast.ts, no compaction), in the same process, alternating rounds.
 * Usage: node dist/bench/records-decode.js [records per round (20000)] [rounds (5)]
 * Prints µs per record for each and the ratio (medians of the rounds).
 */
import { randomBytes } from 'node:crypto';
import { compactEndpoint, compactNode, endpointCheckCodec, endpointSchema, jsonCodec, nodeCheckCodec, nodeSchema, type Codec } from '../src/controlplane/records/index.js';
import { endpointName, stateKey } from '../src/controlplane/keys.js';

const N = Number(process.argv[2] ?? 20_000);
const ROUNDS = Number(process.argv[3] ?? 5);

// the reference: zod decides every record (the key checks are the same in both; left out of both)
const zodNode = jsonCodec('node', nodeSchema);
const zodEndpoint = jsonCodec('endpoint', endpointSchema);
const before = {
  node: { ...zodNode, decode: (k: string, v: string) => compactNode(zodNode.decode(k, v)) } as Codec<unknown>,
  endpoint: { ...zodEndpoint, decode: (k: string, v: string) => compactEndpoint(zodEndpoint.decode(k, v)) } as Codec<unknown>,
};
const after = { node: nodeCheckCodec as Codec<unknown>, endpoint: endpointCheckCodec as Codec<unknown> };

const records: Array<['node' | 'endpoint', string, string]> = [];
for (let i = 0; i < N; i++) {
  const c = `c${2 + (i % 15)}`;
  const n = `n${i % 1000}`;
  const pod = `100.${64 + (i % 15)}.${(i >> 4) & 255}`;
  if (i % 2 === 0) {
    const node = { cluster: c, clusterId: 2 + (i % 15), name: n, addresses: [`198.18.${(i >> 8) & 255}.${i & 255}`], port: 51820, publicKey: randomBytes(32).toString('base64'), podCIDRs: [`${pod}.0/24`], bootId: String(Date.now() + i) };
    records.push(['node', stateKey('nodes', c, n), JSON.stringify(node)]);
  } else {
    const ip = `${pod}.${10 + (i % 10)}`;
    const ep = { ip, cluster: c, node: n, namespace: 'bench', name: `p${i % 1000}-${i % 10}`, labels: { app: `a${i % 10}`, rev: String(i) } };
    records.push(['endpoint', stateKey('ip', c, endpointName(n, ip)), JSON.stringify(ep)]);
  }
}

function round(codecs: Record<'node' | 'endpoint', Codec<unknown>>): number {
  const t0 = process.hrtime.bigint();
  let sink = 0;
  for (const [t, k, v] of records) sink += codecs[t].decode(k, v) ? 1 : 0;
  if (sink !== N) throw new Error('a record did not decode');
  return Number(process.hrtime.bigint() - t0) / 1000 / N;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
round(before);
round(after); // warm-up
const b: number[] = [];
const a: number[] = [];
for (let r = 0; r < ROUNDS; r++) b.push(round(before)), a.push(round(after));
console.log(`${N} records (half nodes, half endpoints), ${ROUNDS} rounds, median µs per record:`);
console.log(`  zod schema + compaction (before): ${median(b).toFixed(2)} µs  [${b.map((x) => x.toFixed(2)).join(' ')}]`);
console.log(`  fast path, no compaction (now):   ${median(a).toFixed(2)} µs  [${a.map((x) => x.toFixed(2)).join(' ')}]`);
console.log(`  ratio before / now: ${(median(b) / median(a)).toFixed(2)}x`);
