// The metrics listener's choice of the connection to evict (MetricsSlots), on plain values: the per-/64 bound an
// IPv6 host with many addresses meets (review of s13metrics, finding 1: one host with 128 addresses of its /64 held
// the 64 slots, then evicted the scraper of another /64). Sockets: test/unit/metricsserver-hostile.test.ts.
import { describe, expect, it } from 'vitest';
import { MetricsSlots } from '../../src/net/metricsslots.js';

const P = '2001:db8:0:1::/64';

describe('metrics listener slots', () => {
  it('one /64 holds maxPerPrefix at most: its new connection evicts one of its own, never a scraper of another /64', () => {
    const slots = new MetricsSlots<string>({ maxConnections: 64, maxPerPrefix: 16 });
    slots.add('scraper', '2001:db8:0:2::9', '2001:db8:0:2::/64');
    slots.answered('scraper');
    for (let i = 1; i <= 128; i++) {
      const victim = slots.victim(P);
      // the 17th on: the /64 is full, its oldest (silent, one each) goes; the listener never fills
      expect(victim).toBe(i <= 16 ? undefined : `h${i - 16}`);
      if (victim) slots.remove(victim);
      slots.add(`h${i}`, `2001:db8:0:1::${i.toString(16)}`, P);
    }
    expect(slots.size).toBe(17);
    expect(slots.victim('2001:db8:0:3::/64')).toBeUndefined(); // room for others: 64 - 17
  });

  it('a full /64 keeps its answered connections while it holds a silent one (a scraper pod of the /64 still gets in)', () => {
    const slots = new MetricsSlots<string>({ maxConnections: 64, maxPerPrefix: 4 });
    slots.add('scraper', '2001:db8:0:1::1', P);
    slots.answered('scraper');
    for (let i = 2; i <= 4; i++) slots.add(`pod${i}`, `2001:db8:0:1::${i}`, P);
    expect(slots.victim(P)).toBe('pod2');
    slots.answered('pod2');
    slots.answered('pod3');
    expect(slots.victim(P)).toBe('pod4');
    slots.answered('pod4');
    expect(slots.victim(P)).toBe('scraper'); // none silent, one each: the oldest (the gap docs/security.md states)
  });

  it('the listener full: the client holding the most, then silent, then the oldest; remove is idempotent', () => {
    const slots = new MetricsSlots<string>({ maxConnections: 3, maxPerPrefix: 16 });
    slots.add('a1', '198.18.0.1', '198.18.0.1');
    slots.answered('a1');
    slots.add('b', '198.18.0.2', '198.18.0.2');
    slots.add('a2', '198.18.0.1', '198.18.0.1');
    expect(slots.victim('198.18.0.3')).toBe('a2'); // 198.18.0.1 holds two: its silent one, though newer
    slots.remove('a2');
    slots.remove('a2');
    expect(slots.victim('198.18.0.3')).toBeUndefined();
    slots.add('c', '198.18.0.3', '198.18.0.3');
    expect(slots.victim('198.18.0.4')).toBe('b'); // one each, 'b' and 'c' silent: the older, not the older 'a1'
  });

  it('bounds below 1 are refused', () => {
    expect(() => new MetricsSlots({ maxConnections: 0, maxPerPrefix: 16 })).toThrow(RangeError);
    expect(() => new MetricsSlots({ maxConnections: 64, maxPerPrefix: 0 })).toThrow(RangeError);
  });
});
