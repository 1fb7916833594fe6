// The packed prefix trie (src/net/prefixtrie.ts: children and first owner inline) against a straightforward
// model (test/helpers/prefixtrie-oracle.ts: a scan of every stored prefix) on seeded random sequences.
import { describe, expect, it } from 'vitest';
import { PrefixTrie } from '../../src/net/prefixtrie.js';
import { parsePrefix, type Prefix } from '../../src/net/ip.js';
import { OraclePrefixTrie } from '../helpers/prefixtrie-oracle.js';
import { prng } from '../helpers/prng.js';

// a small universe so that prefixes nest, repeat and share owners
const TEXTS = [
  '100.64.0.0/10', '100.64.0.0/14', '100.64.0.0/16', '100.64.1.0/24', '100.64.1.0/25', '100.64.1.128/25', '100.64.1.7/32',
  '100.65.0.0/16', '100.65.2.0/24', '198.18.0.1/32', '198.18.0.0/15', '0.0.0.0/0', '100.64.1.7/31',
  'fd00::/8', 'fd00:1::/32', 'fd00:1::/64', 'fd00:1::7/128', 'fd00:2::/48', '::/0',
];
const PREFIXES: Prefix[] = TEXTS.map((t) => parsePrefix(t));
const OWNERS = ['a', 'b', 'c', 'd', 'e'];

describe('PrefixTrie (packed)', () => {
  for (const seed of [1, 2, 3, 42, 9001]) {
    it(`answers as the former trie on random changes (seed ${seed})`, () => {
      const rand = prng(seed);
      const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const t = new PrefixTrie<string>();
      const o = new OraclePrefixTrie<string>();
      for (let step = 0; step < 1500; step++) {
        const p = pick(PREFIXES);
        const owner = pick(OWNERS);
        if (rand() < 0.55) {
          t.insert(p, owner);
          o.insert(p, owner);
        } else {
          t.remove(p, owner);
          o.remove(p, owner);
        }
        const got: unknown[] = [];
        const want: unknown[] = [];
        for (const q of PREFIXES) {
          const except = rand() < 0.5 ? pick(OWNERS) : undefined;
          got.push(t.covering(q, except), t.within(q, except), t.overlapping(q, except));
          want.push(o.covering(q, except), o.within(q, except), o.overlapping(q, except));
        }
        expect(got).toEqual(want);
      }
    });
  }

  it('answers the oldest remaining owner of a prefix first, and forgets a prefix once its owners are gone', () => {
    const t = new PrefixTrie<string>();
    const p = parsePrefix('100.64.1.0/24');
    for (const x of ['a', 'b', 'c']) t.insert(p, x);
    expect(t.covering(p)).toBe('a');
    t.remove(p, 'a');
    expect(t.covering(p)).toBe('b');
    t.insert(p, 'a'); // re-added: now the newest
    t.remove(p, 'b');
    expect(t.covering(p)).toBe('c');
    expect(t.covering(p, 'c')).toBe('a');
    t.remove(p, 'c');
    t.remove(p, 'a');
    expect(t.within(parsePrefix('0.0.0.0/0'))).toBeUndefined();
    expect(t.covering(parsePrefix('100.64.1.9/32'))).toBeUndefined();
  });
});
