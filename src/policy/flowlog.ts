/**
 * The policy data path's flow history (GET /v1/flows, `wiremesh observe`):
 * the native engine's flow records and the L7 proxy's request records turned
 * into Flows with their endpoints' names, labels and rules, about
 * FLOW_HISTORY of them kept, oldest first.
 */
import type { Rule } from './rules.js';
import { decodeFlows, DROP_REASONS, flowProtocol, type Flow, type FlowEndpoint } from './flows.js';
import { decodeL7Records, L7_RECORD_SIZE } from '../native/binding.js';
import { formatIP } from '../net/ip.js';

const FLOW_HISTORY = 20_000;

/** L7 records as the native proxy wrote them, enriched only when flows are read (see addL7Records). */
interface L7Batch {
  l7batch: true;
  rows: Buffer;
  text: Buffer;
  n: number;
}

/** What the history asks its data path about a record: names, rules, local identities. */
export interface FlowContext {
  readonly node: string;
  readonly cluster: string;
  /** The rule of a native rule number (PolicyDatapath.ruleNumber). */
  rule(n: number): Rule | undefined;
  /** The identity of the local endpoint holding `ip`, if one does. */
  localIdentity(ip: string): number | undefined;
  /** Names, labels and identity text of the endpoint at `ip` with `identity` (without address and port). */
  describe(ip: string, identity: number): Omit<FlowEndpoint, 'ip' | 'port'>;
  /** New flows for those who follow the history (the data path's 'flows' event). */
  emit(flows: Flow[]): void;
  /** Someone follows the history now: L7 records are enriched at once. */
  following(): boolean;
}

export class FlowLog {
  /** The flow history, oldest first: flows, and L7 batches not yet enriched. */
  private readonly log: Array<Flow | L7Batch> = [];
  private count = 0;
  /** Records the native ring dropped before they were drained. */
  lost = 0;
  /**
   * Flow endpoint text per (address, identity), without the port: labels and
   * identity text are the same for every record of a pod. Emptied (forget())
   * whenever endpoints, identities or CIDR identities change.
   */
  private readonly endpointText = new Map<string, Omit<FlowEndpoint, 'ip' | 'port'>>();

  constructor(private readonly ctx: FlowContext) {}

  /** Endpoints, identities or CIDR identities changed: names are looked up again. */
  forget(): void {
    this.endpointText.clear();
  }

  /** The native engine's drained records (docs/wire-format.md) and how many it lost. */
  addNative(records: Buffer, lost: number): void {
    this.lost += lost;
    if (records.length === 0) return;
    const out: Flow[] = [];
    for (const r of decodeFlows(records)) {
      const rule = r.rule ? this.ctx.rule(r.rule) : undefined;
      out.push({
        time: new Date(r.timeMs).toISOString(),
        verdict: r.verdict === 2 ? 'DROPPED' : 'FORWARDED',
        ...(r.verdict === 2 ? { dropReason: DROP_REASONS[r.reason] ?? String(r.reason) } : {}),
        direction: r.direction === 2 ? 'egress' : 'ingress',
        protocol: flowProtocol(r.proto),
        source: this.endpoint(r.src, r.sport, r.srcIdentity),
        destination: this.endpoint(r.dst, r.dport, r.dstIdentity),
        ...(rule ? { rule: rule.id, ruleText: rule.text } : {}),
        ...(r.flags & 2 ? { sameNode: true } : {}),
        ...(r.flags & 4 ? { proxied: true } : {}),
        node: this.ctx.node,
        cluster: this.ctx.cluster,
      });
    }
    this.add(out);
  }

  add(out: Flow[]): void {
    if (out.length === 0) return;
    for (const f of out) this.log.push(f);
    this.count += out.length;
    this.trim();
    this.ctx.emit(out);
  }

  /** Keeps about FLOW_HISTORY flows, trimming in steps of a quarter (splicing on every record cost O(history) each). */
  private trim(): void {
    if (this.count <= FLOW_HISTORY * 1.25) return;
    let drop = 0;
    while (drop < this.log.length) {
      const e = this.log[drop]!;
      const n = 'l7batch' in e ? e.n : 1;
      if (this.count - n < FLOW_HISTORY) break;
      this.count -= n;
      drop++;
    }
    this.log.splice(0, drop);
  }

  /** The flow history, oldest first (L7 batches enriched now, in place). */
  get flows(): Flow[] {
    if (this.log.some((e) => 'l7batch' in e)) {
      const all: Flow[] = [];
      for (const e of this.log) {
        if ('l7batch' in e) for (const f of this.l7Flows(e.rows, e.text)) all.push(f);
        else all.push(e);
      }
      this.log.length = 0;
      for (const f of all) this.log.push(f);
    }
    return this.log as Flow[];
  }

  /**
   * Requests the L7 proxy decided (its drain() rows). Enriching one flow record
   * per request in JavaScript cost more CPU than the proxy itself at 20k
   * requests/s, so the rows are kept as they are and enriched when someone
   * reads the history (GET /v1/flows), or at once while someone follows it.
   */
  addL7Records(rows: Buffer, text: Buffer): void {
    const n = Math.floor(rows.length / L7_RECORD_SIZE);
    if (n === 0) return;
    if (this.ctx.following()) return this.add(this.l7Flows(rows, text));
    this.log.push({ l7batch: true, rows, text, n });
    this.count += n;
    this.trim();
  }

  private l7Flows(rows: Buffer, text: Buffer): Flow[] {
    return decodeL7Records(rows, text).map((r) => {
      const dst = formatIP(r.dst);
      const rule = r.ref >= 0 ? this.ctx.rule(r.ref) : undefined;
      return {
        time: new Date(r.timeMs).toISOString(),
        verdict: r.denied ? 'DROPPED' : 'FORWARDED',
        ...(r.denied ? { dropReason: 'l7-policy-denied' } : {}),
        direction: 'ingress',
        protocol: 'TCP',
        source: this.endpoint(formatIP(r.client), r.clientPort, r.identity),
        destination: this.endpoint(dst, r.dstPort, this.ctx.localIdentity(dst) ?? 0),
        ...(rule ? { rule: rule.id, ruleText: rule.text } : {}),
        l7: { type: 'http', method: r.method, path: r.path, ...(r.host ? { host: r.host } : {}), status: r.status, latencyMs: r.latencyUs / 1000 },
        node: this.ctx.node,
        cluster: this.ctx.cluster,
      } satisfies Flow;
    });
  }

  /** A flow's endpoint: address and port with the (cached) text of its endpoint and identity. */
  endpoint(ip: string, port: number, identity: number): FlowEndpoint {
    const key = `${ip}|${identity}`;
    let base = this.endpointText.get(key);
    if (!base) {
      if (this.endpointText.size > 50_000) this.endpointText.clear();
      base = this.ctx.describe(ip, identity);
      this.endpointText.set(key, base);
    }
    return { ip, port, ...base };
  }
}
