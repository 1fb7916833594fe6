// The pod guard's spoofed-tuple sets and the agent's watcher: nft's JSON is
// decoded through a schema (a malformed answer throws, foreign sets are
// ignored), each tuple is reported once while it stays in its set and again
// once it was added anew; the guard adds to the set in a rule of its own
// before the drop (a full set must not let a packet through).
import { describe, expect, it } from 'vitest';
import { parseSpoofSets, SpoofWatch, type SpoofedTuple } from '../../src/agent/spoofwatch.js';
import { podGuardIdent, podGuardScript } from '../../src/testbed/podguard.js';

const set = (name: string, elems: Array<[string, string, string, string | number, number]>, table = 'wiremesh_pods') => ({
  set: { family: 'netdev', name, table, type: ['ifname', 'ipv4_addr', 'ipv4_addr', 'inet_proto'], handle: 1, size: 4096, flags: ['timeout'], timeout: 60, elem: elems.map(([a, b, c, d, expires]) => ({ elem: { val: { concat: [a, b, c, d] }, expires } })) },
});
const answer = (...sets: unknown[]) => ({ nftables: [{ metainfo: { version: '1.0.6', json_schema_version: 1 } }, ...sets] });

describe('parseSpoofSets', () => {
  it('reads the guard sets, ignores other tables, and says when there are none', () => {
    const out = parseSpoofSets(answer(set('spoofed4', [['vpevil', '100.65.1.3', '100.65.2.2', 'udp', 50]]), set('spoofed4', [['x', '1.1.1.1', '2.2.2.2', 'tcp', 5]], 'other')));
    expect(out).toEqual([{ iface: 'vpevil', source: '100.65.1.3', destination: '100.65.2.2', protocol: 'udp', expiresS: 50 }]);
    expect(parseSpoofSets(answer(set('spoofed6', [])))).toEqual([]);
    expect(parseSpoofSets(answer())).toBeNull();
    expect(() => parseSpoofSets({ nftables: 'no' })).toThrow(/unexpected answer/);
    expect(() => parseSpoofSets([1, 2])).toThrow(/unexpected answer/);
  });
});

describe('SpoofWatch', () => {
  it('reports a tuple once while it stays in its set, and again when added anew', async () => {
    let listed: unknown = answer(set('spoofed4', [['vpevil', '100.65.1.3', '100.65.2.2', 'udp', 60]]));
    const seen: SpoofedTuple[][] = [];
    const w = new SpoofWatch((t) => seen.push(t), () => undefined, () => Promise.resolve(JSON.stringify(listed)));
    await w.poll(0);
    await w.poll(1000);
    listed = answer(set('spoofed4', [['vpevil', '100.65.1.3', '100.65.2.2', 'udp', 58], ['vpevil', '100.65.1.3', '100.65.2.9', 17, 60]]));
    await w.poll(2000);
    // expired and added again: a later expiry
    listed = answer(set('spoofed4', [['vpevil', '100.65.1.3', '100.65.2.2', 'udp', 60]]));
    await w.poll(70_000);
    expect(seen).toEqual([
      [{ iface: 'vpevil', source: '100.65.1.3', destination: '100.65.2.2', protocol: 'udp' }],
      [{ iface: 'vpevil', source: '100.65.1.3', destination: '100.65.2.9', protocol: '17' }],
      [{ iface: 'vpevil', source: '100.65.1.3', destination: '100.65.2.2', protocol: 'udp' }],
    ]);
  });

  it('regression: an element listed without an expiry is reported once while it stays (it was re-reported every ~2 s)', async () => {
    const noExpiry = { nftables: [{ set: { family: 'netdev', name: 'spoofed4', table: 'wiremesh_pods', type: ['ifname', 'ipv4_addr', 'ipv4_addr', 'inet_proto'], handle: 1, elem: [{ elem: { val: { concat: ['vpevil', '100.65.1.3', '100.65.2.2', 'udp'] } } }] } }] };
    const seen: SpoofedTuple[][] = [];
    const w = new SpoofWatch((t) => seen.push(t), () => undefined, () => Promise.resolve(JSON.stringify(noExpiry)));
    for (let t = 0; t <= 10_000; t += 1000) await w.poll(t);
    expect(seen).toHaveLength(1);
  });

  it('a malformed answer is an error of that poll', async () => {
    const w = new SpoofWatch(() => undefined, () => undefined, () => Promise.resolve('{"nftables": 3}'));
    await expect(w.poll()).rejects.toThrow(/unexpected answer/);
  });
});

describe('podGuardScript', () => {
  it('adds the tuple in its own rule before the counted drop, to bounded sets with timeouts', () => {
    const s = podGuardScript('vpevil', '100.65.1.3', 'fd65:0:0:1::3');
    expect(s).toMatch(/add set netdev wiremesh_pods spoofed4 \{ type ifname \. ipv4_addr \. ipv4_addr \. inet_proto; size 4096; flags dynamic,timeout; timeout 60s; \}/);
    const lines = s.split('\n');
    const add4 = lines.findIndex((l) => l.includes('add @spoofed4'));
    const drop4 = lines.findIndex((l) => l.includes('ip saddr != 100.65.1.3 counter name spoofed_v76706576696c drop'));
    expect(add4).toBeGreaterThan(0);
    expect(drop4).toBe(add4 + 1);
    expect(lines[add4]).not.toMatch(/drop|accept/);
    expect(lines.findIndex((l) => l.includes('ip6 saddr') && l.includes('drop'))).toBe(lines.findIndex((l) => l.includes('add @spoofed6')) + 1);
  });
});

describe('pod guard names (review regression)', () => {
  it('gives distinct chains to veths that differ only in "-" and "_" (a shortened long name and a short one)', () => {
    expect(podGuardIdent('vpfron-c3ebb11e')).not.toBe(podGuardIdent('vpfron_c3ebb11e'));
    expect(podGuardScript('vpfron-c3ebb11e', '100.65.1.3')).not.toContain(podGuardIdent('vpfron_c3ebb11e'));
  });
});
