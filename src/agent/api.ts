/**
 * The agent's local API on a UNIX socket (HTTP/1.1, JSON), used by the testbed
 * and a CNI-style plugin:
 *   POST   /v1/endpoints                  {name, namespace, labels, ips, ports?, replace?}: ips inside the node's pod
 *                                          CIDRs; an address another endpoint holds is 409 unless replace: true;
 *                                          ports: [{name, containerPort, protocol?}] (named ports, IANA_SVC_NAME names)
 *   PATCH  /v1/endpoints/<namespace>/<name> {labels: {k: "v" | null}, overwrite?}: label changes (labels.ts); 200
 *                                          {endpoint, warnings}, 404 no such endpoint, 409 a key has a value and
 *                                          overwrite is not true
 *   DELETE /v1/endpoints/<namespace>/<name>
 *   GET    /v1/endpoints                  this node's endpoints
 *   GET    /v1/status                     peers, handshakes, sync state, counters
 *   GET    /v1/services                   services with ports, backends per cluster, health, table size
 *   GET    /v1/policy                     rules, per-endpoint enforcement, CIDR identities, warnings
 *   GET    /v1/flows?follow=1&last=N&verdict=&cluster=&pod=&identity=&port=
 *   GET    /metrics                       Prometheus exposition (src/agent/metrics.ts)
 *                                          flow records as NDJSON (follow: keep streaming)
 * Errors: 400 with {error, field} for a bad request, 409 with {error, holders}
 * for an address another endpoint holds, 404 for unknown paths.
 *
 * The client side (agentRequest, callAgent) is client.ts.
 *
 * The socket is created under umask 077 (owner only) before listen(): never
 * a moment when it exists with wider permissions (no chmod after the fact).
 */
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import { ConfigError, EndpointConflictError, LabelExistsError } from '../errors.js';
import { oneOf } from '../validate.js';
import { listenPrivate } from '../net/listen.js';
import { applyLabelPatch, validateLabelPatch } from './labels.js';
import { flowMatches, type Flow, type FlowFilter } from '../policy/flows.js';
import type { Agent } from './agent.js';
import { validateEndpoint } from './endpoint.js';



function send(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body) + '\n');
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let data = '';
  for await (const chunk of req) {
    data += chunk;
    if (data.length > 1 << 20) throw new ConfigError('(body)', 'larger than 1 MiB');
  }
  try {
    return JSON.parse(data);
  } catch {
    throw new ConfigError('(body)', 'not valid JSON');
  }
}

export function flowFilter(q: URLSearchParams): FlowFilter {
  const num = (k: string): number | undefined => {
    const v = q.get(k);
    if (v === null || v === '') return undefined;
    if (!/^\d+$/.test(v)) throw new ConfigError(k, `must be a number, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  const verdict = q.get('verdict') ?? undefined;
  if (verdict) oneOf(verdict.toUpperCase(), 'verdict', ['FORWARDED', 'DROPPED'], 'must be FORWARDED or DROPPED');
  return { verdict, cluster: q.get('cluster') ?? undefined, pod: q.get('pod') ?? undefined, namespace: q.get('namespace') ?? undefined, identity: num('identity'), port: num('port') };
}

/**
 * Bytes of flow lines a follower may leave unread in the agent (the response's buffer): past it the flows of each
 * drain (every 100 ms, up to the native ring's 16,384 records) are not sent to it but counted, and the next line it
 * gets says how many (`{"error": "N flow records not sent ..."}`, which `wiremesh observe` prints to stderr), as
 * Hubble reports lost events. That line comes with the next flow matching its filter (none sent while none match);
 * every follower's are counted in the status (`policy.flowsNotSent`) and `wiremesh_flows_not_sent_total`. Before s15 a follower that stopped reading (a paused terminal, `observe | less`) made
 * the agent buffer every flow for it: a pod's denied packets wrote ~50 MB/s into the agent's heap until it was
 * killed, and the node's data path with it.
 */
export const FOLLOW_UNREAD_BYTES = 4 << 20;

function streamFlows(agent: Agent, q: URLSearchParams, res: ServerResponse): void {
  const dp = agent.datapath;
  if (!dp) return send(res, 404, { error: 'policy is disabled on this node (policy.enabled: false)' });
  const filter = flowFilter(q);
  const last = Number(q.get('last') ?? '100');
  const follow = q.get('follow') === '1' || q.get('follow') === 'true';
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  let unsent = 0;
  const write = (flows: Flow[]) => {
    const lines = flows.filter((f) => flowMatches(f, filter)).map((f) => JSON.stringify(f) + '\n');
    if (!lines.length) return;
    if (res.writableLength > FOLLOW_UNREAD_BYTES) {
      unsent += lines.length;
      dp.flowsNotSent += lines.length;
      return;
    }
    if (unsent) lines.unshift(JSON.stringify({ error: `${unsent} flow records not sent: this follower read too slowly` }) + '\n');
    unsent = 0;
    res.write(lines.join(''));
  };
  dp.drainFlows();
  write(dp.flows.filter((f) => flowMatches(f, filter)).slice(-last));
  if (!follow) return void res.end();
  dp.on('flows', write);
  res.on('close', () => dp.off('flows', write));
}

export async function serveApi(agent: Agent, path: string): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
  if (existsSync(path)) unlinkSync(path);
  const server = createServer((req, res) => {
    void (async () => {
      try {
        const url = new URL(req.url ?? '/', 'http://agent');
        const parts = url.pathname.split('/').filter(Boolean);
        if (req.method === 'GET' && url.pathname === '/v1/status') {
          await agent.proxy?.refreshStats(); // the proxy process's counters as of now, not of its last report
          return send(res, 200, agent.status());
        }
        if (req.method === 'GET' && url.pathname === '/v1/endpoints') return send(res, 200, agent.localEndpoints());
        if (req.method === 'GET' && url.pathname === '/v1/policy') {
          if (!agent.datapath) return send(res, 404, { error: 'policy is disabled on this node (policy.enabled: false)' });
          return send(res, 200, agent.datapath.summary());
        }
        if (req.method === 'GET' && url.pathname === '/v1/services') {
          if (!agent.services) return send(res, 404, { error: 'services are off on this node (they need policy.enabled: true)' });
          return send(res, 200, { cluster: agent.cfg.cluster.name, node: agent.cfg.node.name, services: agent.services.list() });
        }
        if (req.method === 'GET' && url.pathname === '/v1/flows') return streamFlows(agent, url.searchParams, res);
        if (req.method === 'GET' && url.pathname === '/metrics') {
          const text = await agent.metrics.text();
          res.writeHead(200, { 'content-type': agent.metrics.contentType });
          return void res.end(text);
        }
        if (req.method === 'POST' && url.pathname === '/v1/endpoints') {
          const body = await readJson(req);
          const ep = validateEndpoint(body);
          await agent.addEndpoint(ep, { replace: (body as { replace?: unknown }).replace === true });
          return send(res, 201, ep);
        }
        if (req.method === 'PATCH' && parts.length === 4 && parts[0] === 'v1' && parts[1] === 'endpoints') {
          const { patch, overwrite } = validateLabelPatch(await readJson(req));
          let warnings: string[] = [];
          // applied to the labels as they are when the agent's turn comes (agent.updateEndpoint)
          const ep = await agent.updateEndpoint(parts[2]!, parts[3]!, (cur) => {
            const r = applyLabelPatch(cur.labels, patch, overwrite);
            warnings = r.warnings;
            return validateEndpoint({ ...cur, labels: r.labels });
          });
          if (!ep) return send(res, 404, { error: `no endpoint ${parts[2]}/${parts[3]} on this node` });
          return send(res, 200, { endpoint: ep, warnings });
        }
        if (req.method === 'DELETE' && parts.length === 4 && parts[0] === 'v1' && parts[1] === 'endpoints') {
          const ok = await agent.removeEndpoint(parts[2]!, parts[3]!);
          return send(res, ok ? 200 : 404, ok ? { deleted: `${parts[2]}/${parts[3]}` } : { error: 'no such endpoint' });
        }
        send(res, 404, { error: `no route for ${req.method} ${url.pathname}` });
      } catch (err) {
        if (err instanceof ConfigError) send(res, 400, { error: err.message, field: err.field });
        else if (err instanceof EndpointConflictError) send(res, 409, { error: err.message, holders: err.holders });
        else if (err instanceof LabelExistsError) send(res, 409, { error: err.message, field: `labels.${err.key}` });
        else send(res, 500, { error: (err as Error).message });
      }
    })();
  });
  await listenPrivate(server, path);
  return server;
}
