// Run inside a network namespace whose lo holds fd00:64::1-3/64 (test/netns/redteam-s13-metrics64.test.ts):
// the metrics listener on fd00:64::1; a pod-like neighbour at fd00:64::2 (same /64) holds maxPerClient silent
// connections (argv[2], 4 by default), reopening each one the listener closes (408 after 2 s, or reset past the
// bound); a scraper at fd00:64::3 then scrapes 5 times. Prints one JSON line: the scraper's outcomes and the
// listener's refusals.
// With argv[3] 'spread' (lo also holds fd00:64::100-17f and fd00:65::3), 5 times: one host opens 64 connections
// from 64 addresses of its /64, each sending GET /metrics and never reading its answer (an 8 MiB exposition:
// unflushed); a scraper at fd00:65::3 (another /64) sends its GET and takes the first chunk; the host opens 64
// more from 64 other addresses; then the scraper reads on: its outcome is 200 only when its answer came whole.
import { connect } from 'node:net';
import { request } from 'node:http';
import { serveMetrics } from '../../dist/src/net/metricsserver.js';

const spread = process.argv[3] === 'spread';
const text = spread ? 'x'.repeat(8 << 20) : 'up 1\n';
const server = await serveMetrics({ contentType: 'text/plain', text: async () => text }, 'fd00:64::1', 0);
const port = server.address().port;
let stop = false;
const open = [];
const hold = (from) => {
  if (stop) return;
  const s = connect({ host: 'fd00:64::1', port, localAddress: from });
  s.on('error', () => undefined);
  // spread: once each (a paused socket does not see its reset: nothing to reopen), closed before the next wave
  if (spread) return void open.push(s.on('connect', () => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')).pause());
  s.on('close', () => setImmediate(hold, from));
};
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
/** Opens n connections from fd00:64::(0x100 + from + i), once each (spread). */
const wave = (from, n) => {
  for (let i = 0; i < n; i++) hold(`fd00:64::${(0x100 + from + i).toString(16)}`);
};
if (!spread) for (let i = 0; i < Number(process.argv[2] ?? 4); i++) hold('fd00:64::2');
await pause(300);
/** One scrape; in spread mode, part-way through its answer the second wave comes. */
const scrape = () =>
  new Promise((resolve) =>
    request({ host: 'fd00:64::1', port, path: '/metrics', agent: false, localAddress: spread ? 'fd00:65::3' : 'fd00:64::3' }, (res) => {
      let bytes = 0;
      res.on('data', (d) => (bytes += d.length));
      if (spread)
        res.once('data', () => {
          res.pause();
          wave(64, 64);
          pause(300).then(() => res.resume());
        });
      res.on('end', () => resolve(res.statusCode === 200 && bytes !== text.length ? `short ${bytes}` : res.statusCode));
      res.on('error', (e) => resolve(e.code ?? e.message));
      res.on('close', () => resolve(`closed at ${bytes}`)); // a reset seen as neither (resolved already otherwise)
    })
      .on('error', (e) => resolve(e.code ?? e.message))
      .end(),
  );
const outcomes = [];
for (let i = 0; i < 5; i++) {
  if (spread) {
    for (const s of open.splice(0)) s.destroy();
    wave(0, 64);
    await pause(300);
  }
  outcomes.push(await scrape());
  await new Promise((r) => setTimeout(r, 500));
}
stop = true;
process.stdout.write(JSON.stringify({ outcomes, refused: server.listenerStats.refused }) + '\n', () => process.exit(0));
