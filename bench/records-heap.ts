/**
 * Heap per decoded endpoint record (the agent's endpoint codec, src/controlplane/records/endpoint.ts, with its
 * compaction) of this tree against another build's (--base DIR: a built checkout, e.g. main), side by side in
 * one process, for the four shapes a record takes: with or without an identity, with or without named ports
 * (a remote pod as its cluster publishes it: an identity, most often no named port); then per decoded node record
 * (the node codec's HeldNode, src/controlplane/records/node.ts, s40) with one address and pod CIDR (nearly every
 * node's) and with two of each. Records are decoded from
 * fresh value texts and kept; the reading is heap used after full GCs, the texts and the array for the records
 * held at both readings (JSON.parse copies what it keeps), per record. Also µs per decode. Rounds alternate the builds; medians are printed with
 * this/base ratios.
 *
 * Usage: node --expose-gc --single-threaded-gc dist/bench/records-heap.js --base /work/main [--n 100000]
 * [--rounds 5], under the host lock.
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { cachePrefix, endpointName, stateKey } from '../src/controlplane/keys.js';
import { endpointCodec } from '../src/controlplane/records/endpoint.js';
import { nodeCodec } from '../src/controlplane/records/node.js';
import { arg, fullGc, median } from './util.js';

type Decode = (key: string, value: string) => unknown;


function texts(n: number, identity: boolean, ports: boolean): Array<[string, string]> {
  return Array.from({ length: n }, (_, i) => {
    const ip = `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const node = `node-${i % 1000}`;
    const rec: Record<string, unknown> = { ip, cluster: 'c2', node, namespace: 'default', name: `app-${i % 50}-7d9f8c6b5-${i.toString(36)}`, labels: { app: `app-${i % 50}` } };
    if (identity) rec.identity = 0x20000 + (i % 50);
    if (ports) rec.ports = [{ name: 'http', containerPort: 8080, protocol: 'TCP' }];
    // flat strings from bytes, as etcd3's Buffer.toString() hands them out (a template's rope would be flattened
    // by the decode's first scan, moving heap between the two readings)
    return [Buffer.from(stateKey('ip', 'c2', endpointName(node, ip))).toString(), Buffer.from(JSON.stringify(rec)).toString()];
  });
}

/** Node records of a remote cluster (the bench's shape: bootId '1'), one address and pod CIDR each or two of each. */
function nodeTexts(n: number, two: boolean): Array<[string, string]> {
  return Array.from({ length: n }, (_, i) => {
    const host = `${(i >> 8) & 255}.${i & 255}`;
    const rec = { cluster: 'c2', clusterId: 2, name: `n${i}`, addresses: [`198.18.${host}`, ...(two ? [`198.19.${host}`] : [])], port: 51820, publicKey: randomBytes(32).toString('base64'), podCIDRs: [`100.${64 + (i >> 16)}.${host}/32`, ...(two ? [`100.${96 + (i >> 16)}.${host}/32`] : [])], bootId: '1' };
    return [Buffer.from(`${cachePrefix('nodes', 'c2')}n${i}`).toString(), Buffer.from(JSON.stringify(rec)).toString()];
  });
}

function measure(decode: Decode, kvs: Array<[string, string]>): { bytes: number; us: number } {
  const n = kvs.length;
  const keep: unknown[] = new Array(n);
  fullGc();
  const before = process.memoryUsage().heapUsed;
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) keep[i] = decode(kvs[i]![0], kvs[i]![1]);
  const us = Number(process.hrtime.bigint() - t) / 1000 / n;
  fullGc();
  const bytes = (process.memoryUsage().heapUsed - before) / n; // the texts held at both readings
  if (kvs.length !== n || keep.length !== n) throw new Error('lost a record');
  return { bytes, us };
}

async function main(): Promise<void> {
  const base = resolve(arg('base', ''));
  const n = Number(arg('n', '100000'));
  const rounds = Number(arg('rounds', '5'));
  const load = async (file: string) => (await import(pathToFileURL(join(base, 'dist/src/controlplane/records', file)).href)) as Record<string, { decode: Decode }>;
  const baseEndpoint = (await load('endpoint.js')).endpointCodec!, baseNode = (await load('node.js')).nodeCodec!;
  console.log(`decoded records kept, ${n} per reading, medians of ${rounds} alternating rounds; base ${base}`);
  console.log('shape | this B/record | base B/record | this/base | this µs | base µs | this/base');
  const shapes: Array<[string, () => Array<[string, string]>, Record<'this' | 'base', Decode>]> = [];
  const endpoints = { this: (k: string, v: string) => endpointCodec.decode(k, v), base: (k: string, v: string) => baseEndpoint.decode(k, v) };
  for (const [identity, ports] of [[true, false], [true, true], [false, false], [false, true]] as const)
    shapes.push([`endpoint, ${identity ? 'identity' : 'no identity'}, ${ports ? 'named ports' : 'no named port'}`, () => texts(n, identity, ports), endpoints]);
  const nodes = { this: (k: string, v: string) => nodeCodec.decode(k, v), base: (k: string, v: string) => baseNode.decode(k, v) };
  for (const two of [false, true]) shapes.push([`node, ${two ? 'two addresses and pod CIDRs' : 'one address and pod CIDR'}`, () => nodeTexts(n, two), nodes]);
  for (const [shape, make, builds] of shapes) {
    const got: Record<'this' | 'base', Array<{ bytes: number; us: number }>> = { this: [], base: [] };
    // a first reading of each build dropped (compilation, the label pool's first sets), then alternating rounds
    for (const w of ['this', 'base'] as const) measure(builds[w], make());
    for (let r = 0; r < rounds; r++) for (const w of r % 2 ? (['base', 'this'] as const) : (['this', 'base'] as const)) got[w].push(measure(builds[w], make()));
    const med = (w: 'this' | 'base', k: 'bytes' | 'us'): number => median(got[w].map((x) => x[k]));
    console.log([shape, med('this', 'bytes').toFixed(1), med('base', 'bytes').toFixed(1), (med('this', 'bytes') / med('base', 'bytes')).toFixed(2), med('this', 'us').toFixed(2), med('base', 'us').toFixed(2), (med('this', 'us') / med('base', 'us')).toFixed(2)].join(' | '));
  }
}

void main();
