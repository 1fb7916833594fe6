/**
 * The L7 proxy process: `node dist/src/proxy/worker.js '<config JSON>'`,
 * spawned and supervised by the agent (src/proxy/proxy.ts), never run by hand.
 * It loads the addon and runs only the native L7 proxy (no device, no packet
 * path), so a fault in HTTP parsing or forwarding kills this process, not the
 * agent's tunnel.
 *
 *   fd 3: the control channel to the agent (frames.ts, messages.ts): rule
 *     requests out, rules and invalidations in, L7 records out every 100 ms,
 *     counters out every 100 ms and when asked
 *   fds 4..: one lookup channel per worker (native/src/proxy/lookup.h)
 *
 * It dies with the agent: PR_SET_PDEATHSIG (SIGKILL), and it exits when the
 * control channel closes. Config: { address, port, workers, parentPid }.
 */
import { Socket } from 'node:net';
import { z } from 'zod';
import { native, L7_RECORD_SIZE } from '../native/binding.js';
import { parseIP } from '../net/ip.js';
import { FrameReader, jsonFrame, recordsFrame } from './frames.js';
import { decodeAgentMessage, MAX_RECORDS_PER_FRAME, MAX_RULE_REQUESTS, MAX_WARNINGS } from './messages.js';

const CONTROL_FD = 3;
const FIRST_LOOKUP_FD = 4;
/** Bytes queued for the agent above which records stay in the native queue. */
const MAX_UNSENT = 32 << 20;

/** The agent's config argument; `uid`: the uid and gid to run as once listening (PROXY_UID when the agent is root). */
const workerConfig = z.object({
  address: z.string(),
  port: z.number().int().min(1).max(65535),
  workers: z.number().int().min(1).max(64),
  parentPid: z.number().int().positive(),
  uid: z.number().int().positive().optional(),
});
type WorkerConfig = z.infer<typeof workerConfig>;

function fail(msg: string): never {
  process.stderr.write(`wiremesh proxy: ${msg}\n`);
  process.exit(2);
}

/**
 * Everything this process needs is open (the addon, its modules, the
 * listening sockets, its channels): from here on it runs as a uid of its own,
 * without the agent's capabilities, files (WireGuard and etcd keys) or the
 * right to trace it, and nothing else can join its SO_REUSEPORT group. glibc
 * changes the ids of every thread, the native proxy's included. A change of
 * ids clears the parent-death signal: set again, and the parent checked again.
 */
function dropPrivileges(uid: number, parentPid: number): void {
  try {
    process.setgroups!([]);
    process.setgid!(uid);
    process.setuid!(uid);
  } catch (err) {
    fail(`cannot drop privileges to uid ${uid}: ${(err as Error).message}`);
  }
  native.setParentDeathSignal(9);
  if (process.ppid !== parentPid) process.exit(0);
}

function main(): void {
  native.setParentDeathSignal(9); // SIGKILL
  let cfg: WorkerConfig;
  try {
    cfg = workerConfig.parse(JSON.parse(process.argv[2] ?? ''));
  } catch {
    fail('usage: worker.js <config JSON> (spawned by the agent)');
  }
  // the agent died before the death signal was set: nobody to serve
  if (process.ppid !== cfg.parentPid) process.exit(0);
  const addr = parseIP(cfg.address);
  if (!addr || addr.length !== 4) fail(`address ${cfg.address}: not IPv4`);

  const control = new Socket({ fd: CONTROL_FD, readable: true, writable: true });
  const send = (b: Buffer) => control.write(b);
  control.on('close', () => process.exit(0));
  control.on('error', () => process.exit(0));

  let proxy: ReturnType<typeof start>;
  function start() {
    const lookupFds = Array.from({ length: cfg.workers }, (_, i) => FIRST_LOOKUP_FD + i);
    return new native.L7Proxy({ address: addr!, port: cfg.port, workers: cfg.workers, lookupFds }, () => {
      const reqs = proxy.takeRequests();
      for (let i = 0; i < reqs.length; i += MAX_RULE_REQUESTS)
        send(jsonFrame({ t: 'requests', requests: reqs.slice(i, i + MAX_RULE_REQUESTS).map((r) => ({ address: [...r.address].join('.'), port: r.port, identity: r.identity, generation: r.generation })) }));
    });
  }
  try {
    proxy = start();
  } catch (err) {
    const e = err as Error & { code?: string };
    send(jsonFrame({ t: 'listen-error', code: String(e.code ?? 'ERR'), message: e.message.slice(0, 1024) }));
    control.end(() => process.exit(3));
    return;
  }
  if (cfg.uid !== undefined) dropPrivileges(cfg.uid, cfg.parentPid);
  send(jsonFrame({ t: 'ready', pid: process.pid, workers: cfg.workers }));

  const reader = new FrameReader();
  control.on('data', (chunk: Buffer) => {
    for (const f of reader.push(chunk)) {
      const m = decodeAgentMessage(f); // the agent is trusted: a message that does not decode is a bug, and ends us
      if (m.t === 'invalidate') proxy.invalidate();
      else if (m.t === 'stats') send(jsonFrame({ t: 'stats', id: m.id, stats: proxy.stats() }));
      else {
        const warnings = proxy.setRules({ address: Buffer.from(parseIP(m.req.address)!), port: m.req.port, identity: m.req.identity, generation: m.req.generation }, m.rules);
        if (warnings.length) send(jsonFrame({ t: 'warnings', warnings: warnings.slice(0, MAX_WARNINGS).map((w) => w.slice(0, 1024)) }));
      }
    }
  });

  // Records and counters every 100 ms; a frame holds at most 512 records (frames.ts MAX_FRAME). While the
  // agent is not reading, records wait in the native queue (65,536, then counted as lost), not here.
  const flush = () => {
    while (control.writableLength < MAX_UNSENT) {
      const { rows, text } = proxy.drain(MAX_RECORDS_PER_FRAME);
      if (rows.length) send(recordsFrame(rows, text));
      if (rows.length < MAX_RECORDS_PER_FRAME * L7_RECORD_SIZE) break;
    }
  };
  setInterval(() => {
    flush();
    send(jsonFrame({ t: 'stats', stats: proxy.stats() }));
  }, 100);

  // The agent stops us: the last records go out, then we exit.
  process.on('SIGTERM', () => {
    proxy.close();
    flush();
    send(jsonFrame({ t: 'stats', stats: proxy.stats() }));
    control.end(() => process.exit(0));
  });
}

main();
