// HTTP test tool (runs inside a pod's namespace).
//   server NAME PORT                    answers every request with JSON {pod, method, path, xff, bytes}
//   req HOST PORT METHOD PATH [H:V ...] [--body N]   one request (a body of N bytes is sent chunked);
//                                       prints {status, body} or {error}
//   pipeline HOST PORT PATH...          one connection, all GETs written at once (pipelined); prints the statuses in order
//   keepalive HOST PORT N PATH          N requests one after another on one keep-alive connection; prints {statuses, sockets}
//   raw HOST PORT BASE64                writes the decoded bytes as they are; prints {status (first status line), closed}
//   upgrade HOST PORT PATH              asks to switch to the server's echo protocol; prints {status, echo} (what came back for "ping")
//   slow HOST PORT BASE64 MS            writes the decoded bytes one every MS ms; prints {status, closed, ms} (when answered or closed)
//   h2 HOST PORT PATH                   GET over HTTP/2 with prior knowledge (h2c); prints {status, body} or {error}
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';

const [mode, ...a] = process.argv.slice(2);

if (mode === 'server') {
  const [name, port] = a;
  http
    .createServer((req, res) => {
      let bytes = 0;
      req.on('data', (d) => (bytes += d.length));
      req.on('end', () => {
        const body = JSON.stringify({ pod: name, method: req.method, path: req.url, xff: req.headers['x-forwarded-for'] ?? null, bytes });
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      });
    })
    .on('upgrade', (req, socket) => {
      // a toy protocol after 101: echo every byte
      socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n');
      socket.on('data', (d) => socket.write(d));
      socket.on('error', () => undefined);
    })
    .listen(Number(port), '0.0.0.0', () => process.stderr.write('listening\n'));
} else if (mode === 'req') {
  const [host, port, method, path, ...rest] = a;
  const headers = {};
  let body = 0;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--body') body = Number(rest[++i]);
    else {
      const j = rest[i].indexOf(':');
      headers[rest[i].slice(0, j)] = rest[i].slice(j + 1);
    }
  }
  const req = http.request({ host, port: Number(port), method, path, headers, timeout: 3000 }, (res) => {
    let data = '';
    res.on('data', (d) => (data += d));
    res.on('end', () => process.stdout.write(JSON.stringify({ status: res.statusCode, body: data }) + '\n'));
  });
  req.on('timeout', () => req.destroy(new Error('TIMEOUT')));
  req.on('error', (e) => process.stdout.write(JSON.stringify({ error: e.code ?? e.message }) + '\n'));
  if (body) {
    const chunk = Buffer.alloc(16384, 120);
    let left = body;
    const more = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!req.write(chunk.subarray(0, n))) return req.once('drain', more);
      }
      req.end();
    };
    more();
  } else req.end();
} else if (mode === 'pipeline') {
  const [host, port, ...paths] = a;
  const s = net.connect(Number(port), host, () => s.write(paths.map((p) => `GET ${p} HTTP/1.1\r\nhost: ${host}\r\n\r\n`).join('')));
  let buf = '';
  const t = setTimeout(() => done(), 3000);
  const done = () => {
    clearTimeout(t);
    s.destroy();
    process.stdout.write(JSON.stringify([...buf.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]))) + '\n');
  };
  s.on('data', (d) => {
    buf += d;
    if ([...buf.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].length === paths.length && /\r\n\r\n[^]*$/.test(buf)) setTimeout(done, 100);
  });
  s.on('error', () => done());
} else if (mode === 'keepalive') {
  const [host, port, n, path] = a;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set();
  const statuses = [];
  for (let i = 0; i < Number(n); i++) {
    statuses.push(
      await new Promise((resolve) => {
        const req = http.get({ host, port: Number(port), path, agent }, (res) => {
          sockets.add(res.socket.localPort);
          res.resume();
          res.on('end', () => resolve(res.statusCode));
        });
        req.on('error', (e) => resolve(e.code));
      }),
    );
  }
  agent.destroy();
  process.stdout.write(JSON.stringify({ statuses, sockets: sockets.size }) + '\n');
} else if (mode === 'raw') {
  const [host, port, b64] = a;
  const s = net.connect(Number(port), host, () => s.write(Buffer.from(b64, 'base64')));
  let buf = '';
  const done = (closed) => {
    clearTimeout(t);
    s.destroy();
    process.stdout.write(JSON.stringify({ status: Number(buf.match(/^HTTP\/1\.1 (\d{3})/)?.[1] ?? 0), closed }) + '\n');
  };
  const t = setTimeout(() => done(false), 3000);
  s.on('data', (d) => (buf += d));
  s.on('end', () => done(true));
  s.on('error', () => done(true));
} else if (mode === 'upgrade') {
  const [host, port, path] = a;
  const req = http.request({ host, port: Number(port), path, headers: { connection: 'upgrade', upgrade: 'echo' }, timeout: 3000 });
  req.on('upgrade', (res, socket) => {
    socket.write('ping');
    socket.once('data', (d) => {
      process.stdout.write(JSON.stringify({ status: res.statusCode, echo: String(d) }) + '\n');
      socket.destroy();
    });
  });
  req.on('response', (res) => process.stdout.write(JSON.stringify({ status: res.statusCode }) + '\n'));
  req.on('timeout', () => req.destroy(new Error('TIMEOUT')));
  req.on('error', (e) => process.stdout.write(JSON.stringify({ error: e.code ?? e.message }) + '\n'));
  req.end();
} else if (mode === 'slow') {
  const [host, port, b64, ms] = a;
  const bytes = Buffer.from(b64, 'base64');
  const t0 = Date.now();
  let buf = '';
  let i = 0;
  const s = net.connect(Number(port), host);
  const timer = setInterval(() => {
    if (i < bytes.length && !s.destroyed) s.write(bytes.subarray(i, ++i));
  }, Number(ms));
  const done = (closed) => {
    clearInterval(timer);
    s.destroy();
    process.stdout.write(JSON.stringify({ status: Number(buf.match(/^HTTP\/1\.1 (\d{3})/)?.[1] ?? 0), closed, ms: Date.now() - t0 }) + '\n', () => process.exit(0));
  };
  setTimeout(() => done(false), 30_000);
  s.on('data', (d) => (buf += d));
  s.on('end', () => done(true));
  s.on('error', () => done(true));
} else if (mode === 'h2') {
  const [host, port, path] = a;
  const out = (o) => {
    process.stdout.write(JSON.stringify(o) + '\n', () => process.exit(0)); // (a pipe's write is asynchronous)
  };
  setTimeout(() => out({ error: 'TIMEOUT' }), 3000);
  const session = http2.connect(`http://${host}:${port}`);
  session.on('error', (e) => out({ error: e.code ?? e.message }));
  session.on('goaway', (code) => out({ error: `GOAWAY ${code}` }));
  const req = session.request({ ':path': path });
  let status = 0;
  let body = '';
  req.on('response', (h) => (status = h[':status']));
  req.on('data', (d) => (body += d));
  req.on('end', () => out({ status, body }));
  req.on('error', (e) => out({ error: e.code ?? e.message }));
  req.end();
}
