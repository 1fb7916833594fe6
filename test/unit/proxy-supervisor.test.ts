// The agent's supervision of its L7 proxy process (src/proxy/proxy.ts), against a stand-in process
// (test/helpers/fakeproxy.mjs) that crashes, lies or asks for rules: a crash is counted with its signal and
// the process restarted after a doubling delay; hostile messages are refused one by one while the honest
// ones between them count; an unreadable stream gets the process killed and restarted.
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { NativeProxyLookup } from '../../src/native/binding.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { ROOT } from '../../src/testbed/netns.js';
import { L7Proxy, type L7Policy } from '../../src/proxy/proxy.js';

const FAKE = join(ROOT, 'test', 'helpers', 'fakeproxy.mjs');

function setup(mode: string) {
  process.env.FAKE_PROXY_MODE = mode;
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (logs.push(JSON.parse(c.toString()) as Record<string, unknown>), cb()) }));
  const asked: Array<[string, number, number]> = [];
  const policy: L7Policy = {
    l7For: (ip, port, id) => (asked.push([ip, port, id]), { endpoint: 'shop/api', rules: 'all' }),
    ruleNumber: () => 0,
    addL7Records: () => undefined,
    on: () => undefined,
    off: () => undefined,
  };
  // lookup channels: the stand-in never asks, so any fd serves
  const lookup: NativeProxyLookup = { pair: () => openSync('/dev/null', 'r'), stats: () => ({ answered: 0, notFound: 0, malformed: 0, channels: 0 }), close: () => undefined };
  const dev = new FakeDevice();
  const proxy = new L7Proxy(dev, '100.64.0.1', 15001, policy, log, 1, { backoff: { initialMs: 20, maxMs: 80, resetAfterMs: 60_000 }, workerPath: FAKE, lookup: () => lookup });
  running.push(proxy);
  return { proxy, logs, asked };
}

const running: L7Proxy[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.stop();
});

describe('L7 proxy supervision', () => {
  it('counts a crashed proxy process with its signal and restarts it, the delay doubling to its cap', async () => {
    const { proxy, logs } = setup('crash');
    proxy.start();
    await vi.waitFor(() => expect(proxy.stats.restarts).toBeGreaterThanOrEqual(4), { timeout: 10_000, interval: 20 });
    expect(proxy.stats.lastExit).toMatchObject({ code: null, signal: 'SIGSEGV' });
    const delays = logs.filter((l) => l.msg?.toString().startsWith('L7 proxy process exited')).map((l) => l.restartInMs);
    expect(delays.slice(0, 4)).toEqual([20, 40, 80, 80]);
    await proxy.stop();
    expect(proxy.pid).toBeNull();
    expect(proxy.stats.up).toBe(false);
  });

  it('refuses hostile messages one by one and keeps the honest ones between them', async () => {
    const { proxy } = setup('hostile');
    proxy.start();
    await vi.waitFor(() => expect(Object.values(proxy.stats.rejectedMessages).reduce((a, b) => a + b, 0)).toBe(5), { timeout: 10_000, interval: 20 });
    expect(proxy.stats.rejectedMessages).toEqual({ 'not-json': 1, kind: 1, schema: 2, records: 1 });
    expect(proxy.stats).toMatchObject({ requests: 5, denied: 2, up: true, restarts: 0 });
  });

  it('kills and restarts a proxy process whose stream cannot be read on (a frame over 16 MiB)', async () => {
    const { proxy } = setup('oversize');
    proxy.start();
    await vi.waitFor(() => expect(proxy.stats.restarts).toBeGreaterThanOrEqual(1), { timeout: 10_000, interval: 20 });
    expect(proxy.stats.rejectedMessages.frame).toBeGreaterThanOrEqual(1);
    expect(proxy.stats.lastExit?.signal).toBe('SIGKILL');
  });

  it('answers rule requests from the policy', async () => {
    const { proxy, asked } = setup('rules');
    proxy.start();
    await vi.waitFor(() => expect(asked).toEqual([['100.65.1.10', 8080, 4242]]), { timeout: 10_000, interval: 20 });
  });
});
