// Runs inside a pod's namespace: GET PATH on a new connection every INTERVAL ms for SECONDS, one at a time.
//   l7loop HOST PORT PATH SECONDS INTERVAL
// Prints {counts, changes}: counts of each outcome (the HTTP status, or the error code: ECONNREFUSED,
// ECONNRESET, TIMEOUT), and each change of outcome with its time in ms from the start.
import http from 'node:http';

const [host, port, path, seconds, interval] = process.argv.slice(2);
const counts = {};
const changes = [];
const t0 = Date.now();
let last;

function once() {
  return new Promise((resolve) => {
    const req = http.request({ host, port: Number(port), path, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
      res.on('error', () => resolve('ECONNRESET'));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e) => resolve(e.code ?? 'ERROR'));
    req.end();
  });
}

while (Date.now() - t0 < Number(seconds) * 1000) {
  const started = Date.now();
  const outcome = await once();
  counts[outcome] = (counts[outcome] ?? 0) + 1;
  if (outcome !== last) changes.push([started - t0, outcome]);
  last = outcome;
  await new Promise((r) => setTimeout(r, Math.max(0, Number(interval) - (Date.now() - started))));
}
process.stdout.write(JSON.stringify({ counts, changes }) + '\n');
