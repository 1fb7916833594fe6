import { describe, expect, it } from 'vitest';
import { testhooks } from '../../src/native/testhooks.js';
import { tcpPacket, tcpChecksumOk, ipv4ChecksumOk } from '../helpers/packets.js';

function vnet(flags: number, gsoType: number, hdrLen: number, gsoSize: number, csumStart: number, csumOffset: number) {
  const b = Buffer.alloc(10);
  b[0] = flags;
  b[1] = gsoType;
  b.writeUInt16LE(hdrLen, 2);
  b.writeUInt16LE(gsoSize, 4);
  b.writeUInt16LE(csumStart, 6);
  b.writeUInt16LE(csumOffset, 8);
  return b;
}

describe('TSO split and GRO coalesce', () => {
  for (const v of [4, 6] as const) {
    it(`splits an IPv${v} TCP super-packet into MSS segments with valid checksums and merges them back`, () => {
      const payload = Buffer.alloc(10_000);
      for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
      const sup = tcpPacket(v, 1000, payload, { psh: true });
      const l4 = v === 4 ? 20 : 40;
      const segs = testhooks.splitPacket(vnet(1, v === 4 ? 1 : 4, l4 + 20, 1400, l4, 16), sup)!;
      expect(segs.length).toBe(Math.ceil(10_000 / 1400));
      let seq = 1000;
      segs.forEach((s, i) => {
        if (v === 4) expect(ipv4ChecksumOk(s)).toBe(true);
        expect(tcpChecksumOk(s)).toBe(true);
        expect(s.readUInt32BE(l4 + 4)).toBe(seq);
        const last = i === segs.length - 1;
        expect((s[l4 + 13]! & 0x08) !== 0).toBe(last); // PSH only on the last
        seq += s.length - l4 - 20;
      });
      const merged = testhooks.coalesce(segs);
      expect(merged.length).toBe(1);
      const m = merged[0]!;
      expect(m.vnet[1]).toBe(v === 4 ? 1 : 4);
      expect(m.vnet.readUInt16LE(4)).toBe(1400);
      expect(m.data.subarray(l4 + 20).equals(payload)).toBe(true);
    });
  }

  it('completes a partial checksum on a single packet', () => {
    const p = tcpPacket(4, 5, Buffer.from('hello'), {});
    const good = p.readUInt16BE(36);
    p.writeUInt16BE(0x1234, 36); // what the kernel leaves: anything but final
    const partialField = Buffer.from(p);
    // emulate CHECKSUM_PARTIAL: field = folded pseudo-header sum
    partialField.writeUInt16BE(pseudoSum(partialField), 36);
    const [out] = testhooks.splitPacket(vnet(1, 0, 0, 0, 20, 16), partialField)!;
    expect(out!.readUInt16BE(36)).toBe(good);
  });

  it('does not merge a segment whose checksum is wrong, nor across a gap', () => {
    const a = tcpPacket(4, 0, Buffer.alloc(1000, 1), {});
    const b = tcpPacket(4, 1000, Buffer.alloc(1000, 2), {});
    const gap = tcpPacket(4, 3000, Buffer.alloc(1000, 3), {});
    const bad = tcpPacket(4, 2000, Buffer.alloc(1000, 4), {});
    bad[100]! ^= 0xff;
    const out = testhooks.coalesce([a, b, bad, gap]);
    expect(out.map((o) => o.data.length)).toEqual([2040, 1040, 1040]);
    expect(out[1]!.data.equals(bad)).toBe(true);
  });

  it('rejects malformed super-packets', () => {
    expect(testhooks.splitPacket(vnet(1, 1, 40, 1400, 20, 16), Buffer.alloc(10))).toBeNull();
    const p = tcpPacket(4, 0, Buffer.alloc(3000), {});
    expect(testhooks.splitPacket(vnet(1, 1, 40, 0, 20, 16), p)).toBeNull(); // gso_size 0
    expect(testhooks.splitPacket(vnet(1, 4, 40, 1000, 20, 16), p)).toBeNull(); // v6 GSO on a v4 packet
  });
});

function pseudoSum(p: Buffer): number {
  let s = 0;
  for (let i = 12; i < 20; i += 2) s += p.readUInt16BE(i);
  s += 6 + (p.length - 20);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
