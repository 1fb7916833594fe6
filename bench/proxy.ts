/**
 * The L7 proxy's cost (npm run bench:proxy): requests/s and latency from wrk
 * in one pod to nginx in a pod on another node, three ways in one run,
 * alternating rounds:
 *   L4      port 8082: an L4 allow rule; the mesh carries the bytes
 *   L7      port 8080: an HTTP rule (GET /.*): every request parsed and decided by the agent's proxy
 *   anchor  port 8081: nginx itself as the reverse proxy in front of the same server (nginx from Debian)
 * Bar: L7 >= 50 % of L4 requests/s. Needs root, etcd, wrk and nginx;
 * PROXY_ROUNDS (3), PROXY_SECONDS (8), PROXY_CONNECTIONS (32); PROXY_CLOSE=1 sends
 * `Connection: close` (a new connection per request: the accept path, the
 * proxy's original-destination lookup included, rather than keep-alive).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execIn, ROOT, waitFor } from '../src/testbed/netns.js';
import { testbedDown, testbedUp } from '../src/testbed/testbed.js';
import { canRunTestbedBench, median } from './testbed-runs.js';

interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

/** wrk's text output: Requests/sec, the --latency distribution, socket errors and non-2xx. */
export function parseWrk(out: string): WrkResult {
  const ms = (v: string, unit: string) => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
  const pct = (p: string) => {
    const m = out.match(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm'));
    return m ? ms(m[1]!, m[2]!) : NaN;
  };
  const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? 0);
  const sock = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const non2xx = Number(out.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0);
  const errors = (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + non2xx;
  return { rps, p50ms: pct('50'), p99ms: pct('99'), errors };
}

const results: Record<string, unknown> = {};

async function main(): Promise<void> {
  if (!canRunTestbedBench('bench:proxy', ['wrk', 'nginx'])) return;
  const rounds = Number(process.env.PROXY_ROUNDS ?? 3);
  const secs = Number(process.env.PROXY_SECONDS ?? 8);
  const conns = Number(process.env.PROXY_CONNECTIONS ?? 32);
  const dir = mkdtempSync(join(tmpdir(), 'wmbx-'));
  const topo = join(dir, 'topo.yaml');
  const name = `bx${process.pid % 100000}`;
  writeFileSync(join(dir, 'policy.yaml'), `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }], rules: { http: [{ method: GET, path: "/.*" }] } }]
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8081", protocol: TCP }, { port: "8082", protocol: TCP }] }]
`);
  writeFileSync(topo, `name: ${name}
clusters:
  - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1, n2] }
pods:
  - { name: client, cluster: c1, node: n1, namespace: shop, labels: { app: client } }
  - { name: server, cluster: c1, node: n2, namespace: shop, labels: { app: server } }
manifests: { c1: [${join(dir, 'policy.yaml')}] }
`);
  writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  upstream origin { server 127.0.0.1:8082; keepalive 64; }
  server { listen 8080; listen 8082; location / { return 200 "ok\\n"; } }
  server { listen 8081; location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
`);
  const st = await testbedUp(topo);
  const client = st.pods.find((p) => p.name === 'client')!;
  const server = st.pods.find((p) => p.name === 'server')!;
  const nginx = spawn('ip', ['netns', 'exec', server.netns, 'nginx', '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
  const wrk = (port: number): WrkResult => {
    const close = process.env.PROXY_CLOSE ? ['-H', 'Connection: close'] : [];
    const r = execIn(client.netns, 'wrk', '-t2', `-c${conns}`, `-d${secs}s`, '--latency', ...close, `http://${server.ip}:${port}/`);
    return r.ok ? parseWrk(r.out) : { rps: 0, p50ms: NaN, p99ms: NaN, errors: -1 };
  };
  const kinds = [['L4', 8082], ['L7', 8080], ['nginx', 8081]] as const;
  const runs: Record<string, WrkResult[]> = { L4: [], L7: [], nginx: [] };
  try {
    await waitFor(() => execIn(client.netns, 'wrk', '-t1', '-c1', '-d1s', `http://${server.ip}:8080/`).out.includes('Requests/sec'), 30_000);
    for (let i = 0; i < rounds; i++) {
      for (const [k, port] of kinds) runs[k]!.push(wrk(port));
      console.log(`round ${i + 1}: ${kinds.map(([k]) => `${k} ${runs[k]!.at(-1)!.rps.toFixed(0)} req/s (p50 ${runs[k]!.at(-1)!.p50ms.toFixed(2)} ms, p99 ${runs[k]!.at(-1)!.p99ms.toFixed(2)} ms, errors ${runs[k]!.at(-1)!.errors})`).join(', ')}`);
    }
  } finally {
    nginx.kill('SIGTERM');
    await testbedDown(topo);
    rmSync(dir, { recursive: true, force: true });
  }
  for (const [k] of kinds) {
    const r = runs[k]!;
    results[`${k} requests/s (median)`] = Math.round(median(r.map((x) => x.rps)));
    results[`${k} p50 ms (median)`] = Math.round(median(r.map((x) => x.p50ms)) * 1000) / 1000;
    results[`${k} p99 ms (median)`] = Math.round(median(r.map((x) => x.p99ms)) * 1000) / 1000;
  }
  const ratio = (results['L7 requests/s (median)'] as number) / (results['L4 requests/s (median)'] as number);
  const anchor = (results['L7 requests/s (median)'] as number) / (results['nginx requests/s (median)'] as number);
  results['L7 / L4'] = Math.round(ratio * 1000) / 1000;
  results['L7 / nginx reverse proxy'] = Math.round(anchor * 1000) / 1000;
  console.log(`L7 through the proxy / L4: ${(ratio * 100).toFixed(1)} % of requests/s (bar: >= 50 %); L7 / nginx as reverse proxy (anchor): ${(anchor * 100).toFixed(1)} %`);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'proxy.json'), JSON.stringify({ at: new Date().toISOString(), node: process.version, connections: conns, seconds: secs, results }, null, 2) + '\n');
}

await main();
