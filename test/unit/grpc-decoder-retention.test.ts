/**
 * Regression test for patches/@grpc+grpc-js+*.patch: grpc-js's StreamDecoder (what turns a call's HTTP/2 DATA
 * chunks into gRPC messages, for every etcd watch and call) held a slice of every chunk of a message, and kept the
 * last message's slices and its flag byte's until the next message began. A slice keeps the whole socket read it
 * is a view of (Node's http2 hands out views of one ArrayBuffer per read, up to 64 KiB): on an idle watch stream its
 * last response (up to the 64 MiB receive limit) stayed in memory (docs/benchmarks.md s36), and a message sent in
 * 1-byte DATA frames cost a Buffer object (~100 B of heap) per byte. Patched, a message is copied into one buffer
 * as its bytes come (room for the announced size up to 1 MiB, the rest once that much has come; the receive limit
 * bounds the size: a header alone reserves ≤ 1 MiB), and a decoder between messages holds no byte of any chunk it
 * was given. Fails when `npm ci` did not apply the patch (patch-package,
 * package.json's postinstall) or a grpc-js upgrade changed the decoder.
 */
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';

// internal to grpc-js (no exports map): the one class the patch changes
const { StreamDecoder } = createRequire(import.meta.url)('@grpc/grpc-js/build/src/stream-decoder.js') as {
  StreamDecoder: new (max: number) => { write(data: Buffer): Buffer[] };
};

/** A gRPC length-prefixed message of `n` bytes, each `fill`, with compression flag `flag` (0 or 1). */
function framed(n: number, fill: number, flag = 0): Buffer {
  const b = Buffer.alloc(5 + n, fill);
  b[0] = flag;
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

/** The stream cut at `sizes`, each chunk a copy in an ArrayBuffer of its own (not the 8 KiB pool's: what a decoder keeps of one shows). */
function chunksOf(stream: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    out.push(Buffer.from(new Uint8Array(stream.subarray(at, at + n)).buffer));
    at += n;
  }
  if (at !== stream.length) out.push(Buffer.from(new Uint8Array(stream.subarray(at)).buffer));
  return out;
}

describe('grpc-js StreamDecoder keeps no chunk between messages (patched)', () => {
  // messages as [length, compression flag]
  const cases: Array<{ name: string; messages: Array<[number, number]>; sizes: number[] }> = [
    { name: 'one message in one chunk', messages: [[1000, 0]], sizes: [] },
    { name: 'one compressed message over many chunks', messages: [[100_000, 1]], sizes: [3, 16_384, 16_384, 16_384, 16_384, 16_384] },
    { name: 'two messages, the second starting mid-chunk', messages: [[700, 1], [40_000, 0]], sizes: [705 + 5 + 100, 16_384] },
    { name: 'an empty message after a large one', messages: [[50_000, 0], [0, 1]], sizes: [1, 4, 20_000, 30_000] },
    { name: 'a flag byte alone in a chunk, then the rest', messages: [[10, 1], [20_000, 1]], sizes: [15, 1, 4, 100] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const stream = Buffer.concat(c.messages.map(([n, flag], i) => framed(n, 0x41 + i, flag)));
      const chunks = chunksOf(stream, c.sizes);
      const d = new StreamDecoder(64 << 20);
      const got: Buffer[] = [];
      const copies: Buffer[] = [];
      for (const ch of chunks) {
        for (const m of d.write(ch)) {
          got.push(m);
          copies.push(Buffer.from(m));
        }
      }
      // the decoder's answers are unchanged: every message, framed as it came (its flag too), and not changed by
      // what the decoder was given after it (the flag byte is now written into the decoder's own buffer)
      expect(got.map((m) => [m.length - 5, m[0]])).toEqual(c.messages);
      expect(Buffer.concat(got).equals(stream)).toBe(true);
      got.forEach((m, i) => expect(m.equals(copies[i]!), `message ${i} changed after it was emitted`).toBe(true));
      // and nothing it keeps shares memory with a chunk it was given
      const chunkStores = new Set(chunks.map((ch) => ch.buffer));
      const shared = heldBuffers(d).filter((b) => chunkStores.has(b.buffer as ArrayBuffer));
      expect(shared).toEqual([]);
      // nor a message it emitted: between messages, the flag's byte and the length's 4 are all it holds
      expect(heldBuffers(d).reduce((n, b) => n + b.length, 0)).toBe(5);
      // and a message is not a view of a larger buffer (room it did not use, pinned by whoever keeps the message;
      // below half of Buffer.poolSize, allocUnsafe's and concat's answers alike are views of Node's pool: 8 KiB on
      // Node 20, 64 KiB on Node 24)
      for (const m of got) if (m.length >= Buffer.poolSize >>> 1) expect(m.buffer.byteLength).toBe(m.length);
    });
  }

  it('a message sent a byte per chunk costs one buffer, not an object per chunk', () => {
    const stream = framed(20_000, 0x33, 1);
    const d = new StreamDecoder(64 << 20);
    let most = 0;
    const got: Buffer[] = [];
    for (let i = 0; i < stream.length; i++) {
      got.push(...d.write(stream.subarray(i, i + 1)));
      most = Math.max(most, heldBuffers(d).length);
    }
    expect(got.length).toBe(1);
    expect(got[0]!.equals(stream)).toBe(true);
    // the flag's, the length's and the message's own: unpatched, a slice per chunk read besides (~20,000 here)
    expect(most).toBeLessThanOrEqual(3);
  });

  afterEach(() => vi.restoreAllMocks());

  it('refuses a message over the limit before making room for it', () => {
    const d = new StreamDecoder(1000);
    const alloc = vi.spyOn(Buffer, 'allocUnsafe');
    expect(() => d.write(framed(1001, 0).subarray(0, 5))).toThrow(/larger than max/);
    expect(alloc.mock.calls.filter(([n]) => n > 1000)).toEqual([]);
    expect(heldBuffers(d).reduce((n, b) => n + b.length, 0)).toBe(5);
  });

  it('a header alone does not reserve the size it announces (a hostile server cannot make 64 MiB for 5 bytes)', () => {
    const d = new StreamDecoder(64 << 20);
    const alloc = vi.spyOn(Buffer, 'allocUnsafe');
    const header = framed(0, 0, 1);
    header.writeUInt32BE(64 << 20, 1);
    expect(d.write(header)).toEqual([]);
    expect(d.write(Buffer.alloc(1000, 7))).toEqual([]);
    const most = Math.max(0, ...alloc.mock.calls.map(([n]) => n));
    expect(most).toBeLessThanOrEqual((1 << 20) + 5);
    expect(heldBuffers(d).reduce((n, b) => n + b.length, 0)).toBeLessThanOrEqual((1 << 20) + 5 + 5);
  });

  it('a message grown as its bytes come is whole and exactly its size, whatever the cuts', () => {
    // within the first room (1 MiB), at its edge, and past it (the rest made room for once), in cuts of 1 B to 100 KB
    for (const [n, cut] of [[65_531, 7], [(1 << 20) - 1, 65_541], [1 << 20, 16_384], [(1 << 20) + 1, 99_999], [3_000_000, 16_384], [1_100_000, 1]] as const) {
      const stream = Buffer.concat([framed(n, 0x61, 1), framed(10, 0x62)]);
      for (let i = 5; i < 5 + n; i += 4093) stream[i] = i & 255; // not one repeated byte: misplaced copies show
      const d = new StreamDecoder(64 << 20);
      const got: Buffer[] = [];
      for (let at = 0; at < stream.length; at += cut) got.push(...d.write(stream.subarray(at, at + cut)));
      expect(got.map((m) => m.length), `n ${n} cut ${cut}`).toEqual([n + 5, 15]);
      expect(Buffer.concat(got).equals(stream), `n ${n} cut ${cut}`).toBe(true);
      expect(got[0]!.buffer.byteLength, `n ${n} cut ${cut}: the message in a buffer of its own size`).toBe(n + 5);
      expect(heldBuffers(d).reduce((k, b) => k + b.length, 0)).toBe(5);
    }
  });

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
