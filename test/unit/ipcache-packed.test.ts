// The ipcache table with its slots packed into columns (src/policy/ipcache.ts,
// src/policy/slotcolumns.ts) against the one-object-per-slot table it replaced
// (test/helpers/ipcache-oracle.ts) on seeded random sequences: same winners,
// owners, sizes and changes, slot indices reused across chunk boundaries.
import { describe, expect, it } from 'vitest';
import { IpcacheTable, type IpcacheOwnerKind } from '../../src/policy/ipcache.js';
import { SlotColumns } from '../../src/policy/slotcolumns.js';
import { OracleIpcacheTable } from '../helpers/ipcache-oracle.js';
import { prng } from '../helpers/prng.js';
import { shortIPv4Form } from '../../src/controlplane/compactkeys.js';
import { ipv4HostValue } from '../../src/net/ip.js';

const KINDS: IpcacheOwnerKind[] = ['node', 'local-endpoint', 'endpoint', 'cidr'];

function run(seed: number, steps: number, prefixes: number, seqLimit?: number): void {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  // the ends of the IPv4 space too: 0.0.0.0 is the key 0 (falsy), 255.255.255.255 sets the sign bit of an int32
  const ips = [...Array.from({ length: prefixes }, (_, i) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`), '0.0.0.0', '255.255.255.255', '128.0.0.1'];
  // the same address in every spelling the table accepts, plus a few non-host prefixes (IPv6 ones of 32 and 96
  // bits: not IPv4 hosts) and nonsense
  const spell = (ip: string) =>
    pick([ip, `${ip}/32`, ip, `${ip}/032`, `${ip.slice(0, ip.lastIndexOf('.'))}.0/24`, 'fd65::1', 'fd65::1/128', `::ffff:${ip}`, '2001:db8::/32', '::ffff:0:0/96', 'nonsense']);
  // endpoint key forms (compactkeys.ts) too: one naming the slot's own address is held as its base index, so the
  // table must give back the very text; one naming another address, or the same address of another base, is not
  const forms = (ip: string) => [shortIPv4Form(5, ipv4HostValue(ip)!), shortIPv4Form(0x123456, ipv4HostValue(ip)!), shortIPv4Form(5, ipv4HostValue(ips[0]!)!)];
  const plainOwners = ['ep-a', 'ep-b', 'node:1', 'local:x', 'cidr:y', 'ep-c'];
  const t = new IpcacheTable(seqLimit);
  const o = new OracleIpcacheTable();
  for (let step = 0; step < steps; step++) {
    const ip = pick(ips);
    const owners = [...plainOwners, ...forms(ip)];
    const r = rnd();
    if (r < 0.5) {
      const a = spell(ip);
      const owner = pick(owners);
      const kind = pick(KINDS);
      // identities and endpoint ids beyond 32 bits too: the columns hold every number exactly
      // (0 and -0 too: a slot's value before a round is held as its identity alone when its endpoint is 0, so a
      // "was" of 0 must not read as none: review of s29)
      const v = { identity: pick([0, -0, 1, 6, 0x10101, (1 << 24) + 3, 2 ** 40 + 1]), endpoint: pick([0, -0, 7, 65535, 2 ** 33]) };
      t.set(a, owner, kind, v);
      o.set(a, owner, kind, v);
    } else if (r < 0.85) {
      const a = spell(ip);
      const owner = pick(owners);
      t.delete(a, owner);
      o.delete(a, owner);
    } else if (r < 0.95) {
      expect(t.takeChanges(), `seed ${seed} step ${step}`).toEqual(o.takeChanges());
      expect(t.size).toBe(o.size);
    } else {
      const a = spell(ip);
      expect(t.get(a), `seed ${seed} step ${step}`).toEqual(o.get(a));
      expect(t.ownersOf(a)).toEqual(o.ownersOf(a));
      for (const k of KINDS) expect(t.ownersOfKind(a, k)).toEqual(o.ownersOf(a).filter((x) => x.kind === k).map((x) => x.owner));
    }
  }
  expect(t.takeChanges()).toEqual(o.takeChanges());
  for (const ip of ips) expect(t.get(ip)).toEqual(o.get(ip));
}

describe('packed ipcache slots against the object-per-slot table', () => {
  it('agrees on random sequences over few prefixes (many owners per prefix)', () => {
    for (let seed = 1; seed <= 40; seed++) run(seed, 3000, 8);
  });

  it('agrees on random sequences over more prefixes than one chunk of slots (indices freed and reused)', () => {
    for (let seed = 100; seed <= 101; seed++) run(seed, 40_000, 6000);
  });
});

describe('endpoint key forms as owners', () => {
  it("holds a form naming the slot's own address as its base index, and gives the same text back", () => {
    const t = new IpcacheTable();
    const own = shortIPv4Form(9, ipv4HostValue('100.64.1.2')!);
    const other = shortIPv4Form(9, ipv4HostValue('100.64.1.3')!);
    t.set('100.64.1.2', own, 'endpoint', { identity: 300, endpoint: 0 });
    t.set('100.64.1.2', other, 'endpoint', { identity: 301, endpoint: 0 });
    const cols = (t as unknown as { cols: SlotColumns }).cols;
    expect(cols.str(0)).toBe(9); // no string held for the inline owner
    expect(t.ownersOf('100.64.1.2')).toEqual([{ owner: own, kind: 'endpoint' }, { owner: other, kind: 'endpoint' }]);
    expect(t.get('100.64.1.2')).toEqual({ identity: 301, endpoint: 0, kind: 'endpoint', owner: other });
    t.delete('100.64.1.2', own); // the next owner moves inline: it names another address, so its text is held
    expect(cols.str(0)).toBe(other);
    expect(t.ownersOfKind('100.64.1.2', 'endpoint')).toEqual([other]);
  });
});

describe('claim sequence renumbering', () => {
  // regression (review of s7mem): past 2^30 claims every slot's seq × 4 + kind spilled out of its Uint32
  // column for good (~49 B per slot); the claims are renumbered instead, here every 40 claims
  it('same winners and owners as the object-per-slot table when the sequence is renumbered often', () => {
    for (let seed = 200; seed <= 220; seed++) run(seed, 3000, 8, 40);
    run(300, 20_000, 500, 40);
  });

  it('the sequence never spills: past the limit, slots still hold their claims inline', () => {
    // a table that has handed out nearly 2^30 claims (the default limit), as after ~10^9 address flips
    const t = new IpcacheTable();
    (t as unknown as { seq: number }).seq = 2 ** 30 - 10;
    for (let i = 0; i < 5000; i++) t.set(`100.64.0.${i % 200}`, `ep-${i % 3}`, 'endpoint', { identity: 300 + (i % 7), endpoint: i % 11 });
    expect(t.spilled).toBe(0);
    const ref = new IpcacheTable(2 ** 40);
    for (let i = 0; i < 5000; i++) ref.set(`100.64.0.${i % 200}`, `ep-${i % 3}`, 'endpoint', { identity: 300 + (i % 7), endpoint: i % 11 });
    for (let i = 0; i < 200; i++) expect(t.get(`100.64.0.${i}`)).toEqual(ref.get(`100.64.0.${i}`));
  });
});

describe('slot columns', () => {
  it('a fresh record has its initial fields; freed indices come back, latest freed first', () => {
    const c = new SlotColumns(2, [0, -1]);
    const idx = Array.from({ length: 5000 }, () => c.alloc());
    expect(idx[4999]).toBe(4999);
    c.set(4100, 0, 2 ** 52 + 1);
    c.setStr(4100, 'x');
    expect([c.get(4100, 0), c.get(4100, 1), c.str(4100)]).toEqual([2 ** 52 + 1, -1, 'x']);
    c.release(7);
    c.release(4100);
    expect(c.alloc()).toBe(4100);
    expect([c.get(4100, 0), c.get(4100, 1), c.str(4100)]).toEqual([0, -1, undefined]);
    expect(c.alloc()).toBe(7);
    expect(c.alloc()).toBe(5000);
  });

  it('reads back every number exactly against arrays of fields, on random sequences (inline codes and spills)', () => {
    // u32 codes for integers in [-1, 2^32 - 3]; everything else spills to a side map
    const VALUES = [-1, 0, 1, 7, 65535, 2 ** 31, 2 ** 32 - 3, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 52 + 1, -2, -0, 0.5, NaN, Infinity];
    // the string's place: strings and numbers (any: it holds them as they are)
    const STRS = ['a', 'b', undefined, 0, 5, 2 ** 24 - 1, 2 ** 32 - 3, 2 ** 32 - 2, -1, 0.5, -0, 2 ** 48];
    for (const seed of [1, 2, 3]) {
      const rnd = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const initial = [0, -1, 2 ** 40];
      const c = new SlotColumns(3, initial);
      const d = new SlotColumns(3, initial, [1]); // the same with field 1 sparse (no column): same answers
      const both = { alloc: () => { const i = c.alloc(); expect(d.alloc()).toBe(i); return i; }, release: (i: number) => (c.release(i), d.release(i)), set: (i: number, f: number, v: number) => (c.set(i, f, v), d.set(i, f, v)), setStr: (i: number, v: string | number | undefined) => (c.setStr(i, v), d.setStr(i, v)) };
      const model = new Map<number, { f: number[]; s: string | number | undefined }>();
      for (let step = 0; step < 20_000; step++) {
        const r = rnd();
        const held = [...model.keys()];
        if (r < 0.3 || held.length === 0) {
          const i = both.alloc();
          expect(model.has(i)).toBe(false);
          model.set(i, { f: [...initial], s: undefined });
        } else if (r < 0.45) {
          const i = pick(held);
          both.release(i);
          model.delete(i);
        } else if (r < 0.9) {
          const i = pick(held);
          const f = Math.floor(rnd() * 3);
          const v = pick(VALUES);
          both.set(i, f, v);
          model.get(i)!.f[f] = v;
          if (rnd() < 0.2) {
            const s = pick(STRS);
            both.setStr(i, s);
            model.get(i)!.s = s;
          }
        }
        const i = held.length ? pick(held) : -1;
        const m = model.get(i);
        if (m) {
          for (const t of [c, d]) {
            for (let f = 0; f < 3; f++) expect(Object.is(t.get(i, f), m.f[f]), `seed ${seed} step ${step}`).toBe(true);
            expect(Object.is(t.str(i), m.s)).toBe(true);
          }
        }
      }
      // a spill is dropped once its field holds a plain value again or its record is released
      let expected = 0;
      for (const [i, m] of model) {
        for (let f = 0; f < 3; f++) expect(Object.is(c.get(i, f), m.f[f])).toBe(true);
        expected += m.f.filter((v) => !(Number.isInteger(v) && v >= -1 && v <= 2 ** 32 - 3 && !Object.is(v, -0))).length;
      }
      expect(c.spilled).toBe(expected);
      for (const i of [...model.keys()]) both.release(i);
      expect(c.spilled).toBe(0);
      // nothing left in the side maps of released records (sparse values, spills)
      const sides = d as unknown as { sparseValues: Map<number, number> };
      expect([sides.sparseValues.size, d.spilled]).toEqual([0, 0]);
      for (let n = 0; n < model.size; n++) c.alloc(); // reuses the freed ones: their fields back to initial
      expect(c.spilled).toBe(model.size); // field 2's initial 2^40 spilled per record
    }
  });
});
