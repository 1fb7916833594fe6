// The native L7 proxy out of descriptors (test/helpers/fdproxy.mjs, under a 64-descriptor limit, every one
// taken): accept fails with EMFILE for each connection waiting in the backlog. The level-triggered listener
// used to fire again at once, and the proxy thread spun on the failure (~100 CPU ticks a second, a whole
// core); it is now disarmed and tried again when a connection closes or at the 1 s sweep, and a connection
// is accepted as soon as descriptors are free. The connection cap follows the limit.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { NativeL7ProxyStats } from '../../src/native/binding.js';
import { ROOT } from '../../src/testbed/netns.js';

const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU ticks (utime + stime, /proc/PID/task/TID/stat fields 14-15) of the process's wm-proxy threads: a count, not a clock. */
function proxyTicks(pid: number): number {
  let t = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== 'wm-proxy') continue;
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      t += Number(f[11]) + Number(f[12]);
    } catch {
      // a thread gone meanwhile
    }
  }
  return t;
}

const children: ChildProcessWithoutNullStreams[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const c of children.splice(0)) c.stdin.end();
});

function start() {
  const child = spawn('prlimit', ['--nofile=64:64', process.execPath, join(ROOT, 'test', 'helpers', 'fdproxy.mjs')], { stdio: 'pipe' });
  children.push(child);
  const lines: Array<Record<string, unknown>> = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
      buf = buf.slice(i + 1);
    }
  });
  const next = async () => {
    await vi.waitFor(() => expect(lines.length).toBeGreaterThan(0), { timeout: 10_000, interval: 10 });
    return lines.shift()!;
  };
  const stats = async () => {
    child.stdin.write('stats\n');
    return (await next()).stats as NativeL7ProxyStats;
  };
  return { child, next, stats };
}

describe.skipIf(!hasPrlimit)('L7 proxy out of descriptors', () => {
  it('pauses accepting on EMFILE instead of spinning, and accepts again once descriptors are free', async () => {
    const { child, next, stats } = start();
    const ready = (await next()) as { pid: number; port: number; held: number };
    expect(ready.held).toBeGreaterThan(0); // every descriptor under the limit is taken
    let closed = 0;
    let connected = 0;
    for (let i = 0; i < 3; i++) {
      const s = connect(ready.port, '127.0.0.1', () => connected++); // in the backlog: the kernel completes it
      s.on('error', () => undefined);
      s.on('close', () => closed++);
      sockets.push(s);
    }
    await vi.waitFor(() => expect(connected).toBe(3), { timeout: 5_000, interval: 10 });
    await sleep(100); // the listener has fired: the first accept failed
    const s0 = await stats();
    const t0 = proxyTicks(ready.pid);
    await sleep(1000);
    const t1 = proxyTicks(ready.pid);
    const s1 = await stats();
    expect(t1 - t0).toBeLessThan(20); // CPU ticks (a count): the spinning loop took ~100 of a possible 100 (a core)
    // tried again at most once per sweep (1 s) while nothing closes: a count, however fast the machine
    expect(s1.acceptErrors - s0.acceptErrors).toBeLessThanOrEqual(2);
    expect(s1).toMatchObject({ fdExhausted: 1, connections: 0, maxConnections: 16 }); // (64 - min(128 + 8, 32)) / 2
    expect(closed).toBe(0);

    child.stdin.write('free 10\n');
    await next();
    // the next sweep re-arms the listener: each waiting connection is accepted, then closed (no original
    // destination: the lookup channel is /dev/null), which the client sees
    await vi.waitFor(() => expect(closed).toBe(3), { timeout: 5_000, interval: 20 });
    expect(await stats()).toMatchObject({ connections: 3, fdExhausted: 1, active: 0 });
  }, 20_000);
});
