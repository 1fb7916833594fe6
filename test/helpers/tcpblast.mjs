// Bulk TCP transfer with an integrity check: `server HOST PORT` prints the
// sha256 and byte count of what it received; `client HOST PORT BYTES` sends
// deterministic pseudo-random bytes and prints the same for what it sent.
import { createHash } from 'node:crypto';
import { createServer, connect } from 'node:net';

const [mode, host, portText, bytesText] = process.argv.slice(2);
const port = Number(portText);
if (mode === 'server') {
  const srv = createServer((sock) => {
    const h = createHash('sha256');
    let n = 0;
    sock.on('data', (d) => { h.update(d); n += d.length; });
    sock.on('end', () => {
      process.stdout.write(`${h.digest('hex')} ${n}\n`);
      sock.end();
      srv.close();
    });
  });
  srv.listen(port, host, () => process.stderr.write('listening\n'));
} else {
  const total = Number(bytesText);
  const h = createHash('sha256');
  const chunk = Buffer.alloc(1 << 16);
  let state = 12345;
  let sent = 0;
  const sock = connect(port, host, () => {
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        for (let i = 0; i < n; i += 4) { state = (Math.imul(state, 1103515245) + 12345) >>> 0; chunk.writeUInt32LE(state, i); }
        const part = chunk.subarray(0, n);
        h.update(part);
        sent += n;
        if (!sock.write(Buffer.from(part))) return sock.once('drain', pump);
      }
      sock.end();
    };
    pump();
  });
  sock.on('close', () => process.stdout.write(`${h.digest('hex')} ${sent}\n`));
}
