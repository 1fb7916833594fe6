// The control channel between the agent and its L7 proxy process (src/proxy/frames.ts, messages.ts): the
// proxy process is the less trusted side, so every frame it sends is bounded before it is buffered, and
// every message decoded against a schema; a hostile message is refused alone, those after it still decode.
import { describe, expect, it } from 'vitest';
import { encodeFrame, FRAME_JSON, FrameError, FrameReader, jsonFrame, MAX_FRAME, recordsFrame, type Frame } from '../../src/proxy/frames.js';
import { decodeAgentMessage, decodeProxyMessage, MAX_RULE_REQUESTS, ProxyMessageError } from '../../src/proxy/messages.js';

const STATS = { connections: 1, active: 1, requests: 2, denied: 1, upstreamErrors: 0, passthrough: 0, badRequests: 0, recordsLost: 0, h2Refused: 0, h2cIgnored: 0, headTimeouts: 0, bodyTimeouts: 0, limited: 0, fdExhausted: 0, acceptErrors: 0, maxConnections: 16384, lookupTimeouts: 0, lookupsLimited: 0, lookupsUnsent: 0 };
const REQ = { address: '100.65.1.10', port: 8080, identity: 4242, generation: 3 };

/** One 56-byte L7 record (docs/wire-format.md) with its text at `off`. */
function row(opts: { time?: number; off?: number; lens?: [number, number, number]; denied?: number } = {}): Buffer {
  const r = Buffer.alloc(56);
  r.writeDoubleLE(opts.time ?? Date.now(), 0);
  r[26] = opts.denied ?? 0;
  r.writeUInt32LE(opts.off ?? 0, 40);
  const [m, p, h] = opts.lens ?? [3, 2, 1];
  r.writeUInt16LE(m, 44);
  r.writeUInt16LE(p, 46);
  r.writeUInt16LE(h, 48);
  return r;
}

const frames = (...bufs: Buffer[]) => new FrameReader().push(Buffer.concat(bufs));
const json = (o: unknown): Frame => ({ kind: FRAME_JSON, payload: Buffer.from(JSON.stringify(o)) });
const reason = (f: Frame) => {
  try {
    decodeProxyMessage(f);
    return 'accepted';
  } catch (e) {
    expect(e).toBeInstanceOf(ProxyMessageError);
    return (e as ProxyMessageError).reason;
  }
};

describe('proxy control channel', () => {
  it('reassembles frames split anywhere, and keeps their order', () => {
    const all = Buffer.concat([jsonFrame({ t: 'ready', pid: 7, workers: 2 }), recordsFrame(row(), Buffer.from('GET/ah')), jsonFrame({ t: 'stats', stats: STATS })]);
    for (const cut of [1, 3, 4, 5, 17, all.length - 1]) {
      const r = new FrameReader();
      const got = [...r.push(all.subarray(0, cut)), ...r.push(all.subarray(cut))];
      expect(got.map((f) => decodeProxyMessage(f).t)).toEqual(['ready', 'records', 'stats']);
    }
  });

  it('refuses a frame length out of bounds before buffering it', () => {
    const huge = Buffer.alloc(5);
    huge.writeUInt32LE(MAX_FRAME + 1, 0);
    expect(() => new FrameReader().push(huge)).toThrow(FrameError);
    expect(() => new FrameReader().push(Buffer.from([0, 0, 0, 0]))).toThrow(FrameError); // empty
  });

  it('decodes what an honest proxy sends', () => {
    const [ready, reqs, warn, stats, recs] = frames(
      jsonFrame({ t: 'ready', pid: 123, workers: 1 }),
      jsonFrame({ t: 'requests', requests: [REQ] }),
      jsonFrame({ t: 'warnings', warnings: ['bad pattern'] }),
      jsonFrame({ t: 'stats', id: 9, stats: STATS }),
      recordsFrame(Buffer.concat([row(), row({ off: 6, lens: [4, 1, 0], denied: 1 })]), Buffer.from('GET/ahPOST/')),
    );
    expect(decodeProxyMessage(ready!)).toEqual({ t: 'ready', pid: 123, workers: 1 });
    expect(decodeProxyMessage(reqs!)).toEqual({ t: 'requests', requests: [REQ] });
    expect(decodeProxyMessage(warn!)).toMatchObject({ t: 'warnings' });
    expect(decodeProxyMessage(stats!)).toEqual({ t: 'stats', id: 9, stats: STATS });
    const r = decodeProxyMessage(recs!);
    expect(r).toMatchObject({ t: 'records' });
    expect((r as { rows: Buffer }).rows.length).toBe(112);
  });

  it('refuses hostile messages one by one; the honest ones between them still decode', () => {
    const hostile: Frame[] = [
      { kind: FRAME_JSON, payload: Buffer.from('{"t":"ready",') }, // not JSON
      { kind: 7, payload: Buffer.from('{}') }, // unknown kind
      json({ t: 'shell', cmd: 'rm -rf /' }), // unknown message
      json({ t: 'ready', pid: 1, workers: 1, extra: true }), // unknown field
      json({ t: 'requests', requests: [{ ...REQ, address: '100.65.1.010' }] }), // not canonical
      json({ t: 'requests', requests: [{ ...REQ, address: '::1' }] }), // not IPv4
      json({ t: 'requests', requests: [{ ...REQ, port: 0 }] }),
      json({ t: 'requests', requests: [{ ...REQ, identity: 2 ** 32 }] }),
      json({ t: 'requests', requests: [{ ...REQ, generation: 0 }] }),
      json({ t: 'requests', requests: [] }),
      json({ t: 'requests', requests: Array(MAX_RULE_REQUESTS + 1).fill(REQ) }), // over the bound
      { kind: FRAME_JSON, payload: Buffer.from(`{"t":"requests","requests":[${JSON.stringify(REQ).slice(0, -1)},"__proto__":{"port":1}}]}`) },
      json({ t: 'warnings', warnings: ['x'.repeat(2000)] }),
      json({ t: 'stats', stats: { ...STATS, requests: -1 } }),
      json({ t: 'stats', stats: { ...STATS, requests: 1.5 } }),
      json({ t: 'stats', stats: { ...STATS, limited: undefined } }), // missing
      json({ t: 'stats', stats: { ...STATS, extra: 1 } }),
      json({ t: 'stats', stats: STATS, id: -1 }),
      json({ t: 'listen-error', code: 'x'.repeat(100), message: '' }),
      json(null),
      json([{ t: 'ready', pid: 1, workers: 1 }]),
    ];
    const honest = json({ t: 'stats', stats: STATS });
    const results = hostile.flatMap((h) => [reason(h), reason(honest)]);
    expect(results.filter((_, i) => i % 2 === 1).every((r) => r === 'accepted')).toBe(true);
    expect(results.filter((_, i) => i % 2 === 0)).toEqual(['not-json', 'kind', ...Array(hostile.length - 2).fill('schema')]);
  });

  it('refuses records a reader could not print or whose text lies outside the frame', () => {
    const text = Buffer.from('GET/ah');
    const recs = (rows: Buffer, t = text): Frame => frames(recordsFrame(rows, t))[0]!;
    expect(reason(recs(row()))).toBe('accepted');
    expect(reason(recs(row({ time: NaN })))).toBe('records');
    expect(reason(recs(row({ time: 1e17 })))).toBe('records'); // new Date(t).toISOString() would throw
    expect(reason(recs(row({ time: -1 })))).toBe('records');
    expect(reason(recs(row({ off: 1 })))).toBe('records'); // 1 + 6 > 6
    expect(reason(recs(row({ lens: [65535, 65535, 65535] })))).toBe('records');
    expect(reason(recs(row({ off: 0xffffffff })))).toBe('records');
    expect(reason(recs(row({ denied: 2 })))).toBe('records');
    expect(reason(recs(row().subarray(0, 50)))).toBe('records'); // not whole rows
    expect(reason(recs(Buffer.alloc(0)))).toBe('records');
    expect(reason(recs(Buffer.concat(Array(513).fill(row({ lens: [0, 0, 0] })))))).toBe('records'); // over 512 rows
    const lying = encodeFrame(1, Buffer.concat([Buffer.from([0xff, 0xff, 0, 0]), row()])); // rows length past the end
    expect(reason(frames(lying)[0]!)).toBe('records');
    expect(reason({ kind: 1, payload: Buffer.from([1, 2]) })).toBe('records');
  });

  it('types what the agent sends the proxy', () => {
    expect(decodeAgentMessage(json({ t: 'rules', req: REQ, rules: [{ ref: 3, method: 'GET', path: '/a.*' }] }))).toMatchObject({ t: 'rules' });
    expect(decodeAgentMessage(json({ t: 'rules', req: REQ, rules: null }))).toMatchObject({ rules: null });
    expect(decodeAgentMessage(json({ t: 'invalidate' }))).toEqual({ t: 'invalidate' });
    expect(() => decodeAgentMessage(json({ t: 'rules', req: REQ, rules: 'some' }))).toThrow(ProxyMessageError);
  });
});

describe('proxy control channel: review regressions', () => {
  it('refuses a JSON frame over 1 MiB before parsing it (parsing is on the agent\'s event loop)', () => {
    const big: Frame = { kind: FRAME_JSON, payload: Buffer.from(`{"t":"warnings","warnings":["${'x'.repeat(1 << 20)}"]}`) };
    expect(reason(big)).toBe('too-large');
  });
  it('keeps only the text the rows use: a records frame cannot make one record hold 16 MiB', () => {
    const [f] = frames(recordsFrame(row({ lens: [3, 2, 1] }), Buffer.concat([Buffer.from('GET/ah'), Buffer.alloc(8 << 20)])));
    const m = decodeProxyMessage(f!);
    expect(m.t).toBe('records');
    if (m.t !== 'records') return;
    expect(m.text.length).toBe(6);
    expect(m.text.toString()).toBe('GET/ah');
    expect(m.rows.buffer).not.toBe(f!.payload.buffer); // copies, not views of the frame
  });
});
