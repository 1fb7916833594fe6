// Slow-client load and latency probe (runs inside a pod's namespace).
//   slow HOST PORT N INTERVAL_MS MAX_S   opens N connections (in steps of 100), each sending a request head one
//                                        byte every INTERVAL_MS (the first at once); stops after MAX_S s and prints
//                                        {opened, connectErrors, closedByServer, answered408, reset, stillOpen,
//                                        closeAfterMs: {min, max}} where closedByServer counts connections the other
//                                        side ended (FIN or RST) while this one was still sending.
//   latency HOST PORT PATH SECONDS       GETs one after another, each on a new connection, for SECONDS s; prints
//                                        {n, ok, failed, p50, p99} (milliseconds)
import http from 'node:http';
import net from 'node:net';

const [mode, ...a] = process.argv.slice(2);

if (mode === 'slow') {
  const [host, port, n, interval, maxS] = [a[0], Number(a[1]), Number(a[2]), Number(a[3]), Number(a[4])];
  const head = Buffer.from(`GET /public/slow HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(200)}\r\n\r\n`);
  const r = { opened: 0, connectErrors: 0, closedByServer: 0, answered408: 0, reset: 0, stillOpen: 0 };
  const closeMs = [];
  const socks = [];
  const open = (i) => {
    const t0 = Date.now();
    const s = net.connect(port, host);
    const st = { sent: 0, done: false, connected: false, timer: undefined };
    socks.push([s, st]);
    const end = (how) => {
      if (st.done) return;
      st.done = true;
      clearInterval(st.timer);
      if (!st.connected) return void r.connectErrors++;
      r.closedByServer++;
      if (how === 'reset') r.reset++;
      closeMs.push(Date.now() - t0);
    };
    s.on('connect', () => {
      st.connected = true;
      r.opened++;
      const send = () => st.sent < head.length && s.write(head.subarray(st.sent, ++st.sent));
      send();
      st.timer = setInterval(send, interval);
    });
    s.on('data', (d) => {
      if (/^HTTP\/1\.1 408/.test(d.toString('latin1'))) r.answered408++;
    });
    s.on('end', () => end('fin'));
    s.on('error', (e) => end(e.code === 'ECONNRESET' ? 'reset' : 'error'));
    s.on('close', () => end('fin'));
    void i;
  };
  let i = 0;
  const step = setInterval(() => {
    for (let k = 0; k < 100 && i < n; k++) open(i++);
    if (i >= n) clearInterval(step);
  }, 50);
  setTimeout(() => {
    for (const [s, st] of socks) {
      if (!st.done) r.stillOpen++;
      st.done = true;
      clearInterval(st.timer);
      s.destroy();
    }
    process.stdout.write(JSON.stringify({ ...r, closeAfterMs: { min: Math.min(...closeMs), max: Math.max(...closeMs) } }) + '\n', () => process.exit(0));
  }, maxS * 1000);
} else if (mode === 'latency') {
  const [host, port, path, seconds] = [a[0], Number(a[1]), a[2], Number(a[3])];
  const until = Date.now() + seconds * 1000;
  const ms = [];
  let failed = 0;
  const one = () =>
    new Promise((resolve) => {
      const t0 = process.hrtime.bigint();
      const req = http.get({ host, port, path, agent: false, timeout: 5000 }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
          else failed++;
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        failed++;
        resolve();
      });
    });
  while (Date.now() < until) await one();
  ms.sort((x, y) => x - y);
  const q = (p) => (ms.length ? Number(ms[Math.min(ms.length - 1, Math.floor(p * ms.length))].toFixed(2)) : null);
  process.stdout.write(JSON.stringify({ n: ms.length + failed, ok: ms.length, failed, p50: q(0.5), p99: q(0.99) }) + '\n');
} else {
  process.stderr.write('usage: slowclients.mjs slow|latency ...\n');
  process.exit(2);
}
