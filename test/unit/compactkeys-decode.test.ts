// The short IPv4 compact form's decoder (src/controlplane/compactkeys.ts: isShortIPv4Form, formBase, formAddress,
// shortIPv4Form) against CompactKeys.acquire/full on seeded random keys: a form passes exactly when it is a short
// compact IPv4 one, its address is the key's dotted quad, its base the same number for every key of one base text
// and another for every other base, and the two numbers make the form again. Near 2^24 bases the forms grow to 11
// characters and no longer pass; strings that only look like forms (plain keys, escapes, two-byte characters) do
// not pass, and the few 8-character strings that pass without being made here are still made again exactly.
import { describe, expect, it } from 'vitest';
import { CompactKeys, formAddress, formBase, isShortIPv4Form, shortIPv4Form } from '../../src/controlplane/compactkeys.js';
import { prng } from '../helpers/prng.js';

const P = 'wiremesh/cache/ip/v2/';
const quad = (a: number): number[] => [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255];

describe('short IPv4 compact forms, decoded', () => {
  for (const first of [0, 2 ** 24 - 40])
    it(`reads back base and address of every form CompactKeys makes (first base ${first})`, () => {
      const rnd = prng(first + 3);
      const ck = new CompactKeys({ firstIndex: first });
      const baseOfText = new Map<string, number>();
      for (let i = 0; i < 20_000; i++) {
        const node = `c${Math.floor(rnd() * 3)}/n${Math.floor(rnd() * 80)}/`;
        const addr = i % 97 === 0 ? [0, 0xffffffff, 0x80000000][i % 3]! : Math.floor(rnd() * 2 ** 32);
        const v6 = i % 13 === 0;
        const key = P + node + (v6 ? `2001:db8::${(addr & 0xffff).toString(16)}` : quad(addr).join('.'));
        const form = ck.acquire(key);
        expect(ck.full(form)).toBe(key);
        const short = !v6 && form.length === 8;
        expect(isShortIPv4Form(form), `${key} as ${JSON.stringify(form)}`).toBe(short);
        if (!short) continue;
        expect(formAddress(form)).toBe(addr);
        const b = formBase(form);
        expect(b).toBeLessThan(2 ** 24);
        if (!baseOfText.has(node)) expect([...baseOfText.values()]).not.toContain(b);
        expect(baseOfText.get(node) ?? b).toBe(b);
        baseOfText.set(node, b);
        expect(shortIPv4Form(b, addr)).toBe(form);
      }
      // below 2^24 every base's IPv4 forms are short; past it (the second run) only the first 40 bases' are
      expect(baseOfText.size).toBe(first === 0 ? 240 : 40);
    });

  it('refuses what only looks like a short IPv4 form, and makes again every 8-character string it takes', () => {
    const ck = new CompactKeys();
    const not = ['', '\u0000', '\u0000abcdef', '\u0000abcdefgh', '\u0000abc\u0100efg', '\u0100abcdefg', '\u0001abcdefg', '\u0002\u0000abcdef', 'abcdefgh'];
    not.push(ck.acquire('\u0000abcdefg'), ck.acquire(`${P}c1/n1/2001:db8::1`), ck.acquire(`${P}c1/n1/100.64.0.01`), ck.acquire('\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007'));
    for (const s of not) expect(isShortIPv4Form(s), JSON.stringify(s)).toBe(false);
    for (const s of ['\u0000\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff', '\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000', '\u0000abc\u0080efg']) {
      expect(isShortIPv4Form(s)).toBe(true);
      expect(shortIPv4Form(formBase(s), formAddress(s))).toBe(s);
    }
  });
});
