// A hostile DNS client: floods SERVER:PORT from BIND (an address of this host) with one
// valid query for MS milliseconds, answers not read: RATE queries a second (sent every 10 ms
// in bursts of RATE/100), or as fast as one Node process sends when RATE is 0.
//   node dnsflood.mjs SERVER PORT BIND MS RATE [NAME]
// Prints {"sent":n} when done. Sends in batches of 64 per event-loop turn so the loop
// stays responsive (SIGTERM ends it at once).
import { createSocket } from 'node:dgram';
import * as packet from 'dns-packet';

const [server, port, bind, ms, rate, name = 'api.shop.svc.cluster.local'] = process.argv.slice(2);
const q = packet.encode({ type: 'query', id: 7, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
const s = createSocket(server.includes(':') ? 'udp6' : 'udp4');
let sent = 0;
let stop = false;
const end = () => {
  if (stop) return;
  stop = true;
  s.close();
  process.stdout.write(`${JSON.stringify({ sent })}\n`, () => process.exit(0));
};
process.on('SIGTERM', end);
s.on('error', () => {}); // ENOBUFS / ECONNREFUSED on a busy loopback: keep going
s.bind(0, bind, () => {
  setTimeout(end, Number(ms));
  const send = (n) => {
    for (let i = 0; i < n; i++) s.send(q, Number(port), server);
    sent += n;
  };
  const burst = () => {
    if (stop) return;
    send(64);
    setImmediate(burst);
  };
  process.stdout.write('ready\n');
  if (Number(rate) > 0) {
    const t = setInterval(() => (stop ? clearInterval(t) : send(Math.ceil(Number(rate) / 100))), 10);
  } else burst();
});
