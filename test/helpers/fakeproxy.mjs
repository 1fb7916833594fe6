// Stands in for src/proxy/worker.ts in test/unit/proxy-supervisor.test.ts: speaks the control channel
// (fd 3, src/proxy/frames.ts framing) as FAKE_PROXY_MODE says, then stays up, crashes or lies.
//   crash     ready, then SIGSEGV to itself
//   hostile   ready, garbage of every kind, each followed by an honest stats message, then waits
//   oversize  ready, then a frame header announcing 1 GiB
//   rules     ready, asks the rules of 100.65.1.10:8080 for identity 4242, waits
import { Socket } from 'node:net';

const control = new Socket({ fd: 3, readable: true, writable: true });
const frame = (kind, payload) => {
  const h = Buffer.alloc(5);
  h.writeUInt32LE(payload.length + 1, 0);
  h[4] = kind;
  control.write(Buffer.concat([h, payload]));
};
const json = (o) => frame(0, Buffer.from(JSON.stringify(o)));
const stats = { connections: 1, active: 0, requests: 5, denied: 2, upstreamErrors: 0, passthrough: 0, badRequests: 0, recordsLost: 0, h2Refused: 0, h2cIgnored: 0, headTimeouts: 0, bodyTimeouts: 0, limited: 0, fdExhausted: 0, acceptErrors: 0, maxConnections: 16384, lookupTimeouts: 0, lookupsLimited: 0, lookupsUnsent: 0 };
control.on('close', () => process.exit(0));
control.on('error', () => process.exit(0));
json({ t: 'ready', pid: process.pid, workers: 1 });

const mode = process.env.FAKE_PROXY_MODE;
if (mode === 'crash') {
  setTimeout(() => process.kill(process.pid, 'SIGSEGV'), 20);
} else if (mode === 'hostile') {
  const badRow = Buffer.alloc(56);
  badRow.writeDoubleLE(NaN, 0);
  const rowsLen = Buffer.alloc(4);
  rowsLen.writeUInt32LE(56, 0);
  const garbage = [
    () => frame(0, Buffer.from('{"t":')),
    () => frame(9, Buffer.from('x')),
    () => json({ t: 'requests', requests: [{ address: '100.65.1.10', port: 8080, identity: -1, generation: 1 }] }),
    () => json({ t: 'stats', stats: { ...stats, requests: 'many' } }),
    () => frame(1, Buffer.concat([rowsLen, badRow])),
  ];
  for (const g of garbage) {
    g();
    json({ t: 'stats', stats });
  }
} else if (mode === 'oversize') {
  const h = Buffer.alloc(5);
  h.writeUInt32LE(1 << 30, 0);
  control.write(h);
} else if (mode === 'rules') {
  json({ t: 'requests', requests: [{ address: '100.65.1.10', port: 8080, identity: 4242, generation: 1 }] });
}
setInterval(() => undefined, 1000);
