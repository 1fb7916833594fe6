// ListWatcher holding keys in a sink's compact forms (ListWatchSink.forms, src/controlplane/compactkeys.ts) on seeded
// random sequences of puts, deletes, re-creations and relists after unseen changes (a disconnect, the history
// compacted), with keys a hostile remote chooses: the sink's table, read back through the forms, must equal the store
// (a plain Map of key → value, the oracle) after every phase; no two keys share a form; bases go with their last key.
import { describe, expect, it, vi } from 'vitest';
import { CompactKeys } from '../../src/controlplane/compactkeys.js';
import { ListWatcher } from '../../src/controlplane/kvstore.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import { prng } from '../helpers/prng.js';
import { silentLogger } from '../../src/log.js';

const P = 'wiremesh/cache/ip/v2/';
const HOSTILE = ['c1/n1/100.64.0.01', 'c1/n1/::FFFF:100.64.0.1', 'c1/n1/::ffff:100.64.0.1', 'c1/n1/fe80::1%eth0', 'c1/n1/', 'c1/n1/a/100.64.0.1', 'c1//100.64.0.1', '\u0001', '\u0000', '\u0000\u0000\u0000\u0000d@\u0000\u0001', 'x', 'c1/n\u00e9/100.64.0.1'];

describe('ListWatcher with key forms', () => {
  for (const seed of [1, 2, 3, 42]) {
    it(`mirrors the store through the forms across watches and relists (seed ${seed})`, async () => {
      const rand = prng(seed);
      const pool = [...HOSTILE.map((k) => P + k)];
      // ~2 keys per base over ~80 bases: past FREE_BASES (64) the guard keeps some keys plain
      for (let i = 0; i < 150; i++) pool.push(`${P}remote-${1 + (i % 2)}/node-${i % 40}/${rand() < 0.2 ? `fd00::${i.toString(16)}` : `100.64.${i % 3}.${i}`}`);
      const mem = new MemKV();
      const forms = new CompactKeys();
      const table = new Map<string, string>(); // form → value, as a sink holding forms would
      const sink = {
        forms,
        upsert: (k: string, v: string) => {
          if (v.startsWith('refuse')) return false; // refused: the previous value stays (ListWatchSink)
          table.set(k, v);
          return true;
        },
        remove: (k: string) => {
          forms.full(k); // still readable during the sink's remove (throws once released: logged, caught below)
          table.delete(k);
        },
      };
      const errs: unknown[] = [];
      const log = { ...silentLogger, error: (o: unknown, m: string) => void errs.push([o, m]), warn: (o: unknown, m: string) => void errs.push([o, m]) } as unknown as typeof silentLogger;
      const lw = new ListWatcher(mem, P, sink, log);
      const oracle = new Map<string, string>(); // what the sink should hold: the store, refused values kept as before
      const check = () => {
        const got = new Map([...table].map(([f, v]) => [forms.full(f), v]));
        expect(errs).toEqual([]); // no sink call threw
        expect(got.size).toBe(table.size); // no two forms read as one key
        expect(new Map([...got].sort())).toEqual(new Map([...oracle].sort()));
        expect(lw.keys().sort()).toEqual(mem.entries(P).map((e) => e.key).sort());
        // the bases of what ListWatcher holds (the store's keys, a refused new key's too), each once
        const held = lw.keys().map((k) => forms.find(k));
        expect(held.every((f) => f !== undefined)).toBe(true);
        expect(forms.bases).toBe(new Set(held.filter((f) => f!.charCodeAt(0) <= 1).map((f) => forms.base(f!))).size);
      };
      const step = async (relist: boolean) => {
        if (relist) mem.disconnect();
        for (let i = 0; i < 30; i++) {
          const k = pool[Math.floor(rand() * pool.length)]!;
          const r = rand();
          if (r < 0.55) {
            // refused values on the watch only: a relist sees the last value alone, not the ones before it
            const v = !relist && rand() < 0.1 ? `refuse-${i}` : `v${Math.floor(rand() * 4)}`;
            await mem.put(k, v);
            if (!v.startsWith('refuse')) oracle.set(k, v); // a refused value leaves the previous one (none for a new key)
          } else if (r < 0.85) {
            await mem.delete(k);
            oracle.delete(k);
          } else if (mem.get(k)) {
            // re-created: a new incarnation
            await mem.delete(k);
            const v = `v${Math.floor(rand() * 4)}`;
            await mem.put(k, v);
            oracle.set(k, v);
          }
        }
        if (relist) {
          mem.compact(mem.revision);
          mem.reconnect();
        }
        await vi.waitFor(check, { timeout: 5000, interval: 5 });
      };
      void lw.start();
      await lw.firstSync();
      // three relists: ListWatcher waits 200, 400, 800 ms before each (a watch broken within 10 s of its start)
      for (let round = 0; round < 15; round++) await step(round % 5 === 4);
      // everything deleted: nothing held, every base released
      for (const e of mem.entries(P)) await mem.delete(e.key);
      oracle.clear();
      await vi.waitFor(check, { timeout: 5000, interval: 5 });
      expect(table.size).toBe(0);
      expect(forms.bases).toBe(0);
      await lw.stop();
    });
  }
});
