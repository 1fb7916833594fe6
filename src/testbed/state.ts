/**
 * The testbed's state on disk and the small operations everything else builds
 * on: state.json under /run/wiremesh-testbed/<name>/ (namespaces and the
 * processes started, with their roles and logs), commands run inside a
 * namespace, where each cluster's PKI and each node's credentials live.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestbedError } from '../errors.js';
import { pkiFiles } from '../controlplane/pki.js';
import { ROOT } from './netns.js';

export const STATE_ROOT = '/run/wiremesh-testbed';
export const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');

// state.json is decoded, not cast: it is a file on disk that a crash, an older version or a hand edit may have left
// in any shape, and `down` must then refuse clearly instead of acting on undefined fields.
const procRecord = z.object({ pid: z.number().int().positive(), role: z.string(), netns: z.string(), log: z.string() });
const nodeState = z.object({ name: z.string(), netns: z.string(), address: z.string(), podCIDR: z.string(), podCIDRv6: z.string().optional(), socket: z.string() });
const testbedState = z.object({
  name: z.string(),
  file: z.string(),
  dir: z.string(),
  namespaces: z.array(z.string()),
  processes: z.array(procRecord),
  clusters: z.array(z.object({ name: z.string(), id: z.number().int(), podCIDR: z.string(), etcd: z.string(), cpNetns: z.string(), nodes: z.array(nodeState) })),
  pods: z.array(z.object({ name: z.string(), cluster: z.string(), node: z.string(), namespace: z.string(), netns: z.string(), ip: z.string(), ip6: z.string().optional() })),
});
export type ProcRecord = z.infer<typeof procRecord>;
export type TestbedState = z.infer<typeof testbedState>;

export const nsPrefix = (name: string) => `wmtb-${name}-`;
export const stateDir = (name: string) => join(STATE_ROOT, name);

export function sh(args: string[], netns?: string): string {
  const [cmd, ...rest] = netns ? ['ip', 'netns', 'exec', netns, ...args] : args;
  return execFileSync(cmd!, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** cliIn without blocking the event loop (several run at once). */
export function cliInAsync(netns: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', netns, process.execPath, WIREMESH, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new TestbedError('WM_TESTBED_CLI', `wiremesh ${args.slice(0, 2).join(' ')} in ${netns}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
  });
}

/** Runs the wiremesh CLI inside a namespace (where the testbed's addresses are). */
export function cliIn(netns: string, args: string[]): string {
  try {
    return execFileSync('ip', ['netns', 'exec', netns, process.execPath, WIREMESH, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new TestbedError('WM_TESTBED_CLI', `wiremesh ${args.slice(0, 2).join(' ')} in ${netns}: ${(e.stderr ?? e.message).trim()}`);
  }
}

export function save(st: TestbedState): void {
  writeFileSync(join(st.dir, 'state.json'), JSON.stringify(st, null, 1));
}

export function addNetns(st: TestbedState, ns: string): void {
  execFileSync('ip', ['netns', 'add', ns]);
  st.namespaces.push(ns);
  save(st);
  sh(['ip', 'link', 'set', 'lo', 'up'], ns);
}

export function spawnIn(st: TestbedState, netns: string, role: string, args: string[]): ProcRecord {
  const log = join(st.dir, 'logs', `${role.replace(/[^a-z0-9-]/gi, '_')}.log`);
  const fd = openSync(log, 'a');
  const child = spawn('ip', ['netns', 'exec', netns, ...args], { detached: true, stdio: ['ignore', fd, fd] });
  child.unref();
  const rec = { pid: child.pid!, role, netns, log };
  st.processes.push(rec);
  save(st);
  return rec;
}

export async function waitForFile(path: string, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new TestbedError('WM_TESTBED_TIMEOUT', `${what} did not come up within ${ms / 1000} s`);
    await sleep(50);
  }
}

export const pkiDir = (st: TestbedState, cluster: string) => join(st.dir, 'pki', cluster);
/** A node's own etcd credentials (node.crt, node.key, ca.crt). */
export const credDir = (st: TestbedState, cluster: string, node: string) => join(st.dir, 'creds', `${cluster}-${node}`);
export const etcdTls = (pki: string) => ({ certFile: join(pki, 'etcd.crt'), keyFile: join(pki, 'etcd.key'), caFile: join(pki, 'ca.crt') });
/** --etcd flags (prefixed for connect's two sides) with one of the cluster's client certificates: root (operator) by default. */
export function etcdFlags(prefix: '' | 'a' | 'b', url: string, pki: string, user: 'root' | 'kvstoremesh' | 'observer' = 'root'): string[] {
  const p = prefix ? `--${prefix}-` : '--';
  const f = pkiFiles(pki, user);
  return [`${p}etcd`, url, `${p}etcd-ca`, f.caFile, `${p}etcd-cert`, f.certFile, `${p}etcd-key`, f.keyFile];
}

export const agentRole = (cluster: string, node: string) => `${cluster}-${node}-agent`;
/**
 * V8's young generation capped at 1 MiB semi-spaces: its default grows to 16 MiB
 * (32 MiB resident) during a sync and stays; the cap costs no sync time
 * (docs/benchmarks.md, bench:memory). A command-line flag: V8 reads it when the heap is made.
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1'];
/**
 * The agent's environment: glibc's malloc held to two arenas, which every thread shares (glibc hands a thread one
 * in turn, the JavaScript thread's main arena too), where its default makes up to 8 per core, each keeping its own
 * free pages: 7–32 B less RSS per remote endpoint at 16 × 1000 × 10 (s32: 23–32, s33: 7–9), bench:throughput
 * unchanged (docs/benchmarks.md, s32 and s33). glibc reads it at process start (a mallopt from the addon would come
 * after V8's threads made their arenas: not measured), so it is set where the agent is started, as the V8 flags are
 * (README: "Running the agent").
 * What the agent starts inherits it: the L7 proxy's process too.
 */
export const AGENT_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };
/** The agent's command line: env(1) sets AGENT_ENV and execs node (one process, its PID the one spawned). */
export const agentCommand = (cfgFile: string) => ['env', ...Object.entries(AGENT_ENV).map(([k, v]) => `${k}=${v}`), process.execPath, ...AGENT_NODE_FLAGS, WIREMESH, 'agent', '--config', cfgFile];

/** Whether a process with this PID exists (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function activeTestbeds(): string[] {
  return existsSync(STATE_ROOT) ? readdirSync(STATE_ROOT).filter((n) => existsSync(join(STATE_ROOT, n, 'state.json'))) : [];
}

export function loadState(name?: string): TestbedState {
  const active = activeTestbeds();
  const pick = name ?? (active.length === 1 ? active[0] : undefined);
  if (!pick) throw new TestbedError('WM_TESTBED_NONE', active.length ? `several testbeds are up (${active.join(', ')}): pass --name` : 'no testbed is up');
  const f = join(stateDir(pick), 'state.json');
  if (!existsSync(f)) throw new TestbedError('WM_TESTBED_NONE', `testbed ${pick} is not up`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(f, 'utf8'));
  } catch (err) {
    throw new TestbedError('WM_TESTBED_NONE', `${f}: not JSON (${(err as Error).message})`);
  }
  const st = testbedState.safeParse(parsed);
  if (!st.success) throw new TestbedError('WM_TESTBED_NONE', `${f}: not a testbed state (${st.error.issues[0]?.path.join('.')}: ${st.error.issues[0]?.message})`);
  return st.data;
}
