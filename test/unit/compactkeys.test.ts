// Compact key forms (src/controlplane/compactkeys.ts) against a plain Map as the oracle on seeded random sequences of
// acquires and releases (keys coming and going, filling and draining), with keys a hostile remote
// chooses: non-canonical addresses, odd node names, keys that spell another key's compact form, control characters.
// Checked at every step: each held key's form gives the key back, no two held keys share a form, bases are released
// with their last key (the table holds exactly the bases of held compact keys), a released form is refused loudly.
import { describe, expect, it } from 'vitest';
import { CompactKeys } from '../../src/controlplane/compactkeys.js';
import { prng } from '../helpers/prng.js';

const P = 'wiremesh/cache/ip/v2/';
const HOSTILE = [
  `${P}c1/n1/100.64.0.01`, // leading zero: not canonical, kept as text
  `${P}c1/n1/100.64.000.1`,
  `${P}c1/n1/::FFFF:100.64.0.1`,
  `${P}c1/n1/::ffff:100.64.0.1`, // canonical IPv4-mapped IPv6: 16 bytes, apart from 100.64.0.1
  `${P}c1/n1/100.64.0.1`,
  `${P}c1/n1/0:0::1`,
  `${P}c1/n1/::1`,
  `${P}c1/n1/fe80::1%eth0`,
  `${P}c1/n1/2001:db8::1`,
  `${P}c1/n1/2001:DB8::1`,
  `${P}c1/n1/100.64.0.1 `,
  `${P}c1/n1/`,
  `${P}c1/n1/a/100.64.0.1`, // an extra segment: its own base
  `${P}c1/n1//100.64.0.1`,
  `${P}c1/n\u00e9/100.64.0.1`,
  `${P}c1/n\u4e00/100.64.0.1`, // a two-byte base
  '100.64.0.1',
  '/100.64.0.1',
  '',
  '/',
  '\u0001',
  '\u0002',
  '\u0000x',
  '\u0001\u0000\u0000\u0000\u0000\u0000\u0000d@\u0000\u0001', // the long compact form of the first base's 100.64.0.1
  '\u0002\u0001\u0000\u0000\u0000\u0000\u0000\u0000d@\u0000\u0001', // its escape
  '\u0000\u0000\u0000\u0000d@\u0000\u0001', // the short compact form of the first base's 100.64.0.1
  '\u0002\u0000\u0000\u0000\u0000d@\u0000\u0001', // its escape
  '\u0000\u00ff\u00ff\u00ffd@\u0000\u0001', // the last short index's
  `${P}c1/n1/${'1'.repeat(200)}`,
  // bases at and around the prefixes a table may split off (s39): the prefix itself, the prefix and '/', '//'
  `${P}100.64.0.1`,
  `${P}/100.64.0.1`,
  `${P}//100.64.0.1`,
  `${P}c1/100.64.0.1`,
  `wiremesh/state/ip/v2/c1/n1/100.64.0.1`,
  `wiremesh/100.64.0.1`,
];
/** Prefix lists the random runs split bases at: none, the endpoint store's, overlapping ones, one ending mid-name. */
const PREFIX_LISTS: string[][] = [[], ['wiremesh/state/ip/v2/', P], ['wiremesh/', P], [P, 'wiremesh/'], [`${P}remote-1/ip-10-0-1`, `${P}c1/`]];

function keyPool(rand: () => number): string[] {
  const keys = [...HOSTILE];
  // ~3 keys per base over ~140 bases: past FREE_BASES (64) the guard keeps some keys plain
  for (let i = 0; i < 400; i++) {
    const node = `ip-10-0-${i % 23}.eu-west-1.compute.internal`;
    const cluster = `remote-${1 + (i % 3)}`;
    const v6 = rand() < 0.2;
    const ip = v6 ? `fd00::${(i % 50).toString(16)}` : `100.64.${i % 7}.${i % 250}`;
    keys.push(`${rand() < 0.5 ? P : 'wiremesh/state/ip/v2/'}${cluster}/${node}/${ip}`);
  }
  return keys;
}

/** A compact form (short: \x00 and a 3-character index; long: \x01 and 6) and its mark and index. */
const isCompact = (form: string) => form.charCodeAt(0) <= 1;
const headOf = (form: string) => form.slice(0, form.charCodeAt(0) === 0 ? 4 : 7);

describe('CompactKeys', () => {
  // the first index 0 (every form short), or just below 2^24, where a run's bases cross from short forms to long, or
  // just below 2^32, where they cross from the U32Map of indices to the Map past it (s37: bases in slots, reused)
  for (const [run, [seed, first]] of ([[1, 0], [2, 0], [3, 0], [42, 0], [9001, 0], [7, 2 ** 24 - 60], [8, 2 ** 24 - 200], [10, 2 ** 32 - 150], [11, 2 ** 31 - 150]] as const).entries()) {
    it(`gives every held key back from its own form, never one form for two keys (seed ${seed}, first index ${first})`, () => {
      const rand = prng(seed);
      const keys = keyPool(rand);
      const prefixes = PREFIX_LISTS[run % PREFIX_LISTS.length]!; // each list in at least one run
      const ck = new CompactKeys({ firstIndex: first, prefixes });
      const lengths = new Set<number>();
      const held = new Map<string, string>(); // the oracle: key → its form
      const stale: string[] = []; // compact forms whose base went with their last key
      const check = () => {
        const byForm = new Map<string, string>();
        const bases = new Set<string>();
        const forms = new Set(held.values());
        for (const [k, form] of held) {
          expect(ck.full(form)).toBe(k);
          expect(ck.heldForm(k, (f) => forms.has(f))).toBe(form);
          expect(byForm.get(form)).toBeUndefined();
          byForm.set(form, k);
          if (!isCompact(form)) {
            expect(ck.tail(form)).toBeUndefined();
            continue;
          }
          const base = k.slice(0, k.lastIndexOf('/') + 1);
          bases.add(base);
          expect(ck.holds(form)).toBe(true);
          expect(ck.base(form)).toBe(base);
          // the oracle's split: the first prefix the base starts with and has more after (then its tail), else none
          const p = prefixes.find((x) => base.startsWith(x) && base.length > x.length);
          expect(ck.tail(form)).toBe(p === undefined ? undefined : base.slice(p.length, -1));
        }
        expect(ck.bases).toBe(bases.size);
        // a form whose base went is refused, never read as another key, even once its base text is held again
        // (indices are not reused)
        for (const f of stale.slice(-50)) {
          expect(() => ck.full(f)).toThrow(/released/);
          expect(() => ck.tail(f)).toThrow(/released/);
          expect(ck.holds(f)).toBe(false);
        }
      };
      for (let step = 0; step < 6000; step++) {
        const fill = Math.floor(step / 1500) % 2 === 0 ? 0.7 : 0.3; // phases that fill and drain
        const r = rand();
        if (r < fill) {
          const k = keys[Math.floor(rand() * keys.length)]!;
          if (!held.has(k)) {
            // one holder per key, as ListWatcher (it finds a held key's form, heldForm, and acquires only new keys)
            const form = ck.acquire(k);
            held.set(k, form);
            if (isCompact(form)) lengths.add(form.length);
            expect(form.length).toBeLessThanOrEqual(k.length + 1);
          }
        } else if (held.size > 0) {
          const all = [...held.keys()];
          const k = all[Math.floor(rand() * all.length)]!;
          const form = held.get(k)!;
          ck.release(form);
          held.delete(k);
          if (isCompact(form) && ![...held.values()].some((x) => isCompact(x) && headOf(x) === headOf(form))) stale.push(form);
        }
        if (step % 50 === 0) check();
      }
      check();
      for (const f of held.values()) ck.release(f);
      expect(ck.bases).toBe(0);
      expect(stale.length).toBeGreaterThan(0);
      // both lengths of each family seen when the run crossed 2^24 (IPv4 8 and 11, IPv6 20 and 23), else the short ones
      expect([...lengths].sort((a, b) => a - b)).toEqual(first === 0 ? [8, 20] : first < 2 ** 24 ? [8, 11, 20, 23] : [11, 23]);
      for (const f of stale) expect(() => ck.full(f)).toThrow(/released/);
    });
  }

  it('compacts canonical addresses only, and an 80-character endpoint key to 8 characters', () => {
    const ck = new CompactKeys();
    const k = `${P}remote-1/ip-10-0-1.eu-west-1.compute.internal/100.64.3.12`;
    expect(ck.acquire(k)).toHaveLength(8);
    expect(ck.acquire(`${P}remote-1/ip-10-0-1.eu-west-1.compute.internal/fd00::1`)).toHaveLength(20);
    for (const odd of [`${P}c/n/100.64.0.01`, `${P}c/n/::FFFF:1.2.3.4`, `${P}c/n/fe80::1%eth0`, `${P}c/n/x`]) expect(ck.acquire(odd)).toBe(odd);
    expect(ck.bases).toBe(1);
    expect(ck.find(`${P}other/n/100.64.0.1`)).toBeUndefined(); // not held: nothing interned by asking
    expect(ck.bases).toBe(1);
  });

  it('keeps keys plain past 64 bases while fewer than 4 keys are held per base, and finds them after', () => {
    const ck = new CompactKeys();
    const key = (n: number, a: number) => `${P}c/node-${n}/100.64.0.${a}`;
    for (let n = 0; n < 64; n++) expect(ck.acquire(key(n, 1)).charCodeAt(0)).toBe(0); // one key per base: hostile
    expect(ck.acquire(key(64, 1))).toBe(key(64, 1)); // no 65th base: its text, as without the table
    expect(ck.bases).toBe(64);
    for (let n = 0; n < 64; n++) for (let a = 2; a <= 4; a++) ck.acquire(key(n, a)); // 4 per base now
    const compact = ck.acquire(key(64, 2)); // node-64's base is made at last
    expect(compact.charCodeAt(0)).toBe(0);
    expect(ck.find(key(64, 1))).not.toBe(key(64, 1)); // its compact form now, but it is held plain:
    const held = new Set([key(64, 1), compact]);
    expect(ck.heldForm(key(64, 1), (f) => held.has(f))).toBe(key(64, 1));
    expect(ck.heldForm(key(64, 2), (f) => held.has(f))).toBe(compact);
    ck.release(key(64, 1));
    ck.release(compact);
    expect(ck.bases).toBe(64);
  });

  it('gives bases from 2^24 on forms of 11 and 23 characters, apart from the short forms of the same bytes', () => {
    const ck = new CompactKeys({ firstIndex: 2 ** 24 - 1 });
    const last = ck.acquire(`${P}c/n1/100.64.0.1`); // index 2^24 - 1: the last short one
    const long = ck.acquire(`${P}c/n2/100.64.0.1`); // index 2^24
    expect(last).toBe('\u0000\u00ff\u00ff\u00ffd@\u0000\u0001');
    expect(long).toBe('\u0001\u0000\u0000\u0000\u0001\u0000\u0000d@\u0000\u0001');
    expect(ck.acquire(`${P}c/n2/fd00::1`)).toHaveLength(23);
    expect(ck.full(last)).toBe(`${P}c/n1/100.64.0.1`);
    expect(ck.full(long)).toBe(`${P}c/n2/100.64.0.1`);
    expect(ck.base(long)).toBe(`${P}c/n2/`);
    // a short form of index 0 (never made here) names no held base; a long form of a short index (held) is none made
    expect(() => ck.full('\u0000\u0000\u0000\u0000d@\u0000\u0001')).toThrow(/released/);
    expect(() => ck.full('\u0001\u00ff\u00ff\u00ff\u0000\u0000\u0000d@\u0000\u0001')).toThrow(/long form of a short index/);
    ck.release(long);
    expect(ck.bases).toBe(2);
  });

  it('keeps a key that spells a compact form apart from the key it stands for', () => {
    const ck = new CompactKeys();
    const form = ck.acquire(`${P}c/n/100.64.0.1`);
    const spoof = ck.acquire(form); // a remote's key equal to that form
    expect(spoof).not.toBe(form);
    expect(ck.full(spoof)).toBe(form);
    expect(ck.full(form)).toBe(`${P}c/n/100.64.0.1`);
    expect(ck.acquire(`\u0002${form}`)).not.toBe(spoof);
    expect(() => ck.release(ck.acquire('\u0001'))).not.toThrow(); // escaped: holds nothing
    expect(() => ck.release(ck.acquire('\u0000'))).not.toThrow();
    expect(ck.acquire('\u0000')).toBe('\u0002\u0000');
  });

  // review of s13mem #4: the guard counted compact keys only, so 64 one-key bases listed first (a remote's junk
  // endpoint keys on 64 node names, or an honest cluster of ≤ 3 endpoints per node) kept every later key plain
  const node = (n: string, a: number) => `${P}c2/${n}/100.66.${a >> 8}.${a & 255}`;
  const compactShare = (forms: string[]) => forms.filter(isCompact).length / forms.length;

  it('compacts 10 000 honest keys behind a hostile 64-node prefix, its bases bounded by the keys held', () => {
    const ck = new CompactKeys();
    for (let n = 0; n < 64; n++) ck.acquire(node(`aaa-junk-${n}`, 1)); // listed first (key order)
    const honest: string[] = [];
    for (let n = 0; n < 1000; n++) for (let a = 0; a < 10; a++) honest.push(ck.acquire(node(`node-${n}`, a)));
    expect(compactShare(honest)).toBeGreaterThan(0.97); // was 0: 0 of 10 000
    expect(ck.bases).toBeLessThanOrEqual(64 + (64 + honest.length) / 4);
  });

  it('compacts half the keys of an honest cluster of 3 endpoints per node, and never holds more than a base per 4 keys past 64', () => {
    const ck = new CompactKeys();
    const forms: string[] = [];
    for (let n = 0; n < 3000; n++) {
      for (let a = 0; a < 3; a++) forms.push(ck.acquire(node(`node-${n}`, a)));
      expect(ck.bases).toBeLessThanOrEqual(64 + Math.ceil(forms.length / 4));
    }
    // half: a node's first key is kept plain until 4 keys are held per base (at 3 keys a base about pays for itself)
    expect(compactShare(forms)).toBeGreaterThan(0.45); // was 64 × 3 of 9000
    // every base goes with its last key, the plain keys counted out again
    for (const f of forms) ck.release(f);
    expect(ck.bases).toBe(0);
    const again = ck.acquire(node('node-0', 0));
    expect(again.charCodeAt(0)).toBe(0); // below 64 bases again: compact at once
  });
});
