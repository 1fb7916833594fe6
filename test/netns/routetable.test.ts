// RouteTable (src/agent/routetable.ts) against the real `ip -force -batch`, in a network namespace
// of its own with a TUN: on seeded random claim/release/flush sequences (batches run while the
// sequence goes on), the device's routes end equal to the CIDRs some peer claims; lines that fail
// (a device that does not exist) are counted and booked as not applied.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipBatch, RouteTable } from '../../src/agent/routetable.js';
import { silentLogger } from '../../src/log.js';
import { canRunNetns } from '../../src/testbed/netns.js';
import { cidrPool, prng, randomClaims } from '../helpers/routeclaims.js';

const enabled = canRunNetns();
const NS = `wm-routetable-${process.pid}`;
const ip = (...args: string[]) => execFileSync('ip', ['-n', NS, ...args], { encoding: 'utf8' });

/** The destinations of the routes on `dev` (both families), as `ip` prints them. */
function routesOn(dev: string): string[] {
  const rows = (fam: string) => (JSON.parse(ip('-j', fam, 'route', 'show', 'dev', dev)) as Array<{ dst: unknown }>).map((r) => String(r.dst));
  return [...rows('-4'), ...rows('-6')].filter((d) => !d.startsWith('fe80:')).sort();
}

describe.skipIf(!enabled)('RouteTable with ip -batch', () => {
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', NS]);
    ip('tuntap', 'add', 'dev', 'wmrt0', 'mode', 'tun');
    ip('link', 'set', 'wmrt0', 'up');
  });
  afterAll(() => {
    execFileSync('ip', ['netns', 'del', NS]);
  });

  it('the routes end equal to the claims on random sequences, batches running meanwhile', async () => {
    const pool = cidrPool(40);
    for (let seed = 1; seed <= 4; seed++) {
      const rnd = prng(seed);
      const t = new RouteTable('wmrt0', ipBatch(NS), silentLogger);
      const { want, held } = await randomClaims(t, rnd, { steps: 400, peers: 16, pool, between: () => (rnd() < 0.1 ? new Promise((r) => setImmediate(r)) : undefined) });
      for (let i = 0; i < 10 && t.pending > 0; i++) {
        t.flush();
        await t.flushed();
      }
      expect({ seed, routes: routesOn('wmrt0') }).toEqual({ seed, routes: [...want].sort() });
      expect(t.stats.failedOps).toBe(0);
      expect(t.stats.batches).toBeGreaterThan(1);
      // the next seed starts from an empty table: our routes go (a del per CIDR)
      t.release(held);
      t.flush();
      await t.close();
      expect(routesOn('wmrt0')).toEqual([]);
    }
  });

  it('lines that fail are counted and not booked as installed', async () => {
    const t = new RouteTable('nosuch0', ipBatch(NS), silentLogger, { retryMs: 1e9 });
    t.claim(['100.64.7.0/24', 'fd00:64:7::/64']);
    t.flush();
    await t.flushed();
    expect(t.stats.failedOps).toBe(2);
    expect(t.pending).toBe(2);
    await t.close();
  });
});
