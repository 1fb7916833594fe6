// Keeps ONE TCP connection to an echo server busy for SECONDS: a line every
// 50 ms, each echo checked. Prints "sent N echoed M errors E maxgapms G".
import { connect } from 'node:net';

const [host, port, seconds] = process.argv.slice(2);
let sent = 0, echoed = 0, errors = 0, buf = '', last = Date.now(), maxGap = 0;
const s = connect(Number(port), host);
s.setEncoding('utf8');
s.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (line === `m${echoed}`) echoed++;
    else errors++;
    const now = Date.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }
});
s.on('error', () => errors++);
s.on('connect', () => {
  const t = setInterval(() => s.write(`m${sent++}\n`), 50);
  setTimeout(() => {
    clearInterval(t);
    setTimeout(() => {
      process.stdout.write(`sent ${sent} echoed ${echoed} errors ${errors} maxgapms ${maxGap}\n`);
      s.destroy();
    }, 1000);
  }, Number(seconds) * 1000);
});
