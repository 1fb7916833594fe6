/**
 * The metrics listener under a hostile client (red-team review, branch s12http): what a flood costs the serving
 * process's JavaScript thread, as fires of a 10 ms timer in 5 s (~500 when idle), and whether honest scrapes from
 * another address are answered. The render is a stand-in costing 5 ms of the thread (the agent's is 4-16 ms).
 *
 *   node dist/bench/metricsflood.js <dist dir of the build> <scenario>     one run, one JSON line
 *   node dist/bench/metricsflood.js compare <anchor dist> <candidate dist> [scenario,...]  each (all by default), alternating, 2 rounds
 *
 * Scenarios: none (no attacker), pipeline1 (one connection pipelining GET /metrics, 20 at a time, again when closed), pipeline64 (64 such, from
 * 16 addresses 127.0.0.2-17, 4 each), hold400 (400 sockets from 127.0.0.2 holding or reconnecting), slow64 (64 slow
 * readers from 127.0.0.2-17, 4 each: GET /metrics, then 1 KiB read a second, again when closed; the exposition is
 * 8 MiB, more than loopback's socket buffers take of an answer not read). The attacker
 * runs in a child process (churn1get: one GET per connection, reconnecting); the honest scraper (127.0.0.1, one GET every 100 ms) in this one.
 */
import { execFileSync, fork } from 'node:child_process';
import { request } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const RUN_MS = 5000;
const GET = 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n';

function attack(port: number, scenario: string): void {
  // pipelined: a batch of 20 GETs, the next batch once 20 answers came (self-paced: main's listener answers every
  // one, so an unpaced attacker's backlog would stall it past any deadline), again on a new connection when closed
  const one = (from: string, pipelined: boolean) => {
    let answers = 0;
    const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => pipelined && s.write(GET.repeat(20)));
    s.on('data', (d: Buffer) => {
      answers += d.toString('latin1').split('HTTP/1.1 ').length - 1;
      if (pipelined && answers >= 20 && s.writable) {
        answers -= 20;
        s.write(GET.repeat(20));
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => setImmediate(() => one(from, pipelined)));
  };
  // one connection reconnecting, one request each (what a client costs when it does not pipeline)
  const oneGet = () => {
    const s = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => s.write(GET));
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('close', () => setImmediate(oneGet));
  };
  if (scenario === 'pipeline1') one('127.0.0.2', true);
  if (scenario === 'pipeline64') for (let i = 0; i < 64; i++) one(`127.0.0.${2 + (i % 16)}`, true);
  if (scenario === 'hold400') for (let i = 0; i < 400; i++) one('127.0.0.2', false);
  if (scenario === 'churn1get') oneGet();
  // a reader that stops: 1 KiB a second keeps an idle timeout from firing (and sees its connection reset)
  const slow = (from: string) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => s.write(GET)).pause();
    const trickle = setInterval(() => s.read(1024), 1000);
    s.on('error', () => undefined);
    s.on('close', () => {
      clearInterval(trickle);
      setImmediate(() => slow(from));
    });
  };
  if (scenario === 'slow64') for (let i = 0; i < 64; i++) slow(`127.0.0.${2 + (i % 16)}`);
}

function scrape(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const r = request({ host: '127.0.0.1', port, path: '/metrics', agent: false, localAddress: '127.0.0.1', timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    r.on('timeout', () => r.destroy());
    r.on('error', () => resolve(false));
    r.end();
  });
}

async function run(dist: string, scenario: string): Promise<void> {
  const { serveMetrics } = (await import(join(dist, 'src/net/metricsserver.js'))) as typeof import('../src/net/metricsserver.js');
  let renders = 0;
  const text = scenario === 'slow64' ? 'x'.repeat(8 << 20) : 'up 1\n'.repeat(200);
  const source = {
    contentType: 'text/plain',
    text: async () => {
      renders++;
      const end = performance.now() + 5;
      while (performance.now() < end);
      return text;
    },
  };
  const server = await serveMetrics(source, '127.0.0.1', 0);
  const port = (server.address() as AddressInfo).port;
  const child = fork(fileURLToPath(import.meta.url), ['attack', String(port), scenario]);
  await new Promise((r) => setTimeout(r, 300)); // the flood under way
  let fires = 0;
  const timer = setInterval(() => fires++, 10);
  let ok = 0;
  let failed = 0;
  const end = performance.now() + RUN_MS;
  while (performance.now() < end) {
    if (await scrape(port)) ok++;
    else failed++;
    await new Promise((r) => setTimeout(r, 100));
  }
  clearInterval(timer);
  // what the serving process holds in Buffers at the end, flood still on (answers being sent), MiB
  const bufferMiB = Math.round(process.memoryUsage().arrayBuffers / 2 ** 20);
  child.kill();
  server.close();
  process.stdout.write(JSON.stringify({ dist, scenario, fires, scrapesOk: ok, scrapesFailed: failed, renders, bufferMiB }) + '\n');
  process.exit(0);
}

const [mode, a, b] = process.argv.slice(2);
if (mode === 'attack') attack(Number(a), b!);
else if (mode === 'compare') {
  const me = fileURLToPath(import.meta.url);
  for (let round = 0; round < 2; round++)
    for (const scenario of (process.argv[5] ?? 'none,pipeline1,pipeline64,hold400,slow64').split(','))
      for (const dist of [a!, b!]) process.stdout.write(execFileSync(process.execPath, [me, dist, scenario], { encoding: 'utf8', timeout: 60_000 }));
} else await run(mode!, a!);
