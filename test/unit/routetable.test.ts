// RouteTable (src/agent/routetable.ts) without root: a fake `ip -batch` runner over a fake routing
// table that completes batches when the test says, fails lines and whole runs at random (a killed
// run may have applied some of its lines). On seeded random claim/release/flush sequences, at most
// one batch is in flight, and once the failures stop and the table settles, the kernel's routes
// equal the CIDRs some peer claims (recomputed from the peers' routes: the reference), covers() answers
// as those CIDRs do, and its trie holds them and nothing else, down to its two empty roots once all is released.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { ipBatch, parseBatchErrors, RouteTable, type BatchResult, type BatchRunner } from '../../src/agent/routetable.js';
import { silentLogger } from '../../src/log.js';
import { parsePrefix, prefixContains } from '../../src/net/ip.js';
import { prefixBits } from '../helpers/prefixtrie-oracle.js';
import { nodesNeeded, trieShape } from '../helpers/prefixtrie-shape.js';
import { cidrPool, prng, randomClaims } from '../helpers/routeclaims.js';

/** A routing table behind a fake `ip -force -batch`: batches complete on complete(). */
class FakeIp {
  readonly kernel = new Set<string>();
  readonly batches: string[][] = [];
  private readonly queue: Array<() => void> = [];
  running = 0;
  maxRunning = 0;
  /** Chance that a line fails (not applied), and that a whole run fails (some lines applied, then killed). */
  lineFail = 0;
  runFail = 0;
  constructor(private readonly rnd: () => number) {}

  readonly run: BatchRunner = (ops) => {
    this.batches.push(ops);
    this.maxRunning = Math.max(this.maxRunning, ++this.running);
    return new Promise<BatchResult>((resolve, reject) =>
      this.queue.push(() => {
        this.running--;
        const killed = this.rnd() < this.runFail;
        const failed = new Map<number, string>();
        ops.forEach((line, i) => {
          const [route, verb, cidr, dev, tun] = line.split(' ');
          expect([route, dev, tun]).toEqual(['route', 'dev', 'wm0']);
          if (killed ? this.rnd() < 0.5 : this.rnd() < this.lineFail) return void failed.set(i, 'RTNETLINK answers: Network is down');
          if (verb === 'replace') this.kernel.add(cidr!);
          else if (!this.kernel.delete(cidr!)) failed.set(i, 'RTNETLINK answers: No such process');
        });
        if (killed) reject(new Error('ip -batch exited with SIGKILL'));
        else resolve({ failed });
      }),
    );
  };

  /** Completes the oldest batch in flight (if any) and lets its callbacks run. */
  async complete(): Promise<void> {
    this.queue.shift()?.();
    await new Promise((r) => setImmediate(r));
  }

  get idle(): boolean {
    return this.queue.length === 0;
  }
}

/** Flushes and completes batches until nothing is pending (failures off). */
async function settle(t: RouteTable, ip: FakeIp): Promise<void> {
  for (let i = 0; i < 100 && (t.pending > 0 || !ip.idle); i++) {
    t.flush();
    await ip.complete();
  }
  await t.flushed(); // (nothing in flight: resolves at once)
  expect(t.pending).toBe(0);
}

/**
 * covers() answers as the claimed CIDRs (`want`) do for an address inside each CIDR of `pool` and two outside
 * it, and the trie behind it holds each claimed CIDR once (its own text as owner), only the nodes they need.
 */
function expectCovers(t: RouteTable, want: Set<string>, pool: string[]): void {
  const claimed = [...want].map((c) => [parsePrefix(c), c] as const);
  const probes = [...pool, '100.127.255.0/24', 'fd00:ffff::/64'].map((c) => {
    const a = Buffer.from(parsePrefix(c).addr);
    a[a.length - 1] = 5;
    return a;
  });
  expect(probes.map((a) => t.covers(a))).toEqual(probes.map((a) => claimed.some(([p]) => prefixContains(p, a))));
  const owners = new Map(claimed.map(([p, c]) => [prefixBits(p), [c]]));
  const { faults, rootCount, nodes, owners: held } = trieShape(t['trie']);
  expect({ faults, rootCount, nodes, owners: held }).toEqual({
    faults: [],
    rootCount: { v4: claimed.filter(([p]) => p.addr.length === 4).length, v6: claimed.filter(([p]) => p.addr.length === 16).length },
    nodes: nodesNeeded(owners.keys()),
    owners,
  });
}

afterEach(() => {
  vi.useRealTimers();
});

describe('RouteTable', () => {
  it('on random claim/release/flush sequences with failing lines and killed runs: one batch in flight, and the kernel ends equal to the claims', async () => {
    for (let seed = 1; seed <= 60; seed++) {
      const rnd = prng(seed);
      const ip = new FakeIp(rnd);
      ip.lineFail = seed % 3 === 0 ? 0 : 0.1;
      ip.runFail = seed % 4 === 0 ? 0.2 : 0;
      const t = new RouteTable('wm0', ip.run, silentLogger, { retryMs: 1e9 });
      const pool = cidrPool(24);
      const { want, held } = await randomClaims(t, rnd, {
        steps: 300,
        peers: 12,
        pool,
        between: () => (rnd() < 0.4 ? ip.complete() : undefined),
      });
      ip.lineFail = 0;
      ip.runFail = 0;
      await settle(t, ip);
      expect({ seed, kernel: [...ip.kernel].sort() }).toEqual({ seed, kernel: [...want].sort() });
      expect(ip.maxRunning).toBe(1);
      // without injected failures the books are exact: no line fails (no del of a route already gone)
      if (seed % 3 === 0 && seed % 4 !== 0) expect({ seed, failedOps: t.stats.failedOps }).toEqual({ seed, failedOps: 0 });
      expectCovers(t, want, pool);
      // at rest a CIDR one peer claims (and the kernel holds) has no entry in the books, the trie tells it (s39)
      const claims = new Map<string, number>();
      for (const r of held) claims.set(r, (claims.get(r) ?? 0) + 1);
      expect({ seed, books: t['books'].size }).toEqual({ seed, books: [...claims.values()].filter((n) => n > 1).length });
      t.release(held); // every peer gone: nothing covered, the trie back to its roots
      expectCovers(t, new Set(), pool);
      expect(trieShape(t['trie']).nodes).toBe(2);
      await settle(t, ip);
      expect({ seed, books: t['books'].size, kernel: ip.kernel.size }).toEqual({ seed, books: 0, kernel: 0 });
      await t.close();
    }
  });

  it('regression (review of s39): releasing a text that does not parse, never claimed, does nothing; the rest of the call still applies', async () => {
    const ip = new FakeIp(prng(3));
    const t = new RouteTable('wm0', ip.run, silentLogger);
    t.claim(['100.64.1.0/24']);
    await settle(t, ip);
    expect(() => t.release(['not-a-cidr', '100.64.1.0/24'])).not.toThrow();
    await settle(t, ip);
    expect({ kernel: ip.kernel.size, books: t['books'].size }).toEqual({ kernel: 0, books: 0 });
    expect(() => t.claim(['not-a-cidr'])).toThrow(/not-a-cidr/); // a claim of one throws, as it always did
    await t.close();
  });

  it('changes made while a batch runs go out together in the next one, started when it ends', async () => {
    const ip = new FakeIp(prng(7));
    const t = new RouteTable('wm0', ip.run, silentLogger);
    t.claim(['100.64.1.0/24']);
    t.flush();
    t.claim(['100.64.2.0/24']);
    t.flush();
    t.claim(['fd00:64::/64']);
    t.release(['100.64.1.0/24']);
    t.flush();
    expect(ip.batches).toEqual([['route replace 100.64.1.0/24 dev wm0']]);
    const done = t.flushed();
    await ip.complete();
    expect(ip.batches[1]).toEqual(['route replace 100.64.2.0/24 dev wm0', 'route replace fd00:64::/64 dev wm0', 'route del 100.64.1.0/24 dev wm0']);
    await ip.complete();
    await done;
    expect([...ip.kernel].sort()).toEqual(['100.64.2.0/24', 'fd00:64::/64']);
    expect(t.pending).toBe(0);
  });

  it('a failed line is retried after retryMs without another pass; a del of a route already gone counts as done', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const ip = new FakeIp(prng(3));
    const t = new RouteTable('wm0', ip.run, silentLogger, { retryMs: 1000 });
    ip.lineFail = 1;
    t.claim(['100.64.1.0/24']);
    t.flush();
    await ip.complete();
    expect(t.stats.failedOps).toBe(1);
    expect(ip.kernel.size).toBe(0);
    ip.lineFail = 0;
    await vi.advanceTimersByTimeAsync(1000);
    await ip.complete();
    expect([...ip.kernel]).toEqual(['100.64.1.0/24']);
    ip.kernel.clear(); // someone else removed it
    t.release(['100.64.1.0/24']);
    t.flush();
    await ip.complete();
    expect(t.pending).toBe(0);
    expect(t.stats.failedOps).toBe(1);
    await t.close();
  });

  it('regression: a run that failed as a whole books no line as done, not even a del whose message says ESRCH', async () => {
    const kernel = new Set<string>();
    let fail = false;
    const run: BatchRunner = async (lines) => {
      if (fail) throw new Error('ip -batch exited with SIGKILL: RTNETLINK answers: No such process');
      for (const l of lines) {
        const [, op, cidr] = l.split(' ');
        if (op === 'replace') kernel.add(cidr!);
        else kernel.delete(cidr!);
      }
      return { failed: new Map() };
    };
    const t = new RouteTable('wm0', run, silentLogger, { retryMs: 10 });
    t.claim(['100.64.1.0/24']);
    t.flush();
    await t.flushed();
    fail = true;
    t.release(['100.64.1.0/24']);
    t.flush();
    await t.flushed();
    expect(t.pending).toBeGreaterThan(0); // the del is still owed
    fail = false;
    t.flush();
    await t.flushed();
    expect([...kernel]).toEqual([]);
    await t.close();
  });

  it("failing lines and runs move the agent's route counters (wiremesh_route_*_total)", async () => {
    const ip = new FakeIp(prng(5));
    const t = new RouteTable('wm0', ip.run, silentLogger, { retryMs: 1e9 });
    const snapshot = { peers: [], counters: {}, handshakes: { initiated: 0, completed: 0, rejected: 0, crossed: 0 }, services: [], etcdConnected: true, syncedClusters: [], syncLag: new Map(), remotes: [], rejections: [], routes: t.stats };
    const m = new AgentMetrics({ cluster: 'c1', node: 'n1' }, () => snapshot);
    const counters = async () =>
      Object.fromEntries(
        (await m.text())
          .split('\n')
          .filter((l) => l.startsWith('wiremesh_route_'))
          .map((l) => [l.slice(0, l.indexOf('{')), Number(l.slice(l.lastIndexOf(' ') + 1))]),
      );
    expect(await counters()).toEqual({ wiremesh_route_batches_total: 0, wiremesh_route_changes_total: 0, wiremesh_route_batch_failures_total: 0, wiremesh_route_change_failures_total: 0 });
    ip.lineFail = 1; // both lines fail: the run itself answered
    t.claim(['100.64.1.0/24', '100.64.2.0/24']);
    t.flush();
    await ip.complete();
    expect(await counters()).toEqual({ wiremesh_route_batches_total: 1, wiremesh_route_changes_total: 2, wiremesh_route_batch_failures_total: 0, wiremesh_route_change_failures_total: 2 });
    ip.runFail = 1; // killed: the whole run failed
    t.flush();
    await ip.complete();
    expect(await counters()).toEqual({ wiremesh_route_batches_total: 2, wiremesh_route_changes_total: 4, wiremesh_route_batch_failures_total: 1, wiremesh_route_change_failures_total: 4 });
    await t.close();
  });

  it('ipBatch: exit 1 with line errors is a partial result; a signal or another exit code fails the batch as a whole', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wm-fakeip-'));
    const path = process.env.PATH;
    try {
      const fake = (body: string) => {
        writeFileSync(join(dir, 'ip'), `#!/bin/sh\ncat >/dev/null\n${body}\n`);
        chmodSync(join(dir, 'ip'), 0o755);
      };
      process.env.PATH = `${dir}:${path}`;
      fake('echo "RTNETLINK answers: File exists" >&2; echo "Command failed -:1" >&2; exit 1');
      expect([...(await ipBatch()(['route replace 100.64.1.0/24 dev wm0', 'route replace 100.64.2.0/24 dev wm0'])).failed.keys()]).toEqual([0]);
      fake('echo "Command failed -:1" >&2; kill -9 $$');
      await expect(ipBatch()(['a', 'b'])).rejects.toThrow(/SIGKILL/);
      fake('echo "Command failed -:1" >&2; exit 255');
      await expect(ipBatch()(['a', 'b'])).rejects.toThrow(/255/);
    } finally {
      process.env.PATH = path;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads iproute2's batch errors: the message before each `Command failed -:<line>`", () => {
    const stderr = 'RTNETLINK answers: No such process\nCommand failed -:2\nCannot find device "nosuch"\nCommand failed -:3\nCommand failed -:9\n';
    expect([...parseBatchErrors(stderr, 5)]).toEqual([
      [1, 'RTNETLINK answers: No such process'],
      [2, 'Cannot find device "nosuch"'],
    ]);
  });
});
