/**
 * The chaos runner's workload, run inside pods (node dist/src/chaos/probe.js):
 *
 *   server NAME PORT
 *     TCP on PORT: every line is answered with NAME (which backend answered).
 *   ask HOST PORT [TIMEOUT_MS]
 *     one request; prints { at, ok, name?, error? }.
 *   load HOST PORT MS HOLD TIMEOUT_MS
 *     for MS ms: a new connection every 50 ms asking once (a "request"; it
 *     fails when no answer comes within TIMEOUT_MS), and HOLD long-lived
 *     connections opened at the start asking every 100 ms (established flows).
 *     Prints one JSON line: { requests: [{ at, ok, name?, error? }],
 *     held: [{ name, replies, error, errorAt, maxGapMs }] }.
 *   netpol NAME PORT[,PORT...]
 *     the NetworkPolicy conformance suite's pod (test/netns/conformance.test.ts):
 *     TCP and UDP on every PORT, each request (a line) or datagram answered with
 *     NAME; and a prober driven from stdin: each line is a batch
 *     { id, timeoutMs, targets: [{ host, port, proto: "TCP" | "UDP" }] }, probed
 *     all at once, answered with one line { id, results: [{ at, ok, name?, error? }] }
 *     (results in the order of the targets). "listening" on stderr once bound.
 */
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { z } from 'zod';

export interface RequestResult {
  at: number;
  ok: boolean;
  name?: string;
  error?: string;
}

export interface HeldResult {
  name: string | null;
  replies: number;
  error: string | null;
  errorAt: number | null;
  /** The longest wait for an answer (a stall a client would notice). */
  maxGapMs: number;
}

export interface LoadReport {
  requests: RequestResult[];
  held: HeldResult[];
}

function request(host: string, port: number, timeoutMs: number): Promise<RequestResult> {
  const at = Date.now();
  return new Promise((resolve) => {
    const s = connect(port, host);
    let got = '';
    const done = (r: Omit<RequestResult, 'at'>) => {
      clearTimeout(t);
      s.destroy();
      resolve({ at, ...r });
    };
    const t = setTimeout(() => done({ ok: false, error: 'TIMEOUT' }), timeoutMs);
    s.on('connect', () => s.write('who\n'));
    s.on('data', (d) => {
      got += String(d);
      if (got.includes('\n')) done({ ok: true, name: got.trim() });
    });
    s.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, error: e.code ?? e.message }));
  });
}

/**
 * One UDP request: "who" to host:port, the first datagram back is the answer.
 * The request is sent again at half the timeout (one lost datagram is not a
 * denial); ICMP unreachable ends it early (ECONNREFUSED).
 */
function udpRequest(host: string, port: number, timeoutMs: number): Promise<RequestResult> {
  const at = Date.now();
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    let finished = false;
    const done = (r: Omit<RequestResult, 'at'>) => {
      if (finished) return;
      finished = true;
      clearTimeout(t);
      clearTimeout(again);
      s.close();
      resolve({ at, ...r });
    };
    const send = () => s.send('who\n', (err) => err && done({ ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message }));
    const t = setTimeout(() => done({ ok: false, error: 'TIMEOUT' }), timeoutMs);
    const again = setTimeout(() => !finished && send(), timeoutMs / 2);
    s.on('message', (m) => done({ ok: true, name: String(m).trim() }));
    s.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, error: e.code ?? e.message }));
    s.connect(port, host, send);
  });
}

export interface ProbeTarget {
  host: string;
  port: number;
  proto: 'TCP' | 'UDP';
}

/** TCP and UDP servers answering NAME on each port; resolves once all are bound. */
async function serveBoth(name: string, ports: number[]): Promise<void> {
  for (const port of ports) {
    await new Promise<void>((resolve) => {
      createServer((s) => {
        s.on('error', () => undefined);
        s.on('data', (d) => String(d).includes('\n') && s.end(`${name}\n`));
      }).listen(port, '0.0.0.0', resolve);
    });
    await new Promise<void>((resolve) => {
      const u = createSocket('udp4');
      u.on('message', (_m, from) => u.send(`${name}\n`, from.port, from.address));
      u.bind(port, '0.0.0.0', resolve);
    });
  }
}

/** One line of the netpol prober's stdin: a batch of targets to probe at once. */
const probeBatch = z.object({
  id: z.number(),
  timeoutMs: z.number().int().positive(),
  targets: z.array(z.object({ host: z.string(), port: z.number().int().min(1).max(65535), proto: z.enum(['TCP', 'UDP']) })),
});

function netpol(name: string, ports: number[]): void {
  void serveBoth(name, ports).then(() => {
    process.stderr.write('listening\n');
    createInterface({ input: process.stdin }).on('line', (line) => {
      let batch: z.infer<typeof probeBatch>;
      try {
        batch = probeBatch.parse(JSON.parse(line));
      } catch (err) {
        process.stderr.write(`bad batch: ${(err as Error).message.slice(0, 200)}\n`);
        return;
      }
      void Promise.all(batch.targets.map((t) => (t.proto === 'UDP' ? udpRequest : request)(t.host, t.port, batch.timeoutMs))).then((results) =>
        process.stdout.write(JSON.stringify({ id: batch.id, results }) + '\n'),
      );
    });
  });
}

function hold(host: string, port: number, ms: number): Promise<HeldResult> {
  return new Promise((resolve) => {
    const r: HeldResult = { name: null, replies: 0, error: null, errorAt: null, maxGapMs: 0 };
    const s = connect(port, host);
    let buf = '';
    let asked = 0;
    let last = Date.now();
    let finished = false;
    const finish = (error: string | null) => {
      if (finished) return; // our own destroy() at the end closes the socket too
      finished = true;
      clearInterval(tick);
      clearTimeout(end);
      s.destroy();
      if (error && !r.error) {
        r.error = error;
        r.errorAt = Date.now();
      }
      r.maxGapMs = Math.max(r.maxGapMs, asked > r.replies ? Date.now() - last : 0);
      resolve(r);
    };
    s.on('data', (d) => {
      buf += String(d);
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        r.name ??= buf.slice(0, i);
        buf = buf.slice(i + 1);
        r.replies++;
        const now = Date.now();
        r.maxGapMs = Math.max(r.maxGapMs, now - last);
        last = now;
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
    s.on('close', () => finish('CLOSED'));
    const tick = setInterval(() => {
      if (s.writable) {
        s.write('who\n');
        asked++;
      }
    }, 100);
    const end = setTimeout(() => finish(null), ms);
  });
}

async function load(host: string, port: number, ms: number, holdN: number, timeoutMs: number): Promise<LoadReport> {
  const held = Promise.all(Array.from({ length: holdN }, () => hold(host, port, ms)));
  const pending: Array<Promise<RequestResult>> = [];
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    pending.push(request(host, port, timeoutMs));
    await new Promise((r) => setTimeout(r, 50));
  }
  return { requests: await Promise.all(pending), held: await held };
}

const [mode, ...a] = process.argv.slice(2);
if (mode === 'server') {
  const [name, port] = a as [string, string];
  createServer((s) => {
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d) => {
      buf += String(d);
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        buf = buf.slice(i + 1);
        s.write(`${name}\n`);
      }
    });
  }).listen(Number(port), '0.0.0.0', () => process.stderr.write('listening\n'));
} else if (mode === 'ask') {
  const [host, port, timeoutMs] = a as [string, string, string?];
  void request(host, Number(port), Number(timeoutMs ?? 2000)).then((r) => process.stdout.write(JSON.stringify(r) + '\n'));
} else if (mode === 'netpol') {
  const [name, ports] = a as [string, string];
  netpol(name, ports.split(',').map(Number));
} else if (mode === 'load') {
  const [host, port, ms, holdN, timeoutMs] = a as [string, string, string, string, string];
  void load(host, Number(port), Number(ms), Number(holdN), Number(timeoutMs)).then((r) => process.stdout.write(JSON.stringify(r) + '\n'));
}
