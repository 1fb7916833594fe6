/**
 * The TUN routes' flush on the agent's thread, in a network namespace of its own with a TUN (root):
 * R reconcile passes, each claiming K new CIDRs and releasing K old ones, then flush(), as the peer
 * reconciler does during a sync. Interleaved rounds, medians:
 * - the anchor: the former flush, `execFileSync('ip -force -batch')` per pass (the thread waits for ip);
 * - this tree: RouteTable's runner (src/agent/routetable.ts), a spawned `ip` per batch, one in flight,
 *   passes made meanwhile coalesced.
 * Reports the thread's time inside flush() (blocked) and the time until the kernel holds the last
 * pass's routes (applied), per R passes, in ms.
 * Usage: node dist/bench/routes-flush.js [R = 200] [K = 10]. Prints one JSON line.
 */
import { execFileSync } from 'node:child_process';
import { ipBatch, RouteTable, type BatchRunner } from '../src/agent/routetable.js';
import { silentLogger } from '../src/log.js';

const R = Number(process.argv[2] ?? 200);
const K = Number(process.argv[3] ?? 10);
const NS = `wm-bench-routes-${process.pid}`;
const TUN = 'wmbr0';

/** The former runner: the thread waits for `ip` to exit. */
const syncRunner: BatchRunner = (ops) => {
  try {
    execFileSync('ip', ['-n', NS, '-force', '-batch', '-'], { input: ops.join('\n') + '\n', stdio: ['pipe', 'ignore', 'pipe'] });
  } catch {
    /* lines that failed: the bench's have none */
  }
  return Promise.resolve({ failed: new Map() });
};

const cidr = (i: number) => `100.${64 + ((i >> 16) & 63)}.${(i >> 8) & 255}.${i & 255}/32`;

async function round(run: BatchRunner): Promise<{ blockedMs: number; appliedMs: number }> {
  const t = new RouteTable(TUN, run, silentLogger);
  let blocked = 0n;
  const start = process.hrtime.bigint();
  for (let pass = 0; pass < R; pass++) {
    const add = Array.from({ length: K }, (_, j) => cidr(pass * K + j));
    t.claim(add);
    if (pass > 0) t.release(Array.from({ length: K }, (_, j) => cidr((pass - 1) * K + j)));
    const t0 = process.hrtime.bigint();
    t.flush();
    blocked += process.hrtime.bigint() - t0;
    await new Promise((r) => setImmediate(r)); // the next pass comes in a later turn of the loop
  }
  while (t.pending > 0) {
    t.flush();
    await t.flushed();
  }
  const applied = process.hrtime.bigint() - start;
  const left = execFileSync('ip', ['-n', NS, '-4', 'route', 'show', 'dev', TUN], { encoding: 'utf8' }).trim().split('\n').length;
  if (left !== K) throw new Error(`expected ${K} routes left, found ${left}`);
  // clean for the next round
  t.release(Array.from({ length: K }, (_, j) => cidr((R - 1) * K + j)));
  t.flush();
  await t.close();
  return { blockedMs: Number(blocked) / 1e6, appliedMs: Number(applied) / 1e6 };
}

execFileSync('ip', ['netns', 'add', NS]);
try {
  execFileSync('ip', ['-n', NS, 'tuntap', 'add', 'dev', TUN, 'mode', 'tun']);
  execFileSync('ip', ['-n', NS, 'link', 'set', TUN, 'up']);
  const r = { anchor: [] as Array<{ blockedMs: number; appliedMs: number }>, ours: [] as Array<{ blockedMs: number; appliedMs: number }> };
  for (let i = 0; i < 3; i++) {
    r.anchor.push(await round(syncRunner));
    r.ours.push(await round(ipBatch(NS)));
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const of = (k: 'anchor' | 'ours') => ({ blockedMs: med(r[k].map((x) => x.blockedMs)), appliedMs: med(r[k].map((x) => x.appliedMs)) });
  const anchor = of('anchor');
  const ours = of('ours');
  console.log(JSON.stringify({ passes: R, perPass: K, anchor, ours, blockedRatio: anchor.blockedMs / ours.blockedMs }));
} finally {
  execFileSync('ip', ['netns', 'del', NS]);
}
