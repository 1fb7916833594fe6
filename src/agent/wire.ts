/**
 * The agent API's answers as its clients decode them (`wiremesh observe`, the
 * dashboard): one schema per answer, so a client never trusts a cast. An
 * answer that does not decode is an error of that one agent (or line), never
 * a crash of the client. Unknown fields are kept out (zod strips them).
 */
import { z } from 'zod';
import { AgentError } from '../errors.js';
import type { Flow } from '../policy/flows.js';
import type { ServiceStatus } from '../services/datapath.js';

const flowEndpoint = z.object({
  ip: z.string(),
  port: z.number(),
  identity: z.number(),
  identityText: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  cluster: z.string().optional(),
  namespace: z.string().optional(),
  pod: z.string().optional(),
  node: z.string().optional(),
});

export const flowSchema = z.object({
  time: z.string(),
  verdict: z.enum(['FORWARDED', 'DROPPED']),
  dropReason: z.string().optional(),
  direction: z.enum(['ingress', 'egress']),
  protocol: z.string(),
  source: flowEndpoint,
  destination: flowEndpoint,
  rule: z.string().optional(),
  ruleText: z.string().optional(),
  reply: z.boolean().optional(),
  sameNode: z.boolean().optional(),
  proxied: z.boolean().optional(),
  l7: z.object({ type: z.literal('http'), method: z.string(), path: z.string(), host: z.string().optional(), status: z.number().optional(), latencyMs: z.number().optional() }).optional(),
  interface: z.string().optional(),
  node: z.string(),
  cluster: z.string(),
}) satisfies z.ZodType<Flow>;

/** The part of GET /v1/status the clients read. */
export const agentStatusSchema = z.object({
  cluster: z.string(),
  node: z.string(),
  etcdConnected: z.boolean(),
  syncedClusters: z.array(z.string()),
  endpoints: z.number(),
  localEndpoints: z.number(),
  peers: z.array(
    z.object({
      id: z.string(),
      cluster: z.string(),
      endpoint: z.string().optional(),
      lastHandshakeAgeS: z.number().nullable(),
      unreachableForS: z.number().optional(),
      rxBytes: z.number(),
      txBytes: z.number(),
    }),
  ),
  counters: z.record(z.string(), z.number()),
});
export type AgentStatusView = z.infer<typeof agentStatusSchema>;

const backendStatus = z.object({ cluster: z.string(), node: z.string(), pod: z.string(), ip: z.string(), port: z.number(), weight: z.number(), state: z.enum(['selected', 'standby', 'dead', 'over-limit']) });
export const servicesAnswerSchema = z.object({
  services: z.array(
    z.object({
      namespace: z.string(),
      name: z.string(),
      vip: z.string().optional(),
      global: z.boolean(),
      shared: z.boolean(),
      affinity: z.string(),
      clusters: z.array(z.object({ cluster: z.string(), exported: z.boolean(), rttMs: z.number().optional() })),
      ports: z.array(z.object({ name: z.string(), port: z.number(), protocol: z.string(), tableSize: z.number(), maxBackendsPerCluster: z.number().optional(), nearest: z.string().optional(), backends: z.array(backendStatus) })),
    }),
  ),
}) satisfies z.ZodType<{ services: ServiceStatus[] }>;

/** Decodes one answer (or NDJSON line); throws AgentError WM_AGENT_ANSWER saying what was wrong. */
export function decodeAnswer<T>(schema: z.ZodType<T>, text: string, what: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new AgentError('WM_AGENT_ANSWER', `${what}: not JSON`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new AgentError('WM_AGENT_ANSWER', `${what}: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}
