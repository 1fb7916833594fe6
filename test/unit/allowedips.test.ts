import { describe, expect, it } from 'vitest';
import { testhooks } from '../../src/native/testhooks.js';
import { maskPrefix, parseIP } from '../../src/net/ip.js';

// Deterministic PRNG so a failure reproduces.
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

interface Entry { addr: Buffer; cidr: number; peer: number }

function naiveLookup(entries: Entry[], addr: Buffer): number {
  let best = -1, bestLen = -1;
  for (const e of entries) {
    if (e.addr.length !== addr.length || e.cidr <= bestLen) continue;
    if (maskPrefix(addr, e.cidr).equals(e.addr)) { best = e.peer; bestLen = e.cidr; }
  }
  return best;
}

describe('allowed-IPs table', () => {
  it('does longest-prefix match on hand-picked cases', () => {
    const t = new testhooks.AllowedIPs();
    t.insert(parseIP('100.64.0.0')!, 10, 1);
    t.insert(parseIP('100.64.1.0')!, 24, 2);
    t.insert(parseIP('100.64.1.7')!, 32, 3);
    t.insert(parseIP('0.0.0.0')!, 0, 4);
    t.insert(parseIP('fd00::')!, 8, 5);
    expect(t.lookup(parseIP('100.64.1.7')!)).toBe(3);
    expect(t.lookup(parseIP('100.64.1.8')!)).toBe(2);
    expect(t.lookup(parseIP('100.65.0.1')!)).toBe(1);
    expect(t.lookup(parseIP('198.18.0.1')!)).toBe(4);
    expect(t.lookup(parseIP('fd12::1')!)).toBe(5);
    expect(t.lookup(parseIP('2001:db8::1')!)).toBe(-1);
    t.insert(parseIP('100.64.1.0')!, 24, 9); // same prefix: replaced
    expect(t.lookup(parseIP('100.64.1.8')!)).toBe(9);
    t.removePeer(9);
    expect(t.lookup(parseIP('100.64.1.8')!)).toBe(1);
    expect(t.size()).toBe(4);
  });

  for (const family of [4, 16]) {
    it(`agrees with a naive model on random IPv${family === 4 ? 4 : 6} prefixes`, () => {
      const rand = rng(family * 7919);
      const t = new testhooks.AllowedIPs();
      const model: Entry[] = [];
      const randomAddr = () => {
        const b = Buffer.alloc(family);
        for (let i = 0; i < family; i++) b[i] = Math.floor(rand() * 256);
        // cluster addresses so prefixes actually nest
        b[0] = 100 + Math.floor(rand() * 2);
        return b;
      };
      for (let i = 0; i < 1000; i++) {
        const cidr = Math.floor(rand() * (family * 8 + 1));
        const addr = maskPrefix(randomAddr(), cidr);
        const peer = Math.floor(rand() * 50);
        t.insert(addr, cidr, peer);
        const same = model.findIndex((e) => e.cidr === cidr && e.addr.equals(addr));
        if (same >= 0) model[same]!.peer = peer;
        else model.push({ addr, cidr, peer });
      }
      expect(t.size()).toBe(model.length);
      for (let i = 0; i < 1500; i++) {
        const a = randomAddr();
        expect(t.lookup(a)).toBe(naiveLookup(model, a));
      }
      for (let p = 0; p < 50; p += 3) {
        t.removePeer(p);
        for (let i = model.length - 1; i >= 0; i--) if (model[i]!.peer === p) model.splice(i, 1);
      }
      expect(t.size()).toBe(model.length);
      for (let i = 0; i < 1500; i++) {
        const a = randomAddr();
        expect(t.lookup(a)).toBe(naiveLookup(model, a));
      }
    });
  }

  // Per-peer prefix ownership: replacing and removing peers' prefixes (set_allowed_ips = remove_peer + inserts)
  // in random seeded sequences, checked after every step against a map prefix -> peer with longest-prefix lookup.
  for (const seed of [1, 2, 3]) {
    it(`set/remove sequences agree with a naive model (seed ${seed})`, () => {
      const rand = rng(seed * 104729);
      const t = new testhooks.AllowedIPs();
      const model = new Map<string, Entry>(); // "hex/cidr" -> entry
      const pick = (n: number) => Math.floor(rand() * n);
      const randomPrefix = (): [Buffer, number] => {
        const family = rand() < 0.7 ? 4 : 16;
        const b = Buffer.alloc(family);
        for (let i = 0; i < family; i++) b[i] = pick(256);
        b[0] = 100 + pick(2);
        if (family === 4) b[1] = 64 + pick(4); // dense: prefixes nest and share branch nodes
        const cidr = family === 4 ? [8, 10, 16, 20, 24, 28, 32, pick(33)][pick(8)]! : [0, 16, 48, 64, 128, pick(129)][pick(6)]!;
        return [maskPrefix(b, cidr), cidr];
      };
      const probes = (): Buffer[] => {
        const out: Buffer[] = [];
        for (const e of model.values()) {
          const inside = Buffer.from(e.addr);
          inside[inside.length - 1]! ^= 1; // a neighbour: inside the prefix unless it is a full-length one
          out.push(e.addr, inside);
        }
        for (let i = 0; i < 40; i++) out.push(randomPrefix()[0]);
        return out;
      };
      for (let step = 0; step < 300; step++) {
        const peer = pick(24);
        const op = rand();
        if (op < 0.75) {
          const prefixes = Array.from({ length: pick(5) }, randomPrefix);
          t.removePeer(peer);
          for (const [k, e] of model) if (e.peer === peer) model.delete(k);
          for (const [addr, cidr] of prefixes) {
            t.insert(addr, cidr, peer);
            model.set(`${addr.toString('hex')}/${cidr}`, { addr, cidr, peer }); // a later owner takes the prefix over
          }
        } else {
          t.removePeer(peer);
          for (const [k, e] of model) if (e.peer === peer) model.delete(k);
        }
        expect(t.size()).toBe(model.size);
        expect(t.walk()).toBe(model.size);
        const entries = [...model.values()];
        for (const a of probes()) expect(t.lookup(a)).toBe(naiveLookup(entries, a));
      }
    });
  }

  // A prefix taken over by another peer stays in its former owner's list as a stale copy (allowedips.h): it must
  // never erase the new owner's prefix, and taking prefixes back and forth must not grow the lists without bound.
  it('takeovers back and forth: stale copies erase nothing and the lists stay bounded', () => {
    const t = new testhooks.AllowedIPs();
    const prefixes = Array.from({ length: 40 }, (_, i) => parseIP(`100.64.${i}.0`)!);
    for (const p of prefixes) t.insert(p, 24, 1);
    for (let round = 0; round < 500; round++) {
      const to = round % 2 === 0 ? 2 : 1;
      for (const p of prefixes) t.insert(p, 24, to);
      expect(t.size()).toBe(40);
      // each peer has at most 40 live prefixes: its list holds them and fewer than as many again stale or repeated
      expect(t.listed()).toBeLessThanOrEqual(4 * 40);
    }
    // peer 2 took them last (round 499 is odd: to 1)... whichever holds them, removing the other erases nothing
    const holder = t.lookup(parseIP('100.64.0.1')!);
    const other = holder === 1 ? 2 : 1;
    t.removePeer(other);
    expect(t.size()).toBe(40);
    for (const p of prefixes) expect(t.lookup(p)).toBe(holder);
    t.removePeer(holder);
    expect(t.size()).toBe(0);
    expect(t.listed()).toBe(0);
  });

  // Each peer's list as the device reads it back (s35: the data path's table is the one record of a peer's allowed
  // IPs). Oracle: WireGuard's cryptokey routing (an address belongs to one peer) with a per-peer list in insertion
  // order, as wireguard-go keeps one: inserting a prefix another peer holds moves it out of that peer's list and to
  // the end of the inserting peer's; removing a peer empties its list. One rule is ours, not wireguard-go's (which
  // moves it to the end): inserting a prefix the peer holds leaves it in place, as the UAPI merge (uapi.ts) and
  // the JS lists before s35 did. Raw inserts (no removal first, unlike the device's sets) over a small pool, so
  // lists fill up, go stale and are compacted (kCompactFrom) while being checked.
  for (const seed of [21, 22, 23]) {
    it(`peer_prefixes keeps each peer's order through takeovers and compactions (seed ${seed})`, () => {
      const rand = rng(seed * 7919);
      const pick = (n: number) => Math.floor(rand() * n);
      const t = new testhooks.AllowedIPs();
      const pool: Array<[Buffer, number]> = Array.from({ length: 30 }, (_, i) =>
        i % 3 === 2 ? [parseIP(`fd00:64::${i}`)!, 128] : [maskPrefix(parseIP(`100.64.${i}.${i}`)!, 16 + (i % 17)), 16 + (i % 17)],
      );
      const text = ([a, c]: [Buffer, number]) => `${a.toString('hex')}/${c}`;
      const lists = new Map<number, string[]>();
      const ownerOf = new Map<string, number>();
      for (let step = 0; step < 2000; step++) {
        const peer = 1 + pick(4);
        if (rand() < 0.05) {
          t.removePeer(peer);
          for (const k of lists.get(peer) ?? []) ownerOf.delete(k);
          lists.delete(peer);
        } else {
          const p = pool[pick(pool.length)]!;
          t.insert(p[0], p[1], peer);
          const k = text(p);
          const was = ownerOf.get(k);
          if (was !== peer) {
            if (was !== undefined) lists.set(was, lists.get(was)!.filter((x) => x !== k));
            lists.set(peer, [...(lists.get(peer) ?? []), k]);
            ownerOf.set(k, peer);
          }
        }
        for (let q = 1; q <= 4; q++) expect(t.peerPrefixes(q).map(text), `step ${step} peer ${q}`).toEqual(lists.get(q) ?? []);
        expect(t.size()).toBe(ownerOf.size);
      }
      expect(t.peerPrefixes(99)).toEqual([]);
    });
  }
});
