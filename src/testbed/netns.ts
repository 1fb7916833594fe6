/**
 * Network namespaces for tests, benchmarks and the testbed. Every namespace, veth and process a
 * test makes is recorded and removed by cleanup(), which also runs on exit and
 * on SIGINT/SIGTERM, so a failing or interrupted test leaves nothing behind.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestbedError } from '../errors.js';

function packageRoot(): string {
  // src/testbed or dist/src/testbed: walk up to the folder with package.json
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export const ROOT = packageRoot();
export const WIREMESH_WG = join(ROOT, 'bin', 'wiremesh-wg.js');

export function canRunNetns(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return existsSync('/dev/net/tun');
  } catch {
    return false;
  }
}

/** Runs a command in the named namespace; never throws. */
export function execIn(netns: string, ...cmd: string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync('ip', ['netns', 'exec', netns, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (err) {
    return { ok: false, out: String((err as { stdout?: string }).stdout ?? '') };
  }
}

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const namespaces = new Set<string>();
const sockets = new Set<string>();

/** Records a WireGuard interface so cleanup() removes its UAPI socket. */
export function trackInterface(ifname: string): string {
  sockets.add(`/var/run/wireguard/${ifname}.sock`);
  return ifname;
}
const children = new Set<ChildProcess>();
let seq = 0;

export function uniqueName(prefix: string): string {
  // Interface names are global through /var/run/wireguard: make them unique per run.
  return `${prefix}${process.pid % 100000}${(seq++).toString(36)}`.slice(0, 15);
}

export class Netns {
  readonly name: string;
  constructor(prefix = 'wmt') {
    this.name = uniqueName(prefix);
    execFileSync('ip', ['netns', 'add', this.name]);
    namespaces.add(this.name);
    this.ip('link', 'set', 'lo', 'up');
  }
  /** Runs a command in the namespace and returns its stdout. */
  run(cmd: string, ...args: string[]): string {
    return execFileSync('ip', ['netns', 'exec', this.name, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }
  /** Like run, but returns the exit status and output instead of throwing. */
  try(cmd: string, ...args: string[]): { ok: boolean; out: string } {
    try {
      return { ok: true, out: this.run(cmd, ...args) };
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  }
  ip(...args: string[]): string {
    return this.run('ip', ...args);
  }
  spawn(cmd: string, args: string[], opts: { logTo?: 'inherit' | 'ignore' } = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, cmd, ...args], {
      stdio: ['ignore', 'pipe', opts.logTo === 'inherit' ? 'inherit' : 'pipe'],
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  }
}

/** A WireGuard key pair made by wg(8) in the namespace. */
export function wgKeypair(ns: Netns): { privateKey: string; publicKey: string } {
  const privateKey = ns.run('wg', 'genkey').trim();
  return { privateKey, publicKey: ns.run('sh', '-c', `echo ${privateKey} | wg pubkey`).trim() };
}

/** Starts a userspace WireGuard daemon (ours or wireguard-go) for ifname in ns, backgrounded. */
export function startWireGuard(ns: Netns, impl: 'wiremesh' | 'wireguard-go', ifname: string): void {
  trackInterface(ifname);
  if (impl === 'wiremesh') ns.run(process.execPath, WIREMESH_WG, ifname);
  else ns.run('sh', '-c', `WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go ${ifname} >/dev/null 2>&1`);
}

/**
 * Configures ifname with wg(8) (key through a 0600 file that is removed at once),
 * one peer, the interface addresses, and brings it up.
 */
export function wgConfigure(
  ns: Netns,
  ifname: string,
  cfg: { privateKey: string; port: number; peer: string; endpoint?: string; allowedIPs: string[]; addresses: string[] },
): void {
  const keyFile = `/dev/shm/${ifname}.key`;
  ns.run('sh', '-c', `umask 077; echo ${cfg.privateKey} > ${keyFile}`);
  try {
    ns.run('wg', 'set', ifname, 'private-key', keyFile, 'listen-port', String(cfg.port), 'peer', cfg.peer,
      ...(cfg.endpoint ? ['endpoint', cfg.endpoint] : []), 'allowed-ips', cfg.allowedIPs.join(','));
  } finally {
    rmSync(keyFile, { force: true });
  }
  for (const a of cfg.addresses) ns.ip('addr', 'add', a, 'dev', ifname, ...(a.includes(':') ? ['nodad'] : []));
  ns.ip('link', 'set', ifname, 'up');
}

/** A veth pair between two namespaces with the given addresses (CIDR notation). */
export function link(a: Netns, aIf: string, aAddrs: string[], b: Netns, bIf: string, bAddrs: string[]): void {
  execFileSync('ip', ['link', 'add', aIf, 'netns', a.name, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name]);
  for (const [ns, ifn, addrs] of [[a, aIf, aAddrs], [b, bIf, bAddrs]] as const) {
    for (const addr of addrs) ns.ip('addr', 'add', addr, 'dev', ifn, ...(addr.includes(':') ? ['nodad'] : []));
    ns.ip('link', 'set', ifn, 'up');
  }
}

export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new TestbedError('WM_TESTBED_TIMEOUT', `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends a raw UAPI request to IFNAME's socket and returns the reply lines. */
export function uapi(ifname: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(`/var/run/wireguard/${ifname}.sock`);
    let out = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      out += d;
      if (out.endsWith('\n\n')) {
        sock.end();
        resolve(out);
      }
    });
    sock.on('error', reject);
    sock.write(request);
  });
}

export async function stats(ifname: string): Promise<Record<string, number>> {
  const text = await uapi(ifname, 'stats=1\n\n');
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.split('=');
    if (k && v !== undefined) out[k] = Number(v);
  }
  return out;
}

export function cleanup(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  children.clear();
  for (const ns of namespaces) {
    try {
      // processes still inside (daemonized ones) die with their namespace's pids
      const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
  namespaces.clear();
  for (const s of sockets) rmSync(s, { force: true });
  sockets.clear();
}

process.once('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(130);
  });
}
