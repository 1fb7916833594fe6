// `server HOST PORT`: echoes every connection. `client PORT HOST...`: connects
// to each host, sends a line, expects it back; prints "HOST ok" or "HOST fail REASON"
// per host (REASON: "timeout" when the echo is not back within 3 s: no answer to the SYN and
// its retransmissions, or a stalled echo; else the socket's error code, e.g. ECONNREFUSED).
import { createServer, connect } from 'node:net';

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') {
  const [host, port] = rest;
  createServer((s) => s.pipe(s)).listen(Number(port), host, () => process.stderr.write('listening\n'));
} else {
  const [port, ...hosts] = rest;
  const results = await Promise.all(
    hosts.map(
      (h) =>
        new Promise((resolve) => {
          const msg = `hello ${h}\n`;
          let got = '';
          const s = connect(Number(port), h);
          const t = setTimeout(() => (s.destroy(), resolve(`${h} fail timeout`)), 3000);
          s.on('connect', () => s.write(msg));
          s.on('data', (d) => {
            got += d;
            if (got === msg) {
              clearTimeout(t);
              s.end();
              resolve(`${h} ok`);
            }
          });
          s.on('error', (e) => (clearTimeout(t), resolve(`${h} fail ${e.code ?? 'error'}`)));
        }),
    ),
  );
  process.stdout.write(results.join('\n') + '\n');
}
