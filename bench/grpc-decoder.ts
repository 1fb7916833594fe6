/**
 * grpc-js's StreamDecoder as installed (patched: patches/@grpc+grpc-js+1.14.7.patch, docs/dependencies.md) against
 * the pristine file of the same version, on the same chunk streams in one process (s36, docs/benchmarks.md): every
 * etcd response passes through it. Shapes: many small messages in 64 KiB socket reads, 100 KB watch responses in
 * 16 KiB chunks, one 8 MiB message in 16 KiB chunks (past the patch's first 1 MiB of room). Rounds alternate the
 * two; medians in ms and patched/pristine.
 *
 * The pristine file is not in node_modules once the patch is applied: give it, e.g. from the package tarball
 * (`npm pack @grpc/grpc-js@1.14.7 && tar xzf grpc-grpc-js-1.14.7.tgz package/build/src/stream-decoder.js`).
 *
 * Usage: node dist/bench/grpc-decoder.js --pristine PATH/stream-decoder.js [--rounds 7]
 */
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { arg } from './util.js';

type Decoder = new (max: number) => { write(data: Buffer): Buffer[] };
const require = createRequire(import.meta.url);

const pristinePath = arg('pristine', '');
if (pristinePath === '') {
  console.error('usage: node dist/bench/grpc-decoder.js --pristine PATH/stream-decoder.js [--rounds 7]');
  process.exit(2);
}
const rounds = Number(arg('rounds', '7'));
const decoders: Array<[string, Decoder]> = [
  ['pristine', (require(resolve(pristinePath)) as { StreamDecoder: Decoder }).StreamDecoder],
  ['patched', (require('@grpc/grpc-js/build/src/stream-decoder.js') as { StreamDecoder: Decoder }).StreamDecoder],
];

/** A gRPC length-prefixed message of `n` bytes. */
function framed(n: number): Buffer {
  const b = Buffer.alloc(5 + n, 7);
  b.writeUInt32BE(n, 1);
  return b;
}

/** The messages cut into chunks of `size`, views of one ArrayBuffer as Node's http2 hands them out. */
function chunked(messages: Buffer[], size: number): Buffer[] {
  const all = Buffer.concat(messages);
  const out: Buffer[] = [];
  for (let i = 0; i < all.length; i += size) out.push(all.subarray(i, Math.min(all.length, i + size)));
  return out;
}

const shapes: Array<[string, Buffer[]]> = [
  ['50,000 messages of 200 B in 64 KiB reads', chunked(Array.from({ length: 50_000 }, () => framed(200)), 65_536)],
  ['200 watch responses of 100 KB in 16 KiB chunks', chunked(Array.from({ length: 200 }, () => framed(100_000)), 16_384)],
  ['one 8 MiB message in 16 KiB chunks', chunked([framed(8 << 20)], 16_384)],
];

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;
for (const [name, chunks] of shapes) {
  const times = new Map<string, number[]>(decoders.map(([k]) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [k, D] of r % 2 === 0 ? decoders : [...decoders].reverse()) {
      const d = new D(64 << 20);
      const t0 = process.hrtime.bigint();
      let n = 0;
      for (const c of chunks) n += d.write(c).length;
      times.get(k)!.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (n === 0) throw new Error('no message decoded');
    }
  }
  const p = median(times.get('pristine')!), q = median(times.get('patched')!);
  console.log(`${name}: pristine ${p.toFixed(2)} ms, patched ${q.toFixed(2)} ms, patched/pristine ${(q / p).toFixed(2)}`);
}
