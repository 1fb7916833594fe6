/**
 * `npm run chaos [-- SCENARIO...]`: faults injected into a live 3-cluster mesh
 * (examples/demo/mesh.yaml under the name "chaos") while web1 in c1 loads the
 * global service shop/api (backends api1 on c1/n2, api2 on c2/n2, api3 on
 * c3/n1) through its VIP: a new connection every 50 ms, plus 9 long-lived
 * connections asking every 100 ms (src/chaos/probe.ts).
 *
 * Per scenario, measured from the moment the fault is injected:
 *   - recovery: until the last failed request (0 when none failed)
 *   - requests lost: requests without an answer within their timeout
 *   - established flows: long-lived connections to backends the fault did not
 *     touch must all survive (those on a killed or cut-off backend are reset
 *     by design: clients reconnect at once)
 * and a PASS/FAIL verdict against the scenario's bar. A JSON report goes to
 * bench/results/chaos.json. Needs root, etcd and nftables. `--keep` leaves the
 * mesh up afterwards.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { agentRequest } from '../agent/client.js';
import { agentStatusSchema, decodeAnswer, servicesAnswerSchema } from '../agent/wire.js';
import { addLatency } from '../testbed/latency.js';
import { canRunNetns, execIn, hasCommand, ROOT } from '../testbed/netns.js';
import { restartEtcd, startAgent, stopRole, testbedUp, type TestbedState } from '../testbed/testbed.js';
import { ownTestbed } from '../testbed/owned.js';
import { startPodServers } from '../testbed/pod.js';
import { renamedTopology } from '../testbed/topology.js';
import { TestbedError } from '../errors.js';
import type { LoadReport } from './probe.js';

const PROBE = join(ROOT, 'dist', 'src', 'chaos', 'probe.js');
/** The load probe's one JSON line (probe.ts), decoded rather than cast. */
const loadReportSchema = z.object({
  requests: z.array(z.object({ at: z.number(), ok: z.boolean(), name: z.string().optional(), error: z.string().optional() })),
  held: z.array(z.object({ name: z.string().nullable(), replies: z.number(), error: z.string().nullable(), errorAt: z.number().nullable(), maxGapMs: z.number() })),
}) satisfies z.ZodType<LoadReport>;
const BACKENDS: Record<string, { cluster: string; node: string }> = { api1: { cluster: 'c1', node: 'n2' }, api2: { cluster: 'c2', node: 'n2' }, api3: { cluster: 'c3', node: 'n1' } };
const FAULT_AT_MS = 2000;

interface Ctx {
  st: TestbedState;
  vip: string;
  node(cluster: string, node: string): TestbedState['clusters'][number]['nodes'][number];
  agentStatus(cluster: string, node: string): Promise<{ etcdConnected: boolean; peers: Array<{ id: string; lastHandshakeAgeS: number | null }> } | null>;
  handshakesCompleted(cluster: string, node: string): Promise<number>;
  waitBackends(states: Record<string, string>, ms: number): Promise<number>;
}

interface Scenario {
  name: string;
  what: string;
  /** Load duration and per-request timeout. */
  loadMs: number;
  timeoutMs: number;
  /** Backends the fault takes away (their long-lived connections may be reset). */
  affected: string[];
  /** Bar: requests may fail until recovery, which must come within this many ms; undefined: no request may fail. */
  recoveryBarMs?: number;
  /** Injects the fault at FAULT_AT_MS; resolves to an extra check (or undefined) once the fault has played out. */
  run(ctx: Ctx): Promise<{ extra?: string; ok?: boolean } | void>;
  /** After the load: bring the mesh back; returns ms until every backend is selected again from c1/n1. */
  restore?(ctx: Ctx): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function nft(netns: string, rules: string): void {
  execFileSync('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'ignore', 'pipe'] });
}

const ALL_SELECTED = { api1: 'selected', api2: 'selected', api3: 'selected' };

export const SCENARIOS: Scenario[] = [
  {
    name: 'kill-node',
    what: "SIGKILL the agent of c2/n2 (api2's node)",
    loadMs: 8000,
    timeoutMs: 1000,
    affected: ['api2'],
    recoveryBarMs: 3000,
    async run(ctx) {
      await sleep(FAULT_AT_MS);
      await stopRole(ctx.st, 'c2-n2-agent', 'SIGKILL');
    },
    async restore(ctx) {
      await startAgent(ctx.st, 'c2', 'n2');
    },
  },
  {
    name: 'kill-cluster',
    what: 'SIGKILL every agent of c3 (api3 goes with it)',
    loadMs: 8000,
    timeoutMs: 1000,
    affected: ['api3'],
    recoveryBarMs: 3000,
    async run(ctx) {
      await sleep(FAULT_AT_MS);
      await Promise.all(['n1', 'n2'].map((n) => stopRole(ctx.st, `c3-${n}-agent`, 'SIGKILL')));
    },
    async restore(ctx) {
      for (const n of ['n1', 'n2']) await startAgent(ctx.st, 'c3', n);
    },
  },
  {
    name: 'partition',
    what: 'nftables drops everything between the underlays of c1 and c2 for 4 s, then heals',
    loadMs: 10_000,
    timeoutMs: 1000,
    affected: ['api2'],
    recoveryBarMs: 3000,
    async run(ctx) {
      await sleep(FAULT_AT_MS);
      const rules = 'table ip wmchaos {\n chain in { type filter hook input priority 0; ip saddr 198.18.2.0/24 drop; }\n chain out { type filter hook output priority 0; ip daddr 198.18.2.0/24 drop; }\n}\n';
      for (const n of ['n1', 'n2']) nft(ctx.node('c1', n).netns, rules);
      await sleep(4000);
      for (const n of ['n1', 'n2']) execIn(ctx.node('c1', n).netns, 'nft', 'delete', 'table', 'ip', 'wmchaos');
    },
  },
  {
    name: 'loss',
    what: "nftables drops 5 % of c1/n1's WireGuard packets at random, both ways, for 5 s",
    loadMs: 9000,
    timeoutMs: 5000,
    affected: [],
    async run(ctx) {
      await sleep(FAULT_AT_MS);
      const rules = 'table ip wmchaos {\n chain in { type filter hook input priority 0; udp dport 51820 numgen random mod 100 < 5 drop; }\n chain out { type filter hook output priority 0; udp dport 51820 numgen random mod 100 < 5 drop; }\n}\n';
      nft(ctx.node('c1', 'n1').netns, rules);
      await sleep(5000);
      execIn(ctx.node('c1', 'n1').netns, 'nft', 'delete', 'table', 'ip', 'wmchaos');
    },
  },
  {
    name: 'reorder',
    what: "a quarter of c1/n1's packets to c3 take a 5 ms detour (a delay line), for 5 s: they arrive out of order",
    loadMs: 9000,
    timeoutMs: 5000,
    affected: [],
    async run(ctx) {
      await sleep(FAULT_AT_MS);
      const remove = await addLatency(ctx.st, 'c1', 'n1', 'c3', 5, 0.25);
      await sleep(5000);
      await remove();
    },
  },
  {
    name: 'etcd-loss',
    what: "SIGKILL c1's etcd for 4 s, then restart it on its data",
    loadMs: 8000,
    timeoutMs: 1000,
    affected: [],
    async run(ctx) {
      await sleep(FAULT_AT_MS);
      await stopRole(ctx.st, 'c1-etcd', 'SIGKILL');
      await sleep(4000);
      await restartEtcd(ctx.st, 'c1');
      const t0 = Date.now();
      for (;;) {
        const s = await Promise.all(['n1', 'n2'].map((n) => ctx.agentStatus('c1', n)));
        if (s.every((x) => x?.etcdConnected)) return { extra: `c1's agents reconnected to etcd ${((Date.now() - t0) / 1000).toFixed(1)} s after its restart`, ok: true };
        if (Date.now() - t0 > 20_000) return { extra: "c1's agents not reconnected to etcd 20 s after its restart", ok: false };
        await sleep(200);
      }
    },
  },
  {
    name: 'agent-restart',
    what: "restart the agent of c1/n1 (the client's node) under load: SIGTERM, start again",
    loadMs: 12_000,
    timeoutMs: 1000,
    affected: [],
    recoveryBarMs: 8000,
    async run(ctx) {
      await sleep(FAULT_AT_MS);
      const t0 = Date.now();
      await stopRole(ctx.st, 'c1-n1-agent', 'SIGTERM');
      await startAgent(ctx.st, 'c1', 'n1');
      return { extra: `agent down and up again in ${((Date.now() - t0) / 1000).toFixed(1)} s` };
    },
  },
  {
    name: 'rekey',
    what: "load across c1/n1's sessions while they pass RekeyAfterTime (120 s) and rekey",
    loadMs: 25_000,
    timeoutMs: 1000,
    affected: [],
    async run(ctx) {
      const before = await ctx.handshakesCompleted('c1', 'n1');
      await sleep(24_000);
      const after = await ctx.handshakesCompleted('c1', 'n1');
      return { extra: `${after - before} handshake(s) completed on c1/n1 during the load`, ok: after > before };
    },
  },
];

const agentGet = async (socket: string, path: string): Promise<string> => (await agentRequest(socket, 'GET', path, undefined, 2000)).text;

function runLoad(st: TestbedState, vip: string, ms: number, timeoutMs: number): Promise<LoadReport> {
  const web1 = st.pods.find((p) => p.name === 'web1')!;
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', web1.netns, process.execPath, PROBE, 'load', vip, '80', String(ms), '9', String(timeoutMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += String(d)));
    p.once('exit', () => {
      try {
        resolve(decodeAnswer(loadReportSchema, out, 'load probe'));
      } catch (err) {
        reject(new Error(`load probe printed no report (${(err as Error).message}): ${out.slice(0, 200)}`));
      }
    });
  });
}

export interface ScenarioResult {
  name: string;
  what: string;
  pass: boolean;
  recoveryMs: number;
  requests: number;
  lost: number;
  held: { healthy: number; intact: number; onAffected: number; maxStallMs: number };
  restoredMs?: number;
  extra?: string;
  failures: string[];
}

export function evaluate(s: Pick<Scenario, 'name' | 'what' | 'affected' | 'recoveryBarMs'>, report: LoadReport, faultAt: number, extra?: { extra?: string; ok?: boolean } | void): ScenarioResult {
  const after = report.requests.filter((r) => r.at >= faultAt);
  const failed = after.filter((r) => !r.ok);
  const lostBefore = report.requests.filter((r) => r.at < faultAt && !r.ok).length;
  const recoveryMs = failed.length ? Math.max(...failed.map((r) => r.at)) - faultAt : 0;
  const healthy = report.held.filter((h) => h.name !== null && !s.affected.includes(h.name));
  const intact = healthy.filter((h) => h.error === null);
  const failures: string[] = [];
  if (lostBefore) failures.push(`${lostBefore} request(s) failed before the fault`);
  if (report.held.some((h) => h.name === null)) failures.push('a long-lived connection never got an answer');
  if (intact.length < healthy.length) failures.push(`${healthy.length - intact.length} established flow(s) to healthy backends broke (${healthy.filter((h) => h.error).map((h) => `${h.name}: ${h.error}${h.errorAt ? ` at ${h.errorAt - faultAt} ms` : ''}`).join(', ')})`);
  if (s.recoveryBarMs === undefined && failed.length) failures.push(`${failed.length} request(s) lost (bar: none)`);
  if (s.recoveryBarMs !== undefined && recoveryMs > s.recoveryBarMs) failures.push(`recovery took ${recoveryMs} ms (bar: ${s.recoveryBarMs} ms)`);
  if (extra && extra.ok === false) failures.push(extra.extra ?? 'scenario check failed');
  return {
    name: s.name,
    what: s.what,
    pass: failures.length === 0,
    recoveryMs,
    requests: after.length,
    lost: failed.length,
    held: { healthy: healthy.length, intact: intact.length, onAffected: report.held.length - healthy.length, maxStallMs: Math.max(0, ...intact.map((h) => h.maxGapMs)) },
    ...(extra?.extra ? { extra: extra.extra } : {}),
    failures,
  };
}

function line(r: ScenarioResult): string {
  const held = `established flows to healthy backends ${r.held.intact}/${r.held.healthy} intact (longest stall ${r.held.maxStallMs} ms)${r.held.onAffected ? `, ${r.held.onAffected} on the faulted backend` : ''}`;
  const rec = r.lost ? `recovered in ${(r.recoveryMs / 1000).toFixed(2)} s` : 'no request failed';
  return [
    `${r.pass ? 'PASS' : 'FAIL'}  ${r.name.padEnd(13)} ${r.what}`,
    `      ${rec}; ${r.lost} of ${r.requests} requests lost; ${held}${r.restoredMs !== undefined ? `; every backend selected again ${(r.restoredMs / 1000).toFixed(1)} s after restore` : ''}`,
    ...(r.extra ? [`      ${r.extra}`] : []),
    ...r.failures.map((f) => `      !! ${f}`),
  ].join('\n');
}

async function main(): Promise<number> {
  if (!canRunNetns() || !hasCommand('etcd') || !hasCommand('nft')) {
    console.error('npm run chaos needs root, etcd and nftables (bash scripts/setup.sh installs them)');
    return 1;
  }
  const keep = process.argv.includes('--keep'); // leave the mesh up afterwards (to look around; `wiremesh testbed down` it)
  const wanted = process.argv.slice(2).filter((a) => a !== '--keep');
  const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.name === w));
  if (unknown.length) {
    console.error(`unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
    return 1;
  }
  const chosen = wanted.length ? SCENARIOS.filter((s) => wanted.includes(s.name)) : SCENARIOS;
  const t0 = Date.now();
  const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
  const dir = mkdtempSync(join(tmpdir(), 'wmchaos-'));
  const file = renamedTopology(join(ROOT, 'examples', 'demo', 'mesh.yaml'), 'chaos', dir);
  const results: ScenarioResult[] = [];
  const { servers, teardown } = ownTestbed(file, { after: () => rmSync(dir, { recursive: true, force: true }) });
  try {
    console.log(`${stamp()} building the mesh (3 clusters x 2 nodes, global service shop/api with a backend per cluster)`);
    const st = await testbedUp(file, (m) => console.log(`${stamp()}    ${m}`));
    const backends = Object.keys(BACKENDS).map((name) => st.pods.find((x) => x.name === name)!);
    servers.push(...(await startPodServers(backends, (p) => [PROBE, 'server', p.name, '8080'])));
    const node = (c: string, n: string) => st.clusters.find((x) => x.name === c)!.nodes.find((x) => x.name === n)!;
    const c1n1 = node('c1', 'n1');
    const services = async () => {
      const body = decodeAnswer(servicesAnswerSchema, await agentGet(c1n1.socket, '/v1/services'), 'GET /v1/services');
      return body.services.find((s) => s.name === 'api');
    };
    const ipName = new Map(Object.keys(BACKENDS).map((n) => [st.pods.find((p) => p.name === n)!.ip, n]));
    const ctx: Ctx = {
      st,
      vip: '',
      node,
      async agentStatus(c, n) {
        return agentGet(node(c, n).socket, '/v1/status').then((t) => decodeAnswer(agentStatusSchema, t, 'GET /v1/status')).catch(() => null);
      },
      async handshakesCompleted(c, n) {
        const m = await agentGet(node(c, n).socket, '/metrics').catch(() => '');
        return Number(m.match(/^wiremesh_handshakes_total\{result="completed"[^}]*\} (\d+)/m)?.[1] ?? 0);
      },
      async waitBackends(states, ms) {
        const start = Date.now();
        for (;;) {
          const svc = await services().catch(() => undefined);
          const now = Object.fromEntries((svc?.ports[0]?.backends ?? []).map((b) => [ipName.get(b.ip) ?? b.ip, b.state]));
          if (Object.entries(states).every(([k, v]) => now[k] === v)) return Date.now() - start;
          if (Date.now() - start > ms) throw new TestbedError('WM_TESTBED_TIMEOUT', `backends seen from c1/n1: ${JSON.stringify(now)}, want ${JSON.stringify(states)}`);
          await sleep(100);
        }
      },
    };
    await ctx.waitBackends(ALL_SELECTED, 30_000);
    ctx.vip = (await services())!.vip!;
    console.log(`${stamp()} shop/api VIP ${ctx.vip} from c1; backends api1 (c1/n2), api2 (c2/n2), api3 (c3/n1); client web1 on c1/n1`);
    for (const s of chosen) {
      if (s.name === 'rekey') {
        // start the load ~15 s before the oldest of c1/n1's sessions reaches 120 s
        const st1 = await ctx.agentStatus('c1', 'n1');
        const oldest = Math.max(0, ...(st1?.peers ?? []).map((p) => p.lastHandshakeAgeS ?? 0));
        const wait = Math.max(0, 105 - oldest);
        console.log(`${stamp()} rekey: c1/n1's oldest session is ${oldest} s old; waiting ${wait} s before the load`);
        await sleep(wait * 1000);
      }
      console.log(`${stamp()} ${s.name}: ${s.what}`);
      const load = runLoad(st, ctx.vip, s.loadMs, s.timeoutMs);
      const faultAt = Date.now() + (s.name === 'rekey' ? 0 : FAULT_AT_MS);
      const extra = await s.run(ctx);
      const report = await load;
      const r = evaluate(s, report, faultAt, extra);
      if (s.restore) await s.restore(ctx);
      r.restoredMs = await ctx.waitBackends(ALL_SELECTED, 30_000).catch((err: Error) => {
        r.pass = false;
        r.failures.push(`not restored: ${err.message}`);
        return undefined;
      });
      results.push(r);
      console.log(line(r));
    }
  } catch (err) {
    console.error(`chaos run failed: ${(err as Error).message}`);
    await teardown();
    return 1;
  }
  if (keep) {
    for (const s of servers) s.unref();
    console.log(`the mesh stays up: node bin/wiremesh.js testbed down ${file}`);
  } else await teardown();
  const passed = results.filter((r) => r.pass).length;
  console.log(`\n${passed}/${results.length} scenarios passed in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'chaos.json'), JSON.stringify({ at: new Date().toISOString(), node: process.version, results }, null, 2) + '\n');
  return passed === results.length ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) void main().then((code) => process.exit(code));
