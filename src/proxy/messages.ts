/**
 * Messages on the control channel between the agent and its L7 proxy process
 * (framing: src/proxy/frames.ts). The proxy process parses what pods send, so
 * it is the less trusted side: everything the agent receives from it is
 * decoded here, once, and a message that does not fit is rejected alone
 * (ProxyMessageError: the supervisor logs it with its reason, counts it and
 * goes on). What the agent sends the proxy is typed too (decodeAgentMessage).
 *
 * proxy ──▶ agent (JSON frames unless noted)
 *   ready      { t, pid, workers }                 listening; lookups may start
 *   listen-error { t, code, message }              cannot listen (it exits)
 *   requests   { t, requests: [{ address, port, identity, generation }] }   rules wanted (<= 4096)
 *   warnings   { t, warnings: string[] }           patterns RE2 refused (<= 64)
 *   stats      { t, id?, stats }                   counters; id answers a stats request
 *   records frame: 56-byte rows + their text (<= 512 rows, every row's text inside the frame)
 * agent ──▶ proxy
 *   rules      { t, req, rules: 'all' | [...] | null }
 *   invalidate { t }                               policy changed
 *   stats      { t, id }                           send your counters now
 */
import { z } from 'zod';
import { ProxyMessageError, type ProxyRejectReason } from '../errors.js';
import { L7_RECORD_SIZE, type NativeL7ProxyStats, type NativeL7Rules } from '../native/binding.js';
import { formatIP, parseIP } from '../net/ip.js';
import { FRAME_JSON, FRAME_RECORDS, type Frame } from './frames.js';

export const MAX_RULE_REQUESTS = 4096;
export const MAX_RECORDS_PER_FRAME = 512;
export const MAX_WARNINGS = 64;
/** A JSON frame from the proxy process, in bytes. */
export const MAX_JSON_FRAME = 1 << 20;

export type { ProxyRejectReason };

// The class lives in the error catalogue; exported here too, next to its reasons.
export { ProxyMessageError };

const u32 = z.number().int().min(0).max(0xffffffff);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const ipv4 = z.string().max(15).refine((s) => {
  const a = parseIP(s);
  return !!a && a.length === 4 && formatIP(a) === s;
}, 'not an IPv4 address in canonical form');

const ruleRequest = z.strictObject({ address: ipv4, port: z.number().int().min(1).max(65535), identity: u32, generation: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER) });
export type RuleRequest = z.infer<typeof ruleRequest>;

const STAT_KEYS = ['connections', 'active', 'requests', 'denied', 'upstreamErrors', 'passthrough', 'badRequests', 'recordsLost', 'h2Refused', 'h2cIgnored', 'headTimeouts', 'bodyTimeouts', 'limited', 'fdExhausted', 'acceptErrors', 'maxConnections', 'lookupTimeouts', 'lookupsLimited', 'lookupsUnsent'] as const satisfies ReadonlyArray<keyof NativeL7ProxyStats>;
const stats = z.strictObject(Object.fromEntries(STAT_KEYS.map((k) => [k, count])) as Record<(typeof STAT_KEYS)[number], typeof count>);

const proxyMessage = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('ready'), pid: z.number().int().min(1).max(0x7fffffff), workers: z.number().int().min(1).max(16) }),
  z.strictObject({ t: z.literal('listen-error'), code: z.string().max(64), message: z.string().max(1024) }),
  z.strictObject({ t: z.literal('requests'), requests: z.array(ruleRequest).min(1).max(MAX_RULE_REQUESTS) }),
  z.strictObject({ t: z.literal('warnings'), warnings: z.array(z.string().max(1024)).min(1).max(MAX_WARNINGS) }),
  z.strictObject({ t: z.literal('stats'), id: u32.optional(), stats }),
]);

export type ProxyMessage = z.infer<typeof proxyMessage> | { t: 'records'; rows: Buffer; text: Buffer };

/** One frame from the proxy process, decoded and checked; throws ProxyMessageError. */
export function decodeProxyMessage(f: Frame): ProxyMessage {
  if (f.kind === FRAME_RECORDS) return decodeRecords(f.payload);
  if (f.kind !== FRAME_JSON) throw new ProxyMessageError('kind', `frame kind ${f.kind}`);
  // the largest honest message (4096 rule requests) is ~400 KiB; parsing is on the agent's event loop
  if (f.payload.length > MAX_JSON_FRAME) throw new ProxyMessageError('too-large', `${f.payload.length} bytes of JSON (at most ${MAX_JSON_FRAME})`);
  const r = proxyMessage.safeParse(parseJson(f.payload));
  if (!r.success) throw new ProxyMessageError('schema', z.prettifyError(r.error).slice(0, 300));
  return r.data;
}

function parseJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    throw new ProxyMessageError('not-json', `${b.length} bytes`);
  }
}

// Dates the flow history can print (new Date(t).toISOString() throws past this).
const MAX_TIME_MS = 8.64e15;

/**
 * A records frame: u32 rows length, rows, text. Rows are kept as they are and
 * read later (the flow history decodes them lazily), so every field a reader
 * trusts is checked here: whole rows, a printable time, text ranges inside
 * the text, denied 0 or 1.
 */
function decodeRecords(p: Buffer): ProxyMessage {
  if (p.length < 4) throw new ProxyMessageError('records', 'no rows length');
  const rowsLen = p.readUInt32LE(0);
  if (rowsLen % L7_RECORD_SIZE !== 0 || rowsLen === 0 || rowsLen > MAX_RECORDS_PER_FRAME * L7_RECORD_SIZE || 4 + rowsLen > p.length)
    throw new ProxyMessageError('records', `rows length ${rowsLen}`);
  const rows = Buffer.from(p.subarray(4, 4 + rowsLen));
  const text = p.subarray(4 + rowsLen);
  let used = 0;
  for (let o = 0, i = 0; o < rows.length; o += L7_RECORD_SIZE, i++) {
    const time = rows.readDoubleLE(o);
    if (!Number.isFinite(time) || time < 0 || time > MAX_TIME_MS) throw new ProxyMessageError('records', `row ${i}: time ${time}`);
    if (rows[o + 26]! > 1) throw new ProxyMessageError('records', `row ${i}: denied ${rows[o + 26]}`);
    const end = rows.readUInt32LE(o + 40) + rows.readUInt16LE(o + 44) + rows.readUInt16LE(o + 46) + rows.readUInt16LE(o + 48);
    if (end > text.length) throw new ProxyMessageError('records', `row ${i}: text to ${end} of ${text.length}`);
    used = Math.max(used, end);
  }
  // copies of what the rows use: the flow history keeps these, bounded by rows, so never a whole frame per record
  return { t: 'records', rows, text: Buffer.from(text.subarray(0, used)) };
}

// ---- agent ──▶ proxy ----

const headerSpec = z.strictObject({ name: z.string(), value: z.string().optional() });
const httpRule = z.strictObject({ ref: z.number().int(), method: z.string().optional(), path: z.string().optional(), host: z.string().optional(), headers: z.array(headerSpec).optional() });
const agentMessage = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('rules'), req: ruleRequest, rules: z.union([z.literal('all'), z.array(httpRule), z.null()]) }),
  z.strictObject({ t: z.literal('invalidate') }),
  z.strictObject({ t: z.literal('stats'), id: u32 }),
]);
export type AgentMessage = z.infer<typeof agentMessage>;

// The schema's rules are the native matcher's (binding.ts); this keeps the two from drifting apart.
const _rulesFit: NativeL7Rules | null = null as unknown as Extract<AgentMessage, { t: 'rules' }>['rules'];
void _rulesFit;

/** A frame from the agent (in the proxy process); throws ProxyMessageError. */
export function decodeAgentMessage(f: Frame): AgentMessage {
  if (f.kind !== FRAME_JSON) throw new ProxyMessageError('kind', `frame kind ${f.kind}`);
  const r = agentMessage.safeParse(parseJson(f.payload));
  if (!r.success) throw new ProxyMessageError('schema', z.prettifyError(r.error).slice(0, 300));
  return r.data;
}
