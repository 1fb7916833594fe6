/**
 * Runs a real etcd (Debian's etcd-server) for the testbed and tests: one
 * member, its own data directory, stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { TestbedError } from '../errors.js';

export interface EtcdProcess {
  clientUrl: string;
  dataDir: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export interface EtcdSpec {
  name: string;
  dataDir: string;
  host: string;
  clientPort: number;
  peerPort: number;
  /** Run inside this network namespace (via ip netns exec). */
  netns?: string;
  /** TLS: server cert/key and the CA that signs clients (enables client-cert auth). */
  tls?: { certFile: string; keyFile: string; caFile: string };
  logFile?: string;
  /** Restart on an existing data directory instead of starting empty. */
  keepData?: boolean;
  /**
   * Raft tick (--heartbeat-interval, ms; the election timeout is 5 ticks, etcd's minimum ratio). etcd's default,
   * 100 ms, when unset. A one-member etcd has no follower to heartbeat, yet it wakes every tick: at 500 ms an idle
   * member used ~27 % less CPU here (8 idle etcds, 60 s: 192 → 140 ticks of CPU), for a first leader up to
   * 2.5 s after start instead of 1 s (a fresh start measured ~1.0–1.5 s against 0.3–1.2 s). bench:controlplane's
   * mesh uses it (ETCD_TICK_MS in bench/cp-mesh.ts); tests keep the default for fast starts.
   */
  tickMs?: number;
  /** How often etcd sends a caught-up watcher a progress notification (ms); etcd's default, 10 min, when unset. */
  progressNotifyMs?: number;
}

export async function startEtcd(spec: EtcdSpec): Promise<EtcdProcess> {
  if (!spec.keepData) rmSync(spec.dataDir, { recursive: true, force: true });
  mkdirSync(spec.dataDir, { recursive: true, mode: 0o700 });
  const scheme = spec.tls ? 'https' : 'http';
  const clientUrl = `${scheme}://${spec.host}:${spec.clientPort}`;
  const peerUrl = `http://${spec.host}:${spec.peerPort}`;
  const args = [
    '--name', spec.name,
    '--data-dir', spec.dataDir,
    '--listen-client-urls', clientUrl,
    '--advertise-client-urls', clientUrl,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `${spec.name}=${peerUrl}`,
    // a test may compact on purpose; never on its own
    '--auto-compaction-retention', '0',
    '--log-level', 'warn',
    ...(spec.progressNotifyMs ? ['--experimental-watch-progress-notify-interval', `${spec.progressNotifyMs}ms`] : []),
    ...(spec.tickMs ? ['--heartbeat-interval', String(spec.tickMs), '--election-timeout', String(5 * spec.tickMs)] : []),
    ...(spec.tls ? ['--cert-file', spec.tls.certFile, '--key-file', spec.tls.keyFile, '--trusted-ca-file', spec.tls.caFile, '--client-cert-auth'] : []),
  ];
  const cmd = spec.netns ? 'ip' : 'etcd';
  const full = spec.netns ? ['netns', 'exec', spec.netns, 'etcd', ...args] : args;
  // With a log file etcd is detached, so it outlives the command that started it.
  const logFd = spec.logFile ? openSync(spec.logFile, 'a') : undefined;
  const proc = spawn(cmd, full, {
    detached: logFd !== undefined,
    stdio: ['ignore', 'ignore', logFd ?? 'pipe'],
    env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch },
  });
  let captured = '';
  proc.stderr?.on('data', (d) => (captured = (captured + d).slice(-4000)));
  const stderrTail = () => (spec.logFile ? readFileSync(spec.logFile, 'utf8').slice(-4000) : captured);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new TestbedError('WM_TESTBED_ETCD', `etcd ${spec.name} exited: ${stderrTail()}`);
    if (await canConnect(spec.host, spec.clientPort, spec.netns)) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new TestbedError('WM_TESTBED_ETCD', `etcd ${spec.name} did not start listening on ${clientUrl}: ${stderrTail()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    clientUrl,
    dataDir: spec.dataDir,
    proc,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    },
  };
}

function canConnect(host: string, port: number, netns?: string): Promise<boolean> {
  if (netns) {
    // probing from inside the namespace needs a process there
    return probeWithSs(netns, port);
  }
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

function probeWithSs(netns: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', netns, 'ss', '-ltnH', `sport = :${port}`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.once('exit', () => resolve(out.trim().length > 0));
  });
}
