// Red-team finding (s13): the metrics listener bounds a client per IPv6 /64 (metricsserver.ts:134, gatewayClientOf),
// the right party on the Internet but not for pods: the pods of a node (or, with Cilium's cluster-pool IPv6
// default of /120 per node from one /104, of the whole cluster) share one /64. One pod holding maxPerClient (4)
// silent connections, reopened as the listener closes them, makes every scrape from another address of the /64
// (Prometheus as a pod) reset: 'per-client-bound'. Fixed: the metrics listener's client is one address
// (metricsClientOf); the per-client bound still holds per IPv6 address (second case).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunNetns, ROOT } from '../../src/testbed/netns.js';

const NS = `wms13m${process.pid % 100000}`;
const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });

/** Runs test/helpers/metrics64.mjs in the namespace with `holders` held connections from fd00:64::2. */
function run(holders: number) {
  const out = execFileSync('ip', ['netns', 'exec', NS, process.execPath, join(ROOT, 'test', 'helpers', 'metrics64.mjs'), String(holders)], { encoding: 'utf8', timeout: 30_000 });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { outcomes: Array<number | string>; refused: Record<string, number> };
  process.stdout.write(`[redteam-s13] ${holders} held: scraper outcomes ${JSON.stringify(r.outcomes)}, listener refusals ${JSON.stringify(r.refused)}\n`);
  return r;
}

describe.skipIf(!canRunNetns())('metrics listener: one IPv6 /64 is many pods', () => {
  beforeAll(() => {
    ip('netns', 'add', NS);
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    for (const a of ['fd00:64::1', 'fd00:64::2', 'fd00:64::3']) ip('-n', NS, 'addr', 'add', `${a}/64`, 'dev', 'lo', 'nodad');
  });
  afterAll(() => {
    try {
      ip('netns', 'del', NS);
    } catch {
      /* not created */
    }
  });

  it('a pod holding 4 silent connections does not lock out a scraper pod of the same /64', () => {
    expect(run(4).outcomes).toEqual([200, 200, 200, 200, 200]);
  }, 60_000);

  it('the per-client bound holds per IPv6 address: a pod opening 8 gets 4, the scraper of its /64 is answered', () => {
    const r = run(8);
    expect(r.outcomes).toEqual([200, 200, 200, 200, 200]);
    expect(r.refused['per-client-bound']).toBeGreaterThan(0);
  }, 60_000);
});
