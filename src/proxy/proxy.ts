/**
 * The agent's L7 proxy (HTTP/1.1), for flows the native data path redirects
 * because an ingress rule with `toPorts[].rules.http` covers them.
 *
 * The proxy itself is native (native/src/proxy/proxy.h: its own epoll
 * threads parse, decide and forward every request; no JavaScript per
 * request). This side is its control:
 *
 *   native proxy: a connection for (pod, port, source identity) whose rules it
 *     has not cached in this policy generation ──▶ onRuleRequests()
 *   here: takeRequests() ──▶ the endpoint's ingress rules for that identity
 *     and port (src/policy/l7.ts l7Rules, via the L7Policy) ──▶ setRules()
 *     ('all', the HTTP rules with their rule numbers, or null: no such
 *     endpoint, the connection is closed)
 *   policy recompiled ──▶ invalidate(): every connection asks again before
 *     its next request, so a changed rule applies to kept-alive connections
 *   every 100 ms: drain() the L7 records (binary rows) ──▶ the flow history,
 *     enriched when read (method, path, status, latency, deciding rule) for
 *     `wiremesh observe`
 *
 * The source identity stays the client's: it decides the rules and the flow
 * records; the pod sees the node as the TCP peer and the client in
 * X-Forwarded-For. HTTP/2 is refused where HTTP rules apply (GOAWAY to the
 * preface, Upgrade: h2c dropped), and targets are decided normalised
 * (docs/architecture.md, the L7 section).
 */
import type { Logger } from '../log.js';
import type { NativeDevice, NativeL7Proxy, NativeL7ProxyStats, NativeL7Rules } from '../native/binding.js';
import { L7_RECORD_SIZE, native } from '../native/binding.js';
import { formatIP, parseIP } from '../net/ip.js';
import type { L7Rules } from '../policy/l7.js';
import type { Rule } from '../policy/rules.js';

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

export type ProxyStats = NativeL7ProxyStats;

/** The rules for the native matcher: the same decisions as decideRequest (test/unit/l7.test.ts runs both). */
export function nativeRules(rules: L7Rules, ruleNumber: (r: Rule) => number): NativeL7Rules {
  if (rules === 'all') return 'all';
  return rules.map(({ rule, http }) => ({ ref: ruleNumber(rule), ...http }));
}

export class L7Proxy {
  private proxy: NativeL7Proxy | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly onCompiled = () => this.proxy?.invalidate();
  private readonly warned = new Set<string>();

  constructor(
    private readonly dev: NativeDevice,
    private readonly address: string,
    private readonly port: number,
    private readonly policy: L7Policy,
    private readonly log: Logger,
    /** Proxy threads (SO_REUSEPORT listeners). */
    private readonly workers = 1,
  ) {}

  start(): void {
    const addr = parseIP(this.address);
    if (!addr || addr.length !== 4) throw new Error(`L7 proxy address ${this.address}: an IPv4 address`);
    this.proxy = new native.L7Proxy(this.dev, { address: addr, port: this.port, workers: this.workers }, () => this.answer());
    this.dev.setProxy(addr, this.port);
    this.policy.on('compiled', this.onCompiled);
    this.timer = setInterval(() => this.drain(), 100);
    this.timer.unref();
    this.log.info({ address: this.address, port: this.port, workers: this.workers }, 'L7 proxy listening');
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.policy.off('compiled', this.onCompiled);
    this.drain();
    this.proxy?.close();
    this.proxy = undefined;
  }

  get stats(): ProxyStats | undefined {
    return this.proxy?.stats();
  }

  /** The native side waits for rules: compute them for each key it asked about. */
  private answer(): void {
    const p = this.proxy;
    if (!p) return;
    for (const req of p.takeRequests()) {
      const decided = this.policy.l7For(formatIP(req.address), req.port, req.identity);
      const warnings = p.setRules(req, decided ? nativeRules(decided.rules, (r) => this.policy.ruleNumber(r)) : null);
      for (const w of warnings)
        if (!this.warned.has(w)) {
          this.warned.add(w);
          this.log.warn({ warning: w }, 'L7 rule pattern the proxy cannot compile: its rule matches nothing');
        }
    }
  }

  /** L7 records into the flow history. */
  private drain(): void {
    const p = this.proxy;
    if (!p) return;
    for (;;) {
      const { rows, text } = p.drain(4096);
      this.policy.addL7Records(rows, text);
      if (rows.length < 4096 * L7_RECORD_SIZE) return;
    }
  }
}
