// Run inside a network namespace whose lo holds fd00:64::1-3/64 (test/netns/redteam-s13-metrics64.test.ts):
// the metrics listener on fd00:64::1; a pod-like neighbour at fd00:64::2 (same /64) holds maxPerClient silent
// connections (argv[2], 4 by default), reopening each one the listener closes (408 after 2 s, or reset past the
// bound); a scraper at fd00:64::3 then scrapes 5 times. Prints one JSON line: the scraper's outcomes and the
// listener's refusals.
import { connect } from 'node:net';
import { request } from 'node:http';
import { serveMetrics } from '../../dist/src/net/metricsserver.js';

const server = await serveMetrics({ contentType: 'text/plain', text: async () => 'up 1\n' }, 'fd00:64::1', 0);
const port = server.address().port;
let stop = false;
const hold = () => {
  if (stop) return;
  const s = connect({ host: 'fd00:64::1', port, localAddress: 'fd00:64::2' });
  s.on('error', () => undefined);
  s.on('close', () => setImmediate(hold));
};
for (let i = 0; i < Number(process.argv[2] ?? 4); i++) hold();
await new Promise((r) => setTimeout(r, 300));
const scrape = () =>
  new Promise((resolve) =>
    request({ host: 'fd00:64::1', port, path: '/metrics', agent: false, localAddress: 'fd00:64::3' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    })
      .on('error', (e) => resolve(e.code ?? e.message))
      .end(),
  );
const outcomes = [];
for (let i = 0; i < 5; i++) {
  outcomes.push(await scrape());
  await new Promise((r) => setTimeout(r, 500));
}
stop = true;
console.log(JSON.stringify({ outcomes, refused: server.listenerStats.refused }));
process.exit(0);
