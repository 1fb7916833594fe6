// Slow clients cannot tie up the L7 proxy: 2,000 connections from one pod to a
// port with HTTP rules, each sending its request head one byte every 5 s, are
// answered 408 and closed by the proxy once their head is not whole 10 s after
// its first byte (the head-completion timeout, native/src/proxy/proxy.cc).
// 2,000 is below the proxy's per-identity cap (4,096 connections), so the cap
// refuses none of them here (limited stays put; the cap has its own unit-level
// check). Meanwhile another pod's ordinary requests keep being answered: their
// p50/p99 latency before and during the load is printed, not asserted.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callAgent } from '../../src/agent/client.js';
import type { NativeL7ProxyStats } from '../../src/native/binding.js';
import { canRunNetns, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { apiL7Policy, L7Testbed, runInNetns } from '../helpers/l7bed.js';
import { shopPod } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');
const SLOW = join(ROOT, 'test', 'helpers', 'slowclients.mjs');
const CONNECTIONS = 2000;
const PER_IDENTITY_CAP = 4096; // kMaxPerIdentity in proxy.cc

describe.skipIf(!enabled)('slow clients against the L7 proxy', () => {
  const bed = new L7Testbed(
    'wmslow-',
    { name: `s${process.pid % 100000}`, clusters: [2], pods: [shopPod('api', 'c1/n2', 'api'), shopPod('slow', 'c1/n1', 'frontend'), shopPod('fe', 'c1/n1', 'frontend')] },
    apiL7Policy(),
  );
  const pod = (n: string) => bed.pod(n);

  /** Runs a helper in a pod and parses its one JSON line. */
  async function run<T>(from: string, script: string, args: string[]): Promise<T> {
    const out = await runInNetns(pod(from).netns, script, args, { stderr: 'inherit', track: bed.procs });
    if (!out) throw new Error(`${script} ${args[0]}: no output`);
    return JSON.parse(out) as T;
  }
  const proxyStats = () => bed.proxyStatus<NativeL7ProxyStats>();
  type Latency = { n: number; ok: number; failed: number; p50: number | null; p99: number | null };
  type Slow = { opened: number; connectErrors: number; closedByServer: number; answered408: number; reset: number; stillOpen: number; closeAfterMs: { min: number; max: number } };

  beforeAll(async () => {
    await bed.up();
    await waitFor(async () => (await run<Latency>('fe', SLOW, ['latency', pod('api').ip, '8080', '/public/warm', '1'])).ok > 0, 30_000);
  }, 180_000);

  afterAll(() => bed.down(), 60_000);

  it(`${CONNECTIONS} connections sending a head byte every 5 s are closed by the head timeout; other requests are served`, async () => {
    const baseline = await run<Latency>('fe', SLOW, ['latency', pod('api').ip, '8080', '/public/normal', '8']);
    const before = await proxyStats();
    // 25 s: every connection is open after ~1 s, its deadline is 10 s after its first byte
    const slow = run<Slow>('slow', SLOW, ['slow', pod('api').ip, '8080', String(CONNECTIONS), '5000', '25']);
    await new Promise((r) => setTimeout(r, 2000));
    const during = await run<Latency>('fe', SLOW, ['latency', pod('api').ip, '8080', '/public/normal', '12']);
    const s = await slow;
    const after = await proxyStats();
    process.stdout.write(
      `[slowclient] ${CONNECTIONS} slow connections: opened ${s.opened}, closed by the proxy ${s.closedByServer} (408 seen ${s.answered408}, reset ${s.reset}) ` +
        `${(s.closeAfterMs.min / 1000).toFixed(1)}-${(s.closeAfterMs.max / 1000).toFixed(1)} s after connecting, still open ${s.stillOpen}; ` +
        `proxy headTimeouts +${after.headTimeouts - before.headTimeouts}, limited +${after.limited - before.limited} (per-identity cap ${PER_IDENTITY_CAP}); ` +
        `normal GETs p50/p99 ${baseline.p50}/${baseline.p99} ms before (${baseline.ok} requests), ${during.p50}/${during.p99} ms during (${during.ok} requests, ${during.failed} failed)\n`,
    );
    expect(s.opened).toBe(CONNECTIONS);
    expect(s.closedByServer).toBe(CONNECTIONS); // the server side ended every one, none outlived the run
    expect(s.stillOpen).toBe(0);
    expect(s.closeAfterMs.min).toBeGreaterThan(8_000); // not before the 10 s deadline (to the second)
    expect(after.headTimeouts - before.headTimeouts).toBeGreaterThanOrEqual(CONNECTIONS);
    expect(after.limited - before.limited).toBe(0); // below the per-identity cap: nothing refused at accept
    expect(during.ok).toBeGreaterThan(0);
    expect(during.failed).toBe(0);
    expect(baseline.failed).toBe(0);
  }, 120_000);
});
