// Service test tool (runs inside a pod's namespace).
//   server NAME PORT              TCP and UDP on PORT: every line / datagram is answered with NAME
//   spread HOST PORT COUNT [udp]  COUNT new connections (or sockets) one after another; prints
//                                 {"counts":{name:n},"fail":k,"errors":{code:n}}
//   hold HOST PORT MS             one TCP connection asking every 100 ms for MS ms; prints
//                                 {"names":[...],"replies":n,"error":code|null,"errorAfterMs":t}
//   watch HOST PORT MS            a new connection every 50 ms for MS ms (1 s timeout each); prints
//                                 one JSON line per attempt: {"t":ms since start,"at":epoch ms,"ok":bool,"name"|"error"}
//   resolve NAME TYPE             DNS through the pod's resolv.conf; prints the answer as JSON or {"error":code}
//   dnsq SERVER NAME              an A query to SERVER (port 53); prints the addresses in answer order, or {"error":code}
//   ppserver NAME PORT            TCP on PORT expecting a PROXY v2 header first; every line is answered
//                                 with "NAME <client address>:<port>" as the header named it
import { createServer, connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { promises as dns } from 'node:dns';

const [mode, ...a] = process.argv.slice(2);

function ask(host, port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const s = connect(Number(port), host);
    let got = '';
    const done = (r) => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    const t = setTimeout(() => done({ error: 'TIMEOUT' }), timeoutMs);
    s.on('connect', () => s.write('who\n'));
    s.on('data', (d) => {
      got += d;
      if (got.includes('\n')) done({ name: got.trim() });
    });
    s.on('error', (e) => done({ error: e.code ?? e.message }));
  });
}

function askUdp(host, port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const t = setTimeout(() => (s.close(), resolve({ error: 'TIMEOUT' })), timeoutMs);
    s.on('message', (m) => (clearTimeout(t), s.close(), resolve({ name: m.toString().trim() })));
    s.on('error', (e) => (clearTimeout(t), s.close(), resolve({ error: e.code ?? e.message })));
    s.connect(Number(port), host, () => s.send('who\n'));
  });
}

if (mode === 'server') {
  const [name, port] = a;
  let up = 0;
  const ready = () => ++up === 2 && process.stderr.write('listening\n');
  createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        buf = buf.slice(i + 1);
        s.write(`${name}\n`);
      }
    });
    s.on('error', () => {});
  }).listen(Number(port), '0.0.0.0', ready);
  const u = createSocket('udp4');
  u.on('message', (_m, r) => u.send(`${name}\n`, r.port, r.address));
  u.bind(Number(port), '0.0.0.0', ready);
} else if (mode === 'spread') {
  const [host, port, count, proto] = a;
  const counts = {};
  const errors = {};
  let fail = 0;
  for (let i = 0; i < Number(count); i++) {
    const r = proto === 'udp' ? await askUdp(host, port) : await ask(host, port);
    if (r.name) counts[r.name] = (counts[r.name] ?? 0) + 1;
    else {
      fail++;
      errors[r.error] = (errors[r.error] ?? 0) + 1;
    }
  }
  process.stdout.write(JSON.stringify({ counts, fail, errors }) + '\n');
} else if (mode === 'hold') {
  const [host, port, ms] = a;
  const names = new Set();
  let replies = 0;
  const t0 = Date.now();
  const s = connect(Number(port), host);
  let buf = '';
  const finish = (error) => {
    clearInterval(tick);
    clearTimeout(end);
    s.destroy();
    // exit once written: a pipe's writes are asynchronous on POSIX, and exit() would drop one still queued
    process.stdout.write(JSON.stringify({ names: [...names], replies, error, errorAfterMs: error ? Date.now() - t0 : null }) + '\n', () => process.exit(0));
  };
  s.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      names.add(buf.slice(0, i));
      buf = buf.slice(i + 1);
      replies++;
      if (replies === 1) process.stderr.write(`first ${[...names][0]}\n`);
    }
  });
  s.on('error', (e) => finish(e.code ?? e.message));
  s.on('close', () => finish('CLOSED'));
  const tick = setInterval(() => s.writable && s.write('who\n'), 100);
  const end = setTimeout(() => finish(null), Number(ms));
} else if (mode === 'watch') {
  const [host, port, ms] = a;
  const t0 = Date.now();
  const pending = [];
  while (Date.now() - t0 < Number(ms)) {
    const t = Date.now() - t0;
    pending.push(ask(host, port).then((r) => process.stdout.write(JSON.stringify({ t, at: t0 + t, ok: !!r.name, ...r }) + '\n')));
    await new Promise((r) => setTimeout(r, 50));
  }
  await Promise.all(pending);
} else if (mode === 'dnsq') {
  const [server, name] = a;
  const r = new dns.Resolver({ timeout: 1000, tries: 1 });
  r.setServers([server]);
  try {
    process.stdout.write(JSON.stringify(await r.resolve4(name)) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: e.code }) + '\n');
  }
} else if (mode === 'ppserver') {
  const [name, port] = a;
  createServer((s) => {
    let buf = Buffer.alloc(0);
    let client = null;
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!client) {
        // signature (12), ver/cmd, family, length (2), then addresses and ports
        if (buf.length < 16) return;
        const len = buf.readUInt16BE(14);
        if (buf.length < 16 + len) return;
        if (buf[13] !== 0x11) return s.destroy();
        client = `${[...buf.subarray(16, 20)].join('.')}:${buf.readUInt16BE(24)}`;
        buf = buf.subarray(16 + len);
      }
      let i;
      while ((i = buf.indexOf(10)) >= 0) {
        buf = buf.subarray(i + 1);
        s.write(`${name} ${client}\n`);
      }
    });
    s.on('error', () => {});
  }).listen(Number(port), '0.0.0.0', () => process.stderr.write('listening\n'));
} else if (mode === 'resolve') {
  const [name, type] = a;
  try {
    const r = type === 'SRV' ? await dns.resolveSrv(name) : type === 'AAAA' ? await dns.resolve6(name) : await dns.resolve4(name);
    process.stdout.write(JSON.stringify(r) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: e.code }) + '\n');
  }
} else {
  process.stderr.write('usage: svcprobe.mjs server|spread|hold|watch|resolve ...\n');
  process.exit(2);
}
