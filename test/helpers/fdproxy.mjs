// The native L7 proxy alone, out of descriptors: `node fdproxy.mjs` (under a low RLIMIT_NOFILE) listens on
// 127.0.0.1 (an ephemeral port), then opens /dev/null until EMFILE, so every connection a client makes waits
// in the backlog with no descriptor to take it. Its lookup channel is /dev/null: an accepted connection gets
// no original destination and is closed (fail closed), which the client sees as an end: accepted.
// stdout: one JSON line { pid, port } when ready, then one per command. stdin commands, one a line:
// "free N" closes N held descriptors; "stats" prints the proxy's counters.
// WM_ADDON: the addon to load (default: this tree's build), to run test/unit/l7-accept.test.ts against an
// older build (it passes its environment on). Under test/unit/l7-accept.test.ts's LD_PRELOAD shim:
// WM_FDPROXY_NOFILL=1 takes no descriptors; WM_SHIM_LOOKUP_FD (set by the shim) is a lookup channel that
// answers every flow (127.0.0.1:9), and rule requests are answered "all" (an L4 allow).
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const native = createRequire(import.meta.url)(process.env.WM_ADDON ?? join(root, 'build', 'Release', 'wiremesh.node'));

// an unused port: bind 0 with Node, release it, let the proxy take it
const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const lookup = process.env.WM_SHIM_LOOKUP_FD ? Number(process.env.WM_SHIM_LOOKUP_FD) : openSync('/dev/null', 'r');
const proxy = new native.L7Proxy({ address: Buffer.from([127, 0, 0, 1]), port, workers: 1, lookupFds: [lookup] }, () => {
  for (const req of proxy.takeRequests()) proxy.setRules(req, 'all');
});
const held = [];
while (!process.env.WM_FDPROXY_NOFILL) {
  try {
    held.push(openSync('/dev/null', 'r'));
  } catch {
    break; // EMFILE
  }
}
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
say({ pid: process.pid, port, held: held.length });
createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.trim().split(' ');
  if (cmd === 'free') {
    for (const fd of held.splice(0, Number(arg))) closeSync(fd);
    say({ freed: Number(arg) });
  } else if (cmd === 'stats') {
    say({ stats: proxy.stats() });
  }
});
process.stdin.on('end', () => {
  proxy.close();
  process.exit(0);
});
