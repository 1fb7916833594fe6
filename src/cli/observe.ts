/**
 * `wiremesh observe`: flow records from one or more agents (their local API
 * sockets), merged, filtered and printed as text or JSON lines.
 */
import { request } from 'node:http';
import { formatFlow, type Flow, type FlowFilter } from '../policy/flows.js';
import { decodeAnswer, flowSchema } from '../agent/wire.js';

export interface ObserveOptions extends FlowFilter {
  sockets: string[];
  follow: boolean;
  last: number;
  json: boolean;
  /** Stop after this many flows (tests, scripts). */
  max?: number;
}

function query(o: ObserveOptions): string {
  const q = new URLSearchParams();
  q.set('last', String(o.last));
  if (o.follow) q.set('follow', '1');
  for (const k of ['verdict', 'cluster', 'pod', 'namespace', 'identity', 'port'] as const) if (o[k] !== undefined) q.set(k, String(o[k]));
  return q.toString();
}

/** Streams flows to `out` until every agent stream ends (or `max` flows were printed). */
export async function observe(o: ObserveOptions, out: (line: string) => void): Promise<number> {
  let printed = 0;
  const backlog: Flow[] = [];
  const reqs: Array<ReturnType<typeof request>> = [];
  const done = (): boolean => o.max !== undefined && printed >= o.max;
  const emit = (f: Flow) => {
    if (done()) return;
    out(o.json ? JSON.stringify(f) : formatFlow(f));
    printed++;
    if (done()) for (const r of reqs) r.destroy();
  };
  await Promise.all(
    o.sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          const req = request({ socketPath: socket, path: `/v1/flows?${query(o)}` }, (res) => {
            let buf = '';
            let initial = true;
            res.setEncoding('utf8');
            res.on('data', (d: string) => {
              buf += d;
              let nl: number;
              while ((nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 1);
                if (!line) continue;
                let f: Flow;
                try {
                  f = decodeAnswer(flowSchema, line, 'flow');
                } catch (err) {
                  // an agent's error answer ({error}) or a line that does not decode: said, skipped
                  const e = /^\{"error":/.test(line) ? line : (err as Error).message;
                  process.stderr.write(`${socket}: ${e}\n`);
                  continue;
                }
                // the history of every agent is merged by time before live flows
                if (initial && !o.follow) backlog.push(f);
                else emit(f);
              }
            });
            res.on('end', () => {
              initial = false;
              resolve();
            });
            res.on('close', () => resolve());
          });
          req.on('error', (err) => {
            process.stderr.write(`${socket}: ${err.message}\n`);
            resolve();
          });
          reqs.push(req);
          req.end();
        }),
    ),
  );
  backlog.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  for (const f of backlog.slice(-o.last)) emit(f);
  return printed;
}
