// L7 HTTP policy through the agent's proxy, on a 2-cluster testbed: method /
// path / header rules allow and deny as written, for clients in the same
// cluster, on the same node and in another cluster; denied requests get 403
// and a flow record carrying the client's identity; keep-alive, pipelining and
// chunked bodies work through the proxy; L3/L4 still stops other pods. Fails
// closed: HTTP/2 (preface or h2c upgrade) never gets past the rules, nor an
// upgrade no rule names, nor a client's own X-Forwarded-For; targets
// are decided normalised, ambiguous ones and duplicate Hosts get 400, and
// pathological paths against regex rules answer at once.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callAgent } from '../../src/agent/client.js';
import type { Flow } from '../../src/policy/flows.js';
import { canRunNetns, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { apiL7Policy, HTTP, L7Testbed, runInNetns } from '../helpers/l7bed.js';
import { shopPod } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');
const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');

const POLICY = apiL7Policy(
  '[{ method: GET, path: "/public/.*" }, { method: POST, path: /submit, headers: ["X-Token: secret"] }, { method: GET, path: "/files/(\\\\w|-)+" }, { method: GET, path: /public/ws, headers: ["Upgrade: echo"] }]',
  `    - fromEndpoints: [{ matchLabels: { app: frontend, io.cilium.k8s.policy.cluster: c2 } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: /public/c2 }] }
`,
);

describe.skipIf(!enabled)('L7 HTTP policy through the proxy', () => {
  const bed = new L7Testbed(
    'wml7-',
    {
      name: `l${process.pid % 100000}`,
      clusters: [2, 1],
      pods: [shopPod('api', 'c1/n2', 'api'), shopPod('fe1', 'c1/n1', 'frontend'), shopPod('fe1local', 'c1/n2', 'frontend'), shopPod('other1', 'c1/n1', 'other'), shopPod('fe2', 'c2/n1', 'frontend')],
    },
    POLICY,
  );
  const pod = (n: string) => bed.pod(n);
  const node = (c: string, n: string) => bed.node(c, n);

  async function http(from: string, args: string[]): Promise<unknown> {
    const out = await runInNetns(pod(from).netns, HTTP, args);
    return out ? JSON.parse(out) : null;
  }
  const get = (from: string, path: string, ...extra: string[]) => http(from, ['req', pod('api').ip, '8080', 'GET', path, ...extra]) as Promise<{ status?: number; body?: string; error?: string }>;

  beforeAll(async () => {
    await bed.up();
    // the policy is compiled with every frontend identity (c2's included)
    await waitFor(async () => (await get('fe2', '/public/c2')).status === 200, 30_000);
  }, 180_000);

  afterAll(() => bed.down(), 60_000);

  it('allows and denies requests by method, path and header, with 403 for the denied', async () => {
    const ok = await get('fe1', '/public/index.html');
    expect(ok.status).toBe(200);
    const body = JSON.parse(ok.body!) as { pod: string; path: string; xff: string };
    expect(body).toMatchObject({ pod: 'api', path: '/public/index.html', xff: pod('fe1').ip }); // the client, behind the proxy
    expect(await get('fe1', '/private')).toEqual({ status: 403, body: 'Access denied\n' });
    expect((await http('fe1', ['req', pod('api').ip, '8080', 'POST', '/public/x'])) as { status: number }).toMatchObject({ status: 403 });
    expect((await http('fe1', ['req', pod('api').ip, '8080', 'POST', '/submit'])) as { status: number }).toMatchObject({ status: 403 });
    const posted = (await http('fe1', ['req', pod('api').ip, '8080', 'POST', '/submit', 'X-Token:secret', '--body', '200000'])) as { status: number; body: string };
    expect(posted.status).toBe(200);
    expect(JSON.parse(posted.body)).toMatchObject({ method: 'POST', bytes: 200000 }); // a chunked body, whole
  });

  it('applies to a client on the same node and across clusters, with that cluster\'s rules', async () => {
    expect((await get('fe1local', '/public/a')).status).toBe(200);
    expect((await get('fe1local', '/private')).status).toBe(403);
    expect((await get('fe2', '/public/c2')).status).toBe(200);
    // fe2 matches both rules (c1's frontend selector names no cluster, so it is c1-only by default)
    expect((await get('fe2', '/public/other')).status).toBe(403);
  });

  it('keeps L3/L4 in force: a pod no rule names is dropped before any proxy', async () => {
    expect(await get('other1', '/public/a')).toMatchObject({ error: expect.stringMatching(/TIMEOUT|ECONNRESET/) });
  });

  it('keep-alive and pipelined requests are decided one by one, in order', async () => {
    expect(await http('fe1', ['pipeline', pod('api').ip, '8080', '/public/1', '/private', '/public/2'])).toEqual([200, 403, 200]);
    expect(await http('fe2', ['keepalive', pod('api').ip, '8080', '5', '/public/c2'])).toEqual({ statuses: [200, 200, 200, 200, 200], sockets: 1 });
  });

  it('answers malformed and smuggling-shaped requests with 400 and closes; the proxy keeps serving', async () => {
    const raw = (text: string) => http('fe1', ['raw', pod('api').ip, '8080', Buffer.from(text).toString('base64')]);
    expect(await raw('POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')).toEqual({ status: 400, closed: true });
    expect(await raw('GET /public/a HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n')).toEqual({ status: 400, closed: true });
    expect(await raw(`GET /public/a HTTP/1.1\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`)).toEqual({ status: 431, closed: true });
    expect(await raw('GET /public/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toEqual({ status: 200, closed: true });
    const stats = (await callAgent(node('c1', 'n2').socket, 'GET', '/v1/status')).body as { proxy: { badRequests: number } };
    expect(stats.proxy.badRequests).toBeGreaterThanOrEqual(3);
    expect((await get('fe1', '/public/after')).status).toBe(200);
  });

  it('an upgrade a rule names (Upgrade: echo) becomes a byte tunnel; any other gets 403, even where its path is allowed', async () => {
    expect(await http('fe1', ['upgrade', pod('api').ip, '8080', '/public/ws'])).toEqual({ status: 101, echo: 'ping' });
    expect(await http('fe1', ['upgrade', pod('api').ip, '8080', '/private/ws'])).toEqual({ status: 403 });
    // review regression: GET /public/.* (no Upgrade named) let any upgrade through, and the pod's 101 made a tunnel
    expect(await http('fe1', ['upgrade', pod('api').ip, '8080', '/public/other'])).toEqual({ status: 403 });
    const raw = (text: string) => http('fe1', ['raw', pod('api').ip, '8080', Buffer.from(text).toString('base64')]);
    expect(await raw('GET /public/ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n')).toEqual({ status: 403, closed: true });
    expect((await get('fe1', '/public/ws')).status).toBe(200); // the plain request still passes its path rule
  });

  it('sends the pod X-Forwarded-For as the client\'s address alone: what the client claims is dropped', async () => {
    // review regression: the pod got the client's own value with ours appended, and rules matched the client's value
    const r = await get('fe1', '/public/xff', 'X-Forwarded-For:6.6.6.6');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body!)).toMatchObject({ xff: pod('fe1').ip });
  });

  const raw = (text: string) => http('fe1', ['raw', pod('api').ip, '8080', Buffer.from(text).toString('base64')]);
  const proxyStats = async () =>
    ((await callAgent(node('c1', 'n2').socket, 'GET', '/v1/status')).body as { proxy: { h2Refused: number; h2cIgnored: number; badRequests: number; headTimeouts: number } }).proxy;

  it('refuses HTTP/2: the prior-knowledge preface gets GOAWAY, an h2c upgrade is decided and served as HTTP/1.1', async () => {
    const before = await proxyStats();
    expect(await http('fe1', ['h2', pod('api').ip, '8080', '/admin'])).toMatchObject({ error: expect.stringMatching(/GOAWAY 13|ERR_HTTP2/) });
    expect(await http('fe1', ['h2', pod('api').ip, '8080', '/public/a'])).not.toHaveProperty('status'); // the connection, not a request
    const h2c = 'Host: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n';
    // the pod's server would answer 101 to any upgrade it saw: it sees none, and answers the request
    expect(await raw(`GET /public/a HTTP/1.1\r\n${h2c}`)).toEqual({ status: 200, closed: true });
    expect(await raw(`GET /admin HTTP/1.1\r\n${h2c}`)).toMatchObject({ status: 403 });
    const after = await proxyStats();
    expect(after.h2Refused - before.h2Refused).toBeGreaterThanOrEqual(2);
    expect(after.h2cIgnored - before.h2cIgnored).toBeGreaterThanOrEqual(2);
    expect(await http('fe1', ['upgrade', pod('api').ip, '8080', '/public/ws'])).toEqual({ status: 101, echo: 'ping' }); // WebSocket-style still tunnels
  });

  it('decides the normalised target and sends the pod that; ambiguous targets and two Hosts get 400', async () => {
    expect(await get('fe1', '/public/../admin.txt')).toMatchObject({ status: 403 });
    expect(await get('fe1', '/public/%2e%2e/admin.txt')).toMatchObject({ status: 403 });
    const served = await get('fe1', '/public/a/./../%62');
    expect(served.status).toBe(200);
    expect(JSON.parse(served.body!)).toMatchObject({ path: '/public/b' }); // what was matched is what the pod got
    expect(await raw('GET /public/..%2Fadmin.txt HTTP/1.1\r\nHost: x\r\n\r\n')).toEqual({ status: 400, closed: true });
    expect(await raw('GET /public/..%5Cadmin.txt HTTP/1.1\r\nHost: x\r\n\r\n')).toEqual({ status: 400, closed: true });
    expect(await raw('GET /public/..;/admin.txt HTTP/1.1\r\nHost: x\r\n\r\n')).toEqual({ status: 400, closed: true });
    expect(await raw('GET /public/a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n')).toEqual({ status: 400, closed: true });
    expect(await raw('GET http://y/public/a HTTP/1.1\r\nHost: x\r\n\r\n')).toEqual({ status: 400, closed: true });
  });

  it('answers long paths against regex rules at once, and keeps serving', async () => {
    const t0 = Date.now();
    expect(await get('fe1', `/files/${'a-'.repeat(5000)}!`)).toMatchObject({ status: 403 }); // 10,000 characters, backtracking bait
    expect(await get('fe1', `/files/${'a-'.repeat(5000)}`)).toMatchObject({ status: 200 });
    expect(await get('fe1', `/public/${'p'.repeat(16000)}`)).toMatchObject({ status: 200 });
    expect(Date.now() - t0).toBeLessThan(15_000); // three probe processes included (each a Node start in a netns: 0.5-1.5 s on a loaded host): a bound on hangs, not a test of the engine (this rule fails linearly even when backtracking)
    expect((await get('fe1', '/public/after')).status).toBe(200);
  });

  it('gives a trickled request head 10 s in all (408), however steadily its bytes come', async () => {
    const before = await proxyStats();
    const head = Buffer.from('GET /public/slow HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n');
    const r = (await http('fe1', ['slow', pod('api').ip, '8080', head.toString('base64'), '200'])) as { status: number; closed: boolean; ms: number };
    expect(r).toMatchObject({ status: 408, closed: true });
    expect(r.ms).toBeGreaterThan(8_500); // the deadline is kept to the second
    expect(r.ms).toBeLessThan(13_000); // one byte every 200 ms would take 18 s
    expect((await proxyStats()).headTimeouts).toBe(before.headTimeouts + 1);
    expect((await get('fe1', '/public/after-slow')).status).toBe(200);
  }, 30_000);

  it('records L7 flows (method, path, status, latency) with the client\'s identity, through observe', async () => {
    await get('fe2', '/public/denied-for-c2');
    const api = node('c1', 'n2');
    let flows: Flow[] = [];
    await waitFor(() => {
      const out = execFileSync(process.execPath, [WIREMESH, 'observe', '--socket', api.socket, '--last', '2000', '-o', 'json'], { encoding: 'utf8' });
      flows = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Flow).filter((f) => f.l7);
      return flows.some((f) => f.l7!.path === '/public/denied-for-c2');
    }, 10_000);
    const denied = flows.find((f) => f.l7!.path === '/public/denied-for-c2')!;
    expect(denied).toMatchObject({ verdict: 'DROPPED', dropReason: 'l7-policy-denied', l7: { method: 'GET', status: 403 } });
    expect(denied.source).toMatchObject({ cluster: 'c2', pod: 'fe2', namespace: 'shop' });
    const fe2Identity = ((await callAgent(node('c2', 'n1').socket, 'GET', '/v1/policy')).body as { endpoints: Array<{ endpoint: string; identity: number }> }).endpoints.find((e) => e.endpoint === 'shop/fe2')!.identity;
    expect(denied.source.identity).toBe(fe2Identity);
    const allowed = flows.find((f) => f.verdict === 'FORWARDED' && f.l7!.path === '/public/c2')!;
    expect(allowed.l7).toMatchObject({ method: 'GET', status: 200 });
    expect(allowed.l7!.latencyMs).toBeGreaterThan(0);
    expect(allowed.rule).toMatch(/api-l7:ingress\[1\]/);
    const text = execFileSync(process.execPath, [WIREMESH, 'observe', '--socket', api.socket, '--last', '2000', '--pod', 'fe2'], { encoding: 'utf8' });
    expect(text).toMatch(/HTTP GET \/public\/denied-for-c2 403 .* DROPPED \(l7-policy-denied\)/);
  });
});
