/**
 * Regression test for patches/@grpc+grpc-js+*.patch: grpc-js's StreamDecoder (what turns a call's HTTP/2 DATA
 * chunks into gRPC messages, for every etcd watch and call) held slices of the last message's chunks until the
 * next message began: on an idle watch stream its last response (up to the 64 MiB receive limit) stayed in
 * memory, ~3.6 MB in an agent at rest at 16 × 1000 × 10 (bench:controlplane, s36). Patched, a decoder between
 * messages holds no byte of any chunk it was given. Fails when `npm ci` did not apply the patch (patch-package,
 * package.json's postinstall) or a grpc-js upgrade changed the decoder.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

// internal to grpc-js (no exports map): the one class the patch changes
const { StreamDecoder } = createRequire(import.meta.url)('@grpc/grpc-js/build/src/stream-decoder.js') as {
  StreamDecoder: new (max: number) => { write(data: Buffer): Buffer[] };
};

/** A gRPC length-prefixed message (uncompressed) of `n` bytes, each `fill`. */
function framed(n: number, fill: number): Buffer {
  const b = Buffer.alloc(5 + n, fill);
  b[0] = 0;
  b.writeUInt32BE(n, 1);
  return b;
}

/** Every Buffer reachable from the decoder's own fields (one level into arrays). */
function heldBuffers(decoder: object): Buffer[] {
  const out: Buffer[] = [];
  for (const v of Object.values(decoder)) {
    if (Buffer.isBuffer(v)) out.push(v);
    else if (Array.isArray(v)) for (const x of v) if (Buffer.isBuffer(x)) out.push(x);
  }
  return out;
}

/** Chunks as HTTP/2 gives them: each its own ArrayBuffer (a copy, not a slice of one big buffer). */
function chunksOf(stream: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    out.push(Buffer.from(new Uint8Array(stream.subarray(at, at + n))));
    at += n;
  }
  if (at !== stream.length) out.push(Buffer.from(new Uint8Array(stream.subarray(at))));
  return out;
}

describe('grpc-js StreamDecoder keeps no chunk between messages (patched)', () => {
  const cases: Array<{ name: string; messages: number[]; sizes: number[] }> = [
    { name: 'one message in one chunk', messages: [1000], sizes: [] },
    { name: 'one message over many chunks', messages: [100_000], sizes: [3, 16_384, 16_384, 16_384, 16_384, 16_384] },
    { name: 'two messages, the second starting mid-chunk', messages: [700, 40_000], sizes: [705 + 5 + 100, 16_384] },
    { name: 'an empty message after a large one', messages: [50_000, 0], sizes: [1, 4, 20_000, 30_000] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const stream = Buffer.concat(c.messages.map((n, i) => framed(n, 0x41 + i)));
      const chunks = chunksOf(stream, c.sizes);
      const d = new StreamDecoder(64 << 20);
      const got = chunks.flatMap((ch) => d.write(ch));
      // the decoder's answers are unchanged: every message, framed as it came
      expect(got.map((m) => m.length)).toEqual(c.messages.map((n) => n + 5));
      expect(Buffer.concat(got).equals(stream)).toBe(true);
      // and nothing it keeps shares memory with a chunk it was given
      const chunkStores = new Set(chunks.map((ch) => ch.buffer));
      const shared = heldBuffers(d).filter((b) => chunkStores.has(b.buffer as ArrayBuffer));
      expect(shared).toEqual([]);
    });
  }

  it('a message still being read is kept whole (the patch frees only what was delivered)', () => {
    const stream = framed(30_000, 0x5a);
    const chunks = chunksOf(stream, [10_000, 10_000]);
    const d = new StreamDecoder(64 << 20);
    expect(d.write(chunks[0]!)).toEqual([]);
    expect(d.write(chunks[1]!)).toEqual([]);
    const [m] = d.write(chunks[2]!);
    expect(m!.equals(stream)).toBe(true);
  });
});
