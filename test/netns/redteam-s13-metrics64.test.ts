// Red-team finding (s13): the metrics listener bounds a client per IPv6 /64 (metricsserver.ts:134, gatewayClientOf),
// the right party on the Internet but not for pods: the pods of a node (or, with Cilium's cluster-pool IPv6
// default of /120 per node from one /104, of the whole cluster) share one /64. One pod holding maxPerClient (4)
// silent connections, reopened as the listener closes them, makes every scrape from another address of the /64
// (Prometheus as a pod) reset: 'per-client-bound'. Marked `.fails`: main resets the scraper.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canRunNetns, ROOT } from '../../src/testbed/netns.js';

const NS = `wms13m${process.pid % 100000}`;
const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });

describe.skipIf(!canRunNetns())('metrics listener: one IPv6 /64 is many pods', () => {
  afterAll(() => {
    try {
      ip('netns', 'del', NS);
    } catch {
      /* not created */
    }
  });

  it.fails('a pod holding 4 silent connections does not lock out a scraper pod of the same /64', () => {
    ip('netns', 'add', NS);
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    for (const a of ['fd00:64::1', 'fd00:64::2', 'fd00:64::3']) ip('-n', NS, 'addr', 'add', `${a}/64`, 'dev', 'lo', 'nodad');
    const out = execFileSync('ip', ['netns', 'exec', NS, process.execPath, join(ROOT, 'test', 'helpers', 'metrics64.mjs')], { encoding: 'utf8', timeout: 30_000 });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { outcomes: Array<number | string>; refused: Record<string, number> };
    process.stdout.write(`[redteam-s13] scraper outcomes ${JSON.stringify(r.outcomes)}, listener refusals ${JSON.stringify(r.refused)}\n`);
    expect(r.outcomes).toEqual([200, 200, 200, 200, 200]);
  }, 60_000);
});
