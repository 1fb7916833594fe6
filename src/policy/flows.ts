/**
 * Flow records: decoded from the data path's 72-byte records
 * (native/src/policy/flows.h), enriched by the agent with pods, clusters,
 * labels and the deciding rule, streamed by `wiremesh observe`.
 */
import { FLOW_RECORD_SIZE } from '../native/rows.js';
import { formatIP } from '../net/ip.js';
import { protocolName } from './rules.js';

export { FLOW_RECORD_SIZE };

/** Stable reason names (the numbers are in flows.h). */
export const DROP_REASONS: Record<number, string> = {
  0: '',
  1: 'policy-denied',
  2: 'policy-default-deny',
  3: 'identity-cluster-mismatch',
  4: 'source-not-in-allowed-ips',
  5: 'malformed-identity-tag',
  6: 'conntrack-full',
  7: 'fragment-without-ports',
  8: 'ipv6-extension-chain',
  9: 'transit-denied',
};

export interface FlowEndpoint {
  ip: string;
  port: number;
  identity: number;
  /** `reserved:world`, or labels without the cluster/namespace ones */
  identityText?: string;
  labels?: Record<string, string>;
  cluster?: string;
  namespace?: string;
  pod?: string;
  node?: string;
}

export interface Flow {
  time: string;
  verdict: 'FORWARDED' | 'DROPPED';
  dropReason?: string;
  direction: 'ingress' | 'egress';
  protocol: string;
  source: FlowEndpoint;
  destination: FlowEndpoint;
  /** The rule that allowed or denied it (absent: not enforced, or default deny). */
  rule?: string;
  ruleText?: string;
  reply?: boolean;
  sameNode?: boolean;
  /** The flow was handed to the L7 proxy (its requests are recorded as l7 flows). */
  proxied?: boolean;
  /** An HTTP request the proxy decided: DROPPED = answered 403. */
  l7?: { type: 'http'; method: string; path: string; host?: string; status?: number; latencyMs?: number };
  /** The pod interface the packet came in on: set for source-spoofed drops (the source is the address the pod claimed). */
  interface?: string;
  /** Where the record was made. */
  node: string;
  cluster: string;
}

export interface RawFlow {
  timeMs: number;
  verdict: number;
  reason: number;
  direction: number;
  proto: number;
  flags: number;
  sport: number;
  dport: number;
  srcIdentity: number;
  dstIdentity: number;
  rule: number;
  peer: number;
  src: string;
  dst: string;
}

export function decodeFlows(buf: Buffer): RawFlow[] {
  const out: RawFlow[] = [];
  for (let o = 0; o + FLOW_RECORD_SIZE <= buf.length; o += FLOW_RECORD_SIZE) {
    const family = buf[o + 12]!;
    const alen = family === 6 ? 16 : 4;
    out.push({
      timeMs: Number(buf.readBigUInt64LE(o)),
      verdict: buf[o + 8]!,
      reason: buf[o + 9]!,
      direction: buf[o + 10]!,
      proto: buf[o + 11]!,
      flags: buf[o + 13]!,
      sport: buf.readUInt16LE(o + 16),
      dport: buf.readUInt16LE(o + 18),
      srcIdentity: buf.readUInt32LE(o + 20),
      dstIdentity: buf.readUInt32LE(o + 24),
      rule: buf.readUInt32LE(o + 28),
      peer: buf.readUInt32LE(o + 32),
      src: family === 0 ? '' : formatIP(buf.subarray(o + 40, o + 40 + alen)),
      dst: family === 0 ? '' : formatIP(buf.subarray(o + 56, o + 56 + alen)),
    });
  }
  return out;
}

export const flowProtocol = (p: number): string => (p === 0 ? '' : protocolName(p));

export interface FlowFilter {
  verdict?: string;
  cluster?: string;
  pod?: string;
  identity?: number;
  port?: number;
  namespace?: string;
}

/** A filter matches a flow when every given field matches either side (verdict: the flow's). */
export function flowMatches(f: Flow, q: FlowFilter): boolean {
  if (q.verdict && f.verdict !== q.verdict.toUpperCase()) return false;
  const sides = [f.source, f.destination];
  if (q.cluster && !sides.some((s) => s.cluster === q.cluster)) return false;
  if (q.namespace && !sides.some((s) => s.namespace === q.namespace)) return false;
  if (q.pod) {
    const [ns, name] = q.pod.includes('/') ? q.pod.split('/') : [undefined, q.pod];
    if (!sides.some((s) => s.pod === name && (ns === undefined || s.namespace === ns))) return false;
  }
  if (q.identity !== undefined && !sides.some((s) => s.identity === q.identity)) return false;
  if (q.port !== undefined && !sides.some((s) => s.port === q.port)) return false;
  return true;
}

function side(e: FlowEndpoint): string {
  const who = e.pod ? `${e.cluster}/${e.namespace}/${e.pod}` : e.identityText ?? String(e.identity);
  const addr = e.ip.includes(':') ? `[${e.ip}]` : e.ip;
  return `${who} (${addr}${e.port ? `:${e.port}` : ''}, id ${e.identity})`;
}

/** One line, as `hubble observe` prints it. */
export function formatFlow(f: Flow): string {
  const t = f.time.slice(11, 23);
  const arrow = f.verdict === 'DROPPED' ? 'x>' : '->';
  const why = f.verdict === 'DROPPED' ? `DROPPED (${f.dropReason})` : 'FORWARDED';
  const rule = f.rule ? ` rule ${f.rule}` : '';
  const l7 = f.l7 ? ` HTTP ${f.l7.method} ${f.l7.path}${f.l7.status !== undefined ? ` ${f.l7.status}` : ''}${f.l7.latencyMs !== undefined ? ` ${f.l7.latencyMs.toFixed(1)} ms` : ''}` : f.proxied ? ' to-proxy' : '';
  return `${t} ${f.cluster}/${f.node} ${f.direction.padEnd(7)} ${side(f.source)} ${arrow} ${side(f.destination)} ${f.protocol}${l7} ${why}${rule}`;
}
