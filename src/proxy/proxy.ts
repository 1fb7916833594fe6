/**
 * The agent's L7 proxy (HTTP/1.1), for flows the native data path redirects
 * because an ingress rule with `toPorts[].rules.http` covers them.
 *
 * The proxy itself is native (native/src/proxy/proxy.h: its own epoll
 * threads parse, decide and forward every request; no JavaScript per
 * request) and runs in a process of its own (src/proxy/worker.ts), so a
 * fault in it cannot take the agent's WireGuard device and packet path with
 * it. This side spawns and supervises that process and is its control:
 *
 *   proxy process: an accepted connection ──▶ its original destination and
 *     source identity, asked of this agent's load balancer on a lookup
 *     channel (native/src/proxy/lookup.h; a native thread answers, no JS)
 *   proxy process: a connection for (pod, port, source identity) whose rules
 *     it has not cached in this policy generation ──▶ a `requests` message
 *   here: the endpoint's ingress rules for that identity and port
 *     (src/policy/l7.ts l7Rules, via the L7Policy) ──▶ a `rules` message
 *     ('all', the HTTP rules with their rule numbers, or null: no such
 *     endpoint, the connection is closed)
 *   policy recompiled ──▶ `invalidate`: every connection asks again before
 *     its next request, so a changed rule applies to kept-alive connections
 *   every 100 ms: L7 records (binary rows) ──▶ the flow history, enriched when
 *     read (method, path, status, latency, deciding rule) for `wiremesh observe`
 *
 * Every message from the proxy process is decoded by src/proxy/messages.ts
 * and a bad one is rejected alone (logged, counted in `rejectedMessages`).
 * Supervision: when the process exits or is killed it is logged with its
 * signal, counted (`restarts`, wiremesh_proxy_restarts_total) and started
 * again after a backoff (100 ms doubling to 10 s; back to 100 ms once a
 * process stayed up 60 s). While it is down, redirected flows reach no
 * listener and are refused (RST): nothing is let through unchecked. It dies
 * with the agent (PR_SET_PDEATHSIG, and the control channel's close).
 *
 * The source identity stays the client's: it decides the rules and the flow
 * records; the pod sees the node as the TCP peer and the client in
 * X-Forwarded-For (docs/architecture.md, the L7 section).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import type { NativeDevice, NativeL7ProxyStats, NativeL7Rules, NativeProxyLookup } from '../native/binding.js';
import { native } from '../native/binding.js';
import { parseIP } from '../net/ip.js';
import type { L7Rules } from '../policy/l7.js';
import type { Rule } from '../policy/rules.js';
import { FrameReader, jsonFrame } from './frames.js';
import { decodeProxyMessage, ProxyMessageError, type ProxyMessage, type ProxyRejectReason, type RuleRequest } from './messages.js';

/** What the proxy needs of the agent's policy state (PolicyDatapath). */
export interface L7Policy {
  l7For(dstIp: string, dstPort: number, identity: number): { endpoint: string; rules: L7Rules } | null;
  /** The number native maps and records use for a rule. */
  ruleNumber(r: Rule): number;
  /** The proxy's records (drain() rows) into the flow history. */
  addL7Records(rows: Buffer, text: Buffer): void;
  on(event: 'compiled', fn: () => void): unknown;
  off(event: 'compiled', fn: () => void): unknown;
}

/** The proxy process's state, next to its counters. */
export interface ProxyProcessStatus {
  /** The proxy process while it runs (null: down, about to be restarted). */
  pid: number | null;
  /** Listening (it said `ready`). */
  up: boolean;
  /** Times the proxy process exited or was killed and was started again. */
  restarts: number;
  lastExit?: { code: number | null; signal: string | null; at: string };
  /** Messages from the proxy process refused, by reason (messages.ts ProxyRejectReason, `frame`, `budget`). */
  rejectedMessages: Record<string, number>;
  /** The agent's answers to the proxy's original-destination lookups. */
  lookups: { answered: number; notFound: number; malformed: number };
}

/** Counters summed over every proxy process this agent ran (`active`: the running one's). */
export type ProxyStats = NativeL7ProxyStats & ProxyProcessStatus;

/** The rules for the native matcher: the same decisions as decideRequest (test/unit/l7.test.ts runs both). */
export function nativeRules(rules: L7Rules, ruleNumber: (r: Rule) => number): NativeL7Rules {
  if (rules === 'all') return 'all';
  return rules.map(({ rule, http }) => ({ ref: ruleNumber(rule), ...http }));
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
  /** A process up this long resets the delay to initialMs. */
  resetAfterMs: number;
}
export const DEFAULT_BACKOFF: Backoff = { initialMs: 100, maxMs: 10_000, resetAfterMs: 60_000 };

/** For tests: another backoff, another program than worker.js, another lookup server than the device's. */
export interface SupervisorOptions {
  backoff?: Backoff;
  workerPath?: string;
  lookup?: (dev: NativeDevice) => NativeProxyLookup;
}
/**
 * A proxy process whose messages are refused this often is killed (and
 * restarted). An honest proxy never sends a refused message; a few allow for a
 * bug without a restart loop, and each costs at most one MAX_JSON_FRAME parse.
 */
const MAX_REJECTED_PER_PROCESS = 10;
/**
 * The uid (and gid) the proxy process runs as once listening, when the agent
 * runs as root: one no other process on the node should use (docs/security.md).
 */
export const PROXY_UID = 64_999;
/** Rule answers kept per policy compile (key: address, port, identity); computing one walks the rules and identities. */
const MAX_ANSWERS_CACHED = 65_536;
/** Bytes of answers the proxy process has not read, past which it is killed (it is not reading its channel). */
const MAX_UNREAD = 64 << 20;
/** Rule requests answered per second (an honest proxy asks once per key and policy generation); beyond: refused. */
const RULE_REQUESTS_PER_S = 50_000;
const MAX_WARNED = 1024;

/** Stats that are the running process's state, not counts: never carried over a restart. */
const GAUGES: ReadonlyArray<keyof NativeL7ProxyStats> = ['active', 'maxConnections'];
const ZERO: NativeL7ProxyStats = { connections: 0, active: 0, requests: 0, denied: 0, upstreamErrors: 0, passthrough: 0, badRequests: 0, recordsLost: 0, h2Refused: 0, h2cIgnored: 0, headTimeouts: 0, bodyTimeouts: 0, limited: 0, fdExhausted: 0, acceptErrors: 0, maxConnections: 0, lookupTimeouts: 0, lookupsLimited: 0, lookupsUnsent: 0 };

/** dist/src/proxy/worker.js: next to this file when built, or under dist/ when this runs from sources (vitest). */
function workerPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'worker.js');
  return existsSync(sibling) ? sibling : join(here, '..', '..', 'dist', 'src', 'proxy', 'worker.js');
}

export class L7Proxy {
  private readonly backoff: Backoff;
  private lookup: NativeProxyLookup | undefined;
  private child: ChildProcess | undefined;
  private ready = false;
  private upSince = 0;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private delayMs: number;
  private restarts = 0;
  private lastExit: ProxyProcessStatus['lastExit'];
  private rejectedInProcess = 0;
  private readonly rejected = new Map<string, number>();
  /** Counters of the processes that are gone; `current` is the running one's latest. */
  private base: NativeL7ProxyStats = { ...ZERO };
  private current: NativeL7ProxyStats = { ...ZERO };
  private statsId = 0;
  private budgetSec = 0;
  private budgetLeft = RULE_REQUESTS_PER_S;
  private readonly statsWaiters = new Map<number, () => void>();
  private readonly onCompiled = () => {
    this.answers.clear();
    this.send({ t: 'invalidate' });
  };
  /** This compile's answers: a proxy re-asking (or asking 4096 keys a message) costs a lookup, not a rule walk each. */
  private readonly answers = new Map<string, NativeL7Rules | null>();
  /** The process whose listen-error was logged (one line per process). */
  private listenErrorLogged: ChildProcess | undefined;
  private readonly warned = new Set<string>();

  constructor(
    private readonly dev: NativeDevice,
    private readonly address: string,
    private readonly port: number,
    private readonly policy: L7Policy,
    private readonly log: Logger,
    /** Proxy threads (SO_REUSEPORT listeners) in the proxy process. */
    private readonly workers = 1,
    private readonly opts: SupervisorOptions = {},
  ) {
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.delayMs = this.backoff.initialMs;
  }

  start(): void {
    const addr = parseIP(this.address);
    // assertion: the agent passes its router address (IPv4, derived from the node's pod CIDR)
    if (!addr || addr.length !== 4) throw new Error(`L7 proxy address ${this.address}: an IPv4 address`);
    this.lookup = this.opts.lookup ? this.opts.lookup(this.dev) : new native.ProxyLookup(this.dev);
    this.dev.setProxy(addr, this.port);
    this.policy.on('compiled', this.onCompiled);
    this.spawnProcess();
  }

  /** Stops the proxy process (SIGTERM: it sends its last records; SIGKILL after 2 s) and the lookup thread. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.policy.off('compiled', this.onCompiled);
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise<void>((resolve) => c.once('close', () => resolve()));
      c.kill('SIGTERM');
      const killer = setTimeout(() => c.kill('SIGKILL'), 2000);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000).unref())]);
      clearTimeout(killer);
    }
    this.lookup?.close();
    this.lookup = undefined;
  }

  /** The proxy process's pid while it runs. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get stats(): ProxyStats {
    const sum = { ...ZERO };
    for (const k of Object.keys(ZERO) as Array<keyof NativeL7ProxyStats>) sum[k] = this.base[k] + (this.child ? this.current[k] : 0);
    for (const k of GAUGES) sum[k] = this.child ? this.current[k] : 0;
    const l = this.lookup?.stats();
    return {
      ...sum,
      pid: this.pid,
      up: this.ready,
      restarts: this.restarts,
      ...(this.lastExit ? { lastExit: this.lastExit } : {}),
      rejectedMessages: Object.fromEntries(this.rejected),
      lookups: { answered: l?.answered ?? 0, notFound: l?.notFound ?? 0, malformed: l?.malformed ?? 0 },
    };
  }

  /** Asks the running proxy process for its counters now (the status API's reads are then exact); at most timeoutMs. */
  async refreshStats(timeoutMs = 500): Promise<void> {
    if (!this.child || !this.ready) return;
    const id = (this.statsId = (this.statsId + 1) % 0xffffffff);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.statsWaiters.delete(id);
        resolve();
      }, timeoutMs);
      this.statsWaiters.set(id, () => {
        clearTimeout(t);
        resolve();
      });
      this.send({ t: 'stats', id });
    });
  }

  private send(msg: unknown): void {
    const ctl = this.child?.stdio[3] as Socket | undefined;
    if (!ctl || ctl.destroyed) return;
    if (ctl.writableLength > MAX_UNREAD) {
      this.log.error({ pid: this.child?.pid, unread: ctl.writableLength }, 'L7 proxy process does not read its control channel: killing it');
      ctl.destroy();
      this.child?.kill('SIGKILL');
      return;
    }
    ctl.write(jsonFrame(msg));
  }

  /** Takes n from this second's rule-request budget; false when it is spent. */
  private budget(n: number): boolean {
    const sec = Math.floor(Date.now() / 1000);
    if (sec !== this.budgetSec) {
      this.budgetSec = sec;
      this.budgetLeft = RULE_REQUESTS_PER_S;
    }
    if (n > this.budgetLeft) return false;
    this.budgetLeft -= n;
    return true;
  }

  private spawnProcess(): void {
    this.restartTimer = undefined;
    if (this.stopping || !this.lookup) return;
    const fds: number[] = [];
    try {
      for (let i = 0; i < this.workers; i++) fds.push(this.lookup.pair());
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      this.log.error({ err: (err as Error).message }, 'L7 proxy: no lookup channel; retrying');
      return this.scheduleRestart();
    }
    const config = { address: this.address, port: this.port, workers: this.workers, parentPid: process.pid, ...(process.getuid?.() === 0 ? { uid: PROXY_UID } : {}) };
    // No execArgv: the agent's --inspect and the like are not the proxy's.
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [this.opts.workerPath ?? workerPath(), JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'pipe', ...fds] });
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'L7 proxy process: spawn failed; retrying');
      return this.scheduleRestart();
    } finally {
      for (const fd of fds) closeSync(fd); // the child has its own copies (a dead child's close ends the channels)
    }
    // EMFILE and the like: Node reports them as 'error' and leaves no stdio
    if (!child.stdio?.[3]) {
      this.log.error('L7 proxy process: spawn failed (no control channel); retrying');
      child.once('error', () => undefined);
      child.kill('SIGKILL');
      return this.scheduleRestart();
    }
    this.child = child;
    this.ready = false;
    this.current = { ...ZERO };
    this.rejectedInProcess = 0;
    const reader = new FrameReader();
    const ctl = child.stdio[3] as Socket;
    ctl.on('data', (chunk: Buffer) => {
      if (this.child !== child) return;
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (err) {
        // a length out of bounds: the stream cannot be read on; the process goes, and restarts
        this.reject('frame', (err as Error).message);
        ctl.destroy();
        child.kill('SIGKILL');
        return;
      }
      for (const f of frames) {
        let m: ProxyMessage;
        try {
          m = decodeProxyMessage(f);
        } catch (err) {
          if (!(err instanceof ProxyMessageError)) throw err;
          this.reject(err.reason, err.detail);
          if (this.rejectedInProcess > MAX_REJECTED_PER_PROCESS) {
            child.kill('SIGKILL');
            return;
          }
          continue;
        }
        this.handle(m);
      }
    });
    ctl.on('error', () => undefined); // the exit handler decides
    // 'close', not 'exit': the control channel is read to its end first (a stopping process's last records)
    child.once('close', (code, signal) => this.exited(child, code, signal));
    child.once('error', (err) => {
      this.log.error({ err: err.message }, 'L7 proxy process: spawn failed');
      if (child.pid === undefined) this.exited(child, null, null);
    });
  }

  private handle(m: ProxyMessage): void {
    switch (m.t) {
      case 'ready':
        // once per process: a repeat is not something an honest proxy sends (nor a reason to log again)
        if (this.ready) return this.reject('schema', 'ready sent twice');
        this.ready = true;
        this.upSince = Date.now();
        this.log.info({ address: this.address, port: this.port, workers: this.workers, pid: this.child?.pid }, 'L7 proxy listening');
        return;
      case 'listen-error':
        if (this.listenErrorLogged === this.child) return this.reject('schema', 'listen-error sent twice');
        this.listenErrorLogged = this.child;
        this.log.error({ code: m.code, err: m.message, address: this.address, port: this.port }, 'L7 proxy process cannot listen');
        return;
      case 'requests':
        // an honest proxy asks once per key and generation, far below this: one over it is not served
        if (!this.budget(m.requests.length)) return this.reject('budget', `${m.requests.length} rule requests over ${RULE_REQUESTS_PER_S}/s`);
        for (const r of m.requests) this.answer(r);
        return;
      case 'warnings':
        for (const w of m.warnings)
          if (!this.warned.has(w) && this.warned.size < MAX_WARNED) {
            this.warned.add(w);
            this.log.warn({ warning: w }, 'L7 rule pattern the proxy cannot compile: its rule matches nothing');
          }
        return;
      case 'stats':
        // once per episode: the counter moves when accepting pauses after a success, not per failed accept
        if (m.stats.fdExhausted > this.current.fdExhausted)
          this.log.warn({ pid: this.child?.pid, active: m.stats.active, maxConnections: m.stats.maxConnections, episodes: this.base.fdExhausted + m.stats.fdExhausted }, 'L7 proxy out of descriptors: accepting paused until a connection closes (1 s retries)');
        this.current = m.stats;
        if (m.id !== undefined) {
          this.statsWaiters.get(m.id)?.();
          this.statsWaiters.delete(m.id);
        }
        return;
      case 'records':
        this.policy.addL7Records(m.rows, m.text);
        return;
    }
  }

  /** The proxy waits for rules: compute them for the key it asked about. */
  private answer(req: RuleRequest): void {
    const key = `${req.address}:${req.port}:${req.identity}`;
    let rules = this.answers.get(key);
    if (rules === undefined) {
      const decided = this.policy.l7For(req.address, req.port, req.identity);
      rules = decided ? nativeRules(decided.rules, (r) => this.policy.ruleNumber(r)) : null;
      if (this.answers.size >= MAX_ANSWERS_CACHED) this.answers.clear();
      this.answers.set(key, rules);
    }
    this.send({ t: 'rules', req, rules });
  }

  private reject(reason: ProxyRejectReason | 'frame' | 'budget', detail: string): void {
    const n = (this.rejected.get(reason) ?? 0) + 1;
    this.rejected.set(reason, n);
    this.rejectedInProcess++;
    if (n <= 20 || n % 1000 === 0) this.log.warn({ pid: this.child?.pid, reason, detail, count: n }, 'L7 proxy process: message refused');
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    for (const k of Object.keys(ZERO) as Array<keyof NativeL7ProxyStats>) if (!GAUGES.includes(k)) this.base[k] += this.current[k];
    this.child = undefined;
    const wasUpMs = this.ready ? Date.now() - this.upSince : 0;
    this.ready = false;
    for (const w of this.statsWaiters.values()) w();
    this.statsWaiters.clear();
    if (this.stopping) return;
    this.restarts++;
    this.lastExit = { code, signal, at: new Date().toISOString() };
    if (wasUpMs >= this.backoff.resetAfterMs) this.delayMs = this.backoff.initialMs;
    this.log.error({ pid: child.pid, code, signal, upMs: wasUpMs, restartInMs: this.delayMs, restarts: this.restarts }, 'L7 proxy process exited: restarting it (redirected flows are refused meanwhile)');
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.stopping) return;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.backoff.maxMs);
    this.restartTimer = setTimeout(() => this.spawnProcess(), delay);
    this.restartTimer.unref();
  }
}
