// Review of s21digest (DigestTable's short IPv4 forms in a PairMap; U32Map on probetable.ts): differential fuzz of
// DigestTable against a plain Map<string, {d, c}> and against a base build (WM_BASE_DIST: same answers, the same
// index per key, so freed slots are reused alike), with forms from a real CompactKeys (bases acquired, released,
// made again; IPv4 and IPv6; short and long index), plain and escaped keys, raw strings that pass isShortIPv4Form,
// characters ≥ 256, the empty string, deletes of absent keys. U32Map against main's U32Map with the same fixed
// tables (same positions, so entries() in the same order), keys as `key | 0`. PairMap's word semantics and bound.
// ListWatcher against main's ListWatcher on one MemKV (forms, forms crossing to long indices, raw look-alike keys;
// relists, forget()): same sink state, keys and size; a relist drops the same keys (in another order: forms in
// PairMap order, as DigestTable.keys documents; REVIEW_ORDER=1 prints whether each phase's order matched main's).
// The tests against a base build run only with WM_BASE_DIST set to that build's dist directory (e.g. the previous
// main's, as the review ran them: nothing here failed against s21digest); without it they are skipped.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { CompactKeys, formAddress, formBase, isShortIPv4Form, shortIPv4Form } from '../../src/controlplane/compactkeys.js';
import { DigestTable } from '../../src/controlplane/digesttable.js';
import { ListWatcher, type ListWatchSink } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { silentLogger } from '../../src/log.js';
import { PairMap } from '../../src/net/pairmap.js';
import { U32Map } from '../../src/net/u32map.js';
import { prng } from '../helpers/prng.js';

const MAIN = `${process.env.WM_BASE_DIST ?? '/nonexistent'}/src`;
const haveMain = process.env.WM_BASE_DIST !== undefined && existsSync(`${MAIN}/controlplane/digesttable.js`) && existsSync(`${MAIN}/net/u32map.js`) && existsSync(`${MAIN}/controlplane/kvstore.js`);
const fromMain = async <T>(path: string): Promise<T> => (await import(pathToFileURL(`${MAIN}/${path}`).href)) as T;

type Digests = Pick<DigestTable, 'set' | 'get' | 'createRevision' | 'delete' | 'size'> & { keys(): Iterable<string> };
/** The index a key holds (private in both builds). */
const slotOf = (t: unknown, k: string): number | undefined => {
  const x = t as { indexOf?: (k: string) => number | undefined; index: Map<string, number> };
  return x.indexOf ? x.indexOf(k) : x.index.get(k);
};
const nextOf = (t: unknown): number => (t as { next: number }).next;

/** A pool of keys a ListWatcher's table may hold: real forms (released and made again), plain, escaped, look-alikes. */
function pool(rand: () => number, firstIndex: number): string[] {
  const ck = new CompactKeys(firstIndex);
  const out = new Set<string>();
  const held: string[] = [];
  const byte = () => Math.floor(rand() * 256);
  for (let i = 0; i < 3000; i++) {
    const r = rand();
    if (r < 0.5 || held.length === 0) {
      const node = Math.floor(rand() * 60);
      const addr = rand() < 0.8 ? `100.64.${node}.${Math.floor(rand() * 40)}` : `fd00::${node.toString(16)}:${Math.floor(rand() * 40).toString(16)}`;
      const f = ck.acquire(`wiremesh/cache/ip/v2/c${node % 3}/n${node}/${addr}`);
      held.push(f);
      out.add(f);
    } else {
      // release: a base whose last key goes comes back under a new index (a new form for the same key)
      const j = Math.floor(rand() * held.length);
      ck.release(held[j]!);
      held.splice(j, 1);
    }
  }
  for (let i = 0; i < 300; i++) {
    out.add(String.fromCharCode(0, byte(), byte(), byte(), byte(), byte(), byte(), byte())); // raw look-alike
    out.add(String.fromCharCode(0, byte(), byte(), byte(), byte(), byte(), byte(), 256 + Math.floor(rand() * 65280))); // a char ≥ 256
    out.add(`\u0002plain-${i}`); // escaped
    out.add(`wiremesh/x/${i}`);
  }
  for (const k of ['', '\u0000', '\u0000'.repeat(7), '\u0000'.repeat(8), '\u0000'.repeat(9), '\u0001'.repeat(8), '\u0000\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff', '\u0000\ud800\udc00abcd', '\u0000\uffffabcdef', '\u0000abc\u0100efg'])
    out.add(k);
  return [...out];
}

describe('DigestTable vs a Map and main', () => {
  for (const [seed, firstIndex] of [[1, 0], [2, 0], [3, 2 ** 24 - 20], [4, 2 ** 24 - 3]] as const)
    it.skipIf(!haveMain)(`same answers and slots as main's and a Map (seed ${seed}, first base ${firstIndex})`, async () => {
      const { DigestTable: Main } = await fromMain<{ DigestTable: new () => Digests }>('controlplane/digesttable.js');
      const rand = prng(seed);
      const keys = pool(rand, firstIndex);
      expect(keys.some(isShortIPv4Form)).toBe(true);
      const t = new DigestTable();
      const m = new Main();
      const ref = new Map<string, { d: number; c: number }>();
      for (let step = 0; step < 40_000; step++) {
        const k = keys[Math.floor(rand() * keys.length)]!;
        const r = rand();
        const fill = Math.floor(step / 5000) % 2 === 0 ? 0.7 : 0.3;
        if (r < fill) {
          const d = step % 11 === 0 ? [0, 2 ** 48 - 1][step % 2]! : Math.floor(rand() * 2 ** 48);
          const c = step % 5 === 0 ? 0 : step % 7 === 0 ? 2 ** 53 - 1 : step;
          t.set(k, d, c);
          m.set(k, d, c);
          ref.set(k, { d, c });
        } else {
          const want = ref.delete(k);
          const got = [t.delete(k), m.delete(k)];
          if (got[0] !== want || got[1] !== want) expect(got, `delete ${JSON.stringify(k)} step ${step}`).toEqual([want, want]);
        }
        const probe = keys[Math.floor(rand() * keys.length)]!;
        for (const q of [k, probe]) {
          const w = ref.get(q);
          const a = [t.get(q), t.createRevision(q), slotOf(t, q)];
          const b = [w?.d, w?.c, slotOf(m, q)];
          if (a[0] !== b[0] || a[1] !== b[1] || a[2] !== b[2]) expect(a, `${JSON.stringify(q)} step ${step}`).toEqual(b);
        }
        if (t.size !== ref.size || nextOf(t) !== nextOf(m)) expect([t.size, nextOf(t)], `step ${step}`).toEqual([ref.size, nextOf(m)]);
        if (step % 2500 === 0) {
          const got = t.keys();
          expect(new Set(got).size).toBe(got.length); // no key twice
          expect([...got].sort()).toEqual([...ref.keys()].sort());
          // the keys that are not short forms first, in the Map's (and main's) order
          const plain = [...m.keys()].filter((x) => !isShortIPv4Form(x));
          expect(got.slice(0, plain.length)).toEqual(plain);
          for (const q of keys) if (slotOf(t, q) !== slotOf(m, q)) expect(slotOf(t, q), JSON.stringify(q)).toBe(slotOf(m, q));
        }
      }
    });

  it('reads every 8-character one-byte string starting with SHORT as one distinct pair, and back (no two texts one pair)', () => {
    const rand = prng(11);
    const seen = new Map<string, string>();
    for (let i = 0; i < 50_000; i++) {
      const s = String.fromCharCode(0, ...Array.from({ length: 7 }, () => (i % 3 === 0 ? [0, 255, 128][Math.floor(rand() * 3)]! : Math.floor(rand() * 256))));
      expect(isShortIPv4Form(s)).toBe(true);
      const pair = `${formAddress(s)},${formBase(s)}`;
      const before = seen.get(pair);
      if (before !== undefined && before !== s) expect(s).toBe(before);
      seen.set(pair, s);
      if (shortIPv4Form(formBase(s), formAddress(s)) !== s) expect(shortIPv4Form(formBase(s), formAddress(s))).toBe(s);
      expect(formBase(s)).toBeLessThan(2 ** 24);
      expect(formAddress(s)).toBeLessThan(2 ** 32);
    }
    for (const s of ['\u0000abc\u0100efg', '\u0000\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff\u0100', '\u0000abcdef', '\u0000abcdefgh', '\u0001abcdefg', ''])
      expect(isShortIPv4Form(s), JSON.stringify(s)).toBe(false);
  });

  it('a raw look-alike and a form with the same text are one key (a string map), set() keeps the slot', () => {
    const ck = new CompactKeys();
    const f = ck.acquire('wiremesh/cache/ip/v2/c1/n1/10.0.0.1');
    const raw = String.fromCharCode(...[...f].map((ch) => ch.charCodeAt(0)));
    const t = new DigestTable();
    t.set('a', 1, 1);
    t.set(f, 2, 2);
    t.delete('a');
    t.set(raw, 3, 3); // held: keeps its slot (1), the freed slot 0 stays free
    t.set('b', 4, 4); // takes the freed slot 0
    expect([t.size, t.get(f), slotOf(t, f), slotOf(t, 'b'), t.keys()]).toEqual([2, 3, 1, 0, ['b', f]]);
  });
});

describe('U32Map vs main (same fixed tables)', () => {
  type U32 = { get(k: number): number | undefined; set(k: number, v: number): void; delete(k: number): boolean; size: number; capacity: number; meanDisplacement: number; entries(): Iterable<[number, number]>; values(): Iterable<number> };
  const odd = [0, -0, 5, 5.9, -5.9, -1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, -(2 ** 31), 2 ** 31, 2 ** 31 - 1, 2 ** 53, -(2 ** 53), NaN, Infinity, -Infinity, 1e300, 0.5];
  for (const seed of [1, 2, 3])
    it.skipIf(!haveMain)(`same answers, positions and capacity on random sequences (seed ${seed})`, async () => {
      const { U32Map: Main } = await fromMain<{ U32Map: new (t?: Uint32Array) => U32 }>('net/u32map.js');
      const rand = prng(seed);
      const tab = new Uint32Array(1024);
      for (let i = 0; i < 1024; i++) tab[i] = Math.floor(rand() * 2 ** 32);
      if (seed === 3) for (let i = 0; i < 1024; i++) tab[i] = i < 256 ? i & 7 : 0; // homes from 3 bits: long merged runs
      const a = new U32Map(tab) as unknown as U32;
      const b = new Main(tab);
      const keys = [...odd, ...Array.from({ length: 3000 }, (_, i) => (i < 1500 ? 0x64400000 + i : Math.floor(rand() * 2 ** 32) - (i % 2) * 2 ** 31))];
      for (let step = 0; step < 30_000; step++) {
        const k = keys[Math.floor(rand() * keys.length)]!;
        const r = rand();
        if (r < (Math.floor(step / 4000) % 2 === 0 ? 0.7 : 0.3)) {
          const v = step % 97 === 0 ? [-1, 2 ** 31, 1.5, NaN][step % 4]! : Math.floor(rand() * 2 ** 31);
          let ea: unknown, eb: unknown;
          try { a.set(k, v); } catch (e) { ea = (e as Error).message; }
          try { b.set(k, v); } catch (e) { eb = (e as Error).message; }
          if (ea !== eb) expect(ea, `set ${k} ${v}`).toBe(eb);
        } else if (a.delete(k) !== b.delete(k)) expect.fail(`delete ${k} differs at step ${step}`);
        if (a.get(k) !== b.get(k) || a.size !== b.size || a.capacity !== b.capacity) expect([a.get(k), a.size, a.capacity], `step ${step} key ${k}`).toEqual([b.get(k), b.size, b.capacity]);
        if (step % 1000 === 0) {
          expect([...a.entries()]).toEqual([...b.entries()]);
          expect([...a.values()]).toEqual([...b.values()]);
          expect(a.meanDisplacement).toBe(b.meanDisplacement);
        }
      }
    });

  it.skipIf(!haveMain)('iterators see a change during a visit as main\'s do (documented: must not change)', async () => {
    const { U32Map: Main } = await fromMain<{ U32Map: new (t?: Uint32Array) => U32 }>('net/u32map.js');
    const tab = new Uint32Array(1024);
    for (let i = 0; i < 256; i++) tab[i] = i % 4; // many keys per home
    const run = (m: U32): number[] => {
      for (let k = 0; k < 12; k++) m.set(k, k);
      const seen: number[] = [];
      for (const [k] of m.entries()) {
        seen.push(k);
        if (k % 3 === 0) m.delete(k);
        if (k === 5) for (let j = 100; j < 140; j++) m.set(j, j); // grows: the visit goes on over the old array
      }
      return seen;
    };
    expect(run(new U32Map(tab) as unknown as U32)).toEqual(run(new Main(tab)));
  });
});

describe('PairMap words and bound', () => {
  it('takes each word as `word | 0` and gives it back unsigned', () => {
    const m = new PairMap();
    m.set(2 ** 32 + 5, 7, 1);
    m.set(-1, -1, 2);
    m.set(NaN, 5.9, 3);
    expect([m.get(5, 7), m.get(2 ** 32 - 1, 2 ** 32 - 1), m.get(0, 5), m.size]).toEqual([1, 2, 3, 3]);
    const got: number[][] = [];
    m.forEach((lo, hi, v) => got.push([lo, hi, v]));
    expect(got.sort((x, y) => x[2]! - y[2]!)).toEqual([[5, 7, 1], [2 ** 32 - 1, 2 ** 32 - 1, 2], [0, 5, 3]]);
  });

  it('stays within its bound and spreads same-address-many-bases and dense-addresses-one-base sets', () => {
    const rand = prng(9);
    const sets: Record<string, Array<[number, number]>> = {
      'one address, 20k bases': Array.from({ length: 20_000 }, (_, i) => [0x64400001, i]),
      'one base, 20k dense addresses': Array.from({ length: 20_000 }, (_, i) => [0x64400000 + i, 7]),
      'bases and addresses moving together': Array.from({ length: 20_000 }, (_, i) => [0x64400000 + i, i]),
      'addresses differing in the top byte only, bases in the low': Array.from({ length: 20_000 }, (_, i) => [(i & 255) * 2 ** 24, i >> 8]),
    };
    for (const [name, keys] of Object.entries(sets)) {
      const m = new PairMap();
      const ref = new Map<string, number>();
      for (let step = 0; step < 60_000; step++) {
        const [lo, hi] = keys[Math.floor(rand() * keys.length)]!;
        if (rand() < (step < 30_000 ? 0.8 : 0.2)) {
          m.set(lo, hi, step);
          ref.set(`${lo},${hi}`, step);
        } else if ((m.delete(lo, hi) ?? -1) !== (ref.get(`${lo},${hi}`) ?? -1)) expect.fail(`${name}: delete ${lo},${hi}`);
        else ref.delete(`${lo},${hi}`);
        const cap = m.capacity;
        if (m.size !== ref.size || m.size * 4 > cap * 3 || (cap > 16 && m.size * 4 < cap)) expect.fail(`${name}: size ${m.size} (want ${ref.size}) capacity ${cap} at step ${step}`);
        if (step === 29_999) expect(m.meanDisplacement, name).toBeLessThan(4);
      }
    }
  });
});

type Recorded = { table: Map<string, string>; removes: string[][]; errs: unknown[] };
/** A sink holding forms (or raw keys) as the agent's would, recording each remove (as text) per phase. */
function recordingSink(forms: CompactKeys | undefined): [ListWatchSink, Recorded] {
  const rec: Recorded = { table: new Map(), removes: [[]], errs: [] };
  const text = (k: string) => (forms ? forms.full(k) : k);
  const sink: ListWatchSink = {
    forms,
    upsert: (k: string, v: string) => void rec.table.set(text(k), v),
    remove: (k: string) => {
      rec.table.delete(text(k));
      rec.removes[rec.removes.length - 1]!.push(text(k));
    },
  } as unknown as ListWatchSink;
  return [sink, rec];
}

describe('ListWatcher vs main on one store', () => {
  const P = 'wiremesh/cache/ip/v2/';
  const cases = [['endpoint keys in forms', P, true, 0], ['forms whose base indices cross 2^24 (short, then long)', P, true, 2 ** 24 - 25], ['raw keys that look like forms, no forms', '\u0000', false, 0]] as const;
  for (const [name, prefix, withForms, firstIndex] of cases)
    it.skipIf(!haveMain)(`same sink state, keys and size through relists and forget() (${name})`, async () => {
      const main = await fromMain<{ ListWatcher: typeof ListWatcher }>('controlplane/kvstore.js');
      const { CompactKeys: MainKeys } = await fromMain<{ CompactKeys: typeof CompactKeys }>('controlplane/compactkeys.js');
      const rand = prng(withForms ? 21 + firstIndex : 22);
      const keys = withForms
        ? Array.from({ length: 400 }, (_, i) => `${P}c${i % 3}/n${i % 50}/${i % 7 === 0 ? `fd00::${i.toString(16)}` : `100.64.${i % 50}.${i}`}`).concat([`${P}\u0000x`, `${P}c1/n1/100.64.0.01`, `${P}x`])
        : Array.from({ length: 400 }, (_, i) => String.fromCharCode(0, i & 255, i >> 8, Math.floor(rand() * 256), 100, 64, Math.floor(rand() * 256), i & 255)).concat(['\u0000short', '\u0000\u0100bcdefg', '\u0000abcdefgh']);
      const mem = new MemKV();
      const [sa, ra] = recordingSink(withForms ? new CompactKeys(firstIndex) : undefined);
      const [sb, rb] = recordingSink(withForms ? (new MainKeys(firstIndex) as unknown as CompactKeys) : undefined);
      const log = (rec: Recorded) => ({ ...silentLogger, error: (o: unknown) => void rec.errs.push(o), warn: (o: unknown) => void rec.errs.push(o) }) as unknown as typeof silentLogger;
      const a = new ListWatcher(mem, prefix, sa, log(ra));
      const b = new main.ListWatcher(mem, prefix, sb, log(rb));
      const forgot = new Set<string>();
      let forgotten = false; // forget()'s keys are out of `known` (size, keys()) until the next list brings them back
      const check = () => {
        const want = new Map(mem.entries(prefix).filter((e) => !forgotten || !forgot.has(e.key)).map((e) => [e.key, e.value]));
        expect([ra.errs, rb.errs]).toEqual([[], []]);
        const diff = (t: Map<string, string>) => [...new Set([...t.keys(), ...want.keys()])].filter((k) => t.get(k) !== want.get(k)).map((k) => [JSON.stringify(k), t.get(k), want.get(k)]);
        expect([diff(ra.table), diff(rb.table)], `round ${round}`).toEqual([[], []]);
        expect(new Map([...ra.table].sort())).toEqual(new Map([...want].sort()));
        expect(new Map([...rb.table].sort())).toEqual(new Map([...want].sort()));
        expect([a.size, [...a.keys()].sort()]).toEqual([b.size, [...b.keys()].sort()]);
        expect(a.size).toBe(mem.entries(prefix).filter((e) => !forgotten || !forgot.has(e.key)).length);
      };
      void a.start();
      void b.start();
      await Promise.all([a.firstSync(), b.firstSync()]);
      let round = 0;
      for (; round < 8; round++) {
        const relist = round % 3 === 2;
        if (relist) mem.disconnect();
        for (let i = 0; i < 120; i++) {
          const k = keys[Math.floor(rand() * keys.length)]!;
          if (rand() < 0.6) await mem.put(k, `v${Math.floor(rand() * 3)}`);
          else await mem.delete(k);
        }
        if (round === 4) {
          // forget some held keys (and absent ones) the sink holds no value of (forget's contract: replication's
          // nodes waiting for a place): both list once more at their next relist
          const some = mem.entries(prefix).slice(0, 10).map((e) => e.key).concat(['absent', keys[0]!]);
          for (const k of some) ra.table.delete(k), rb.table.delete(k);
          expect(a.forget(some)).toBe(b.forget(some));
          forgotten = true;
          for (const k of some) forgot.add(k);
        }
        if (relist) {
          ra.removes.push([]);
          rb.removes.push([]);
          mem.compact(mem.revision);
          mem.reconnect();
        }
        if (relist) forgotten = false;
        await vi.waitFor(check, { timeout: 8000, interval: 5 });
      }
      // a relist drops the same keys as main's (order: main's insertion order, this branch's hash order for forms)
      expect([a.relists, b.relists]).toEqual([2, 2]);
      expect(ra.removes.length).toBe(3);
      for (let i = 0; i < ra.removes.length; i++) expect([...ra.removes[i]!].sort(), `phase ${i}`).toEqual([...rb.removes[i]!].sort());
      if (process.env.REVIEW_ORDER) console.log(name, ra.removes.map((r, i) => `${r.length} removes, same order as main: ${r.join() === rb.removes[i]!.join()}`));
      await Promise.all([a.stop(), b.stop()]);
    });
});
