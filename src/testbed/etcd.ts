/**
 * Runs a real etcd (Debian's etcd-server) for the testbed and tests: one
 * member, its own data directory, stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
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
  /**
   * GOMAXPROCS of the etcd process (Go's default, one per core, when unset). An idle one-member etcd wakes ~90
   * times a second (raft tick, its watch sync loop every 100 ms, the backend's batch commit, the runtime's
   * monitor); with one P, fewer threads are woken for each (futex calls in 15 s: 862 → 279). The cost: etcd's Go
   * code runs on one core at a time, a ceiling for one busy etcd; right for the one-member etcd per cluster of the
   * benchmark's mesh on a shared host, not for a busy production member.
   */
  goMaxProcs?: number;
  /**
   * --backend-batch-interval (ms; etcd's default 100 ms): how often the backend commits its boltdb batch, and the
   * period of a timer that fires even when nothing was written. Durability does not depend on it (every raft
   * entry is fsync'd to the WAL before it is applied, reads see the uncommitted batch): a crash replays up to
   * this much more WAL on restart; --backend-batch-limit (10,000 operations) still commits a full batch earlier.
   */
  backendBatchMs?: number;
  /** How often etcd sends a caught-up watcher a progress notification (ms); etcd's default, 10 min, when unset. */
  progressNotifyMs?: number;
}

/** etcd's command line and environment for `spec` (exported for its unit test). */
export function etcdCommand(spec: EtcdSpec): { cmd: string; args: string[]; env: NodeJS.ProcessEnv } {
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
    ...(spec.backendBatchMs ? ['--backend-batch-interval', `${spec.backendBatchMs}ms`] : []),
    ...(spec.tls ? ['--cert-file', spec.tls.certFile, '--key-file', spec.tls.keyFile, '--trusted-ca-file', spec.tls.caFile, '--client-cert-auth'] : []),
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === 'x64' ? '' : process.arch };
  if (spec.goMaxProcs) env.GOMAXPROCS = String(spec.goMaxProcs);
  return spec.netns ? { cmd: 'ip', args: ['netns', 'exec', spec.netns, 'etcd', ...args], env } : { cmd: 'etcd', args, env };
}

export async function startEtcd(spec: EtcdSpec): Promise<EtcdProcess> {
  if (!spec.keepData) rmSync(spec.dataDir, { recursive: true, force: true });
  mkdirSync(spec.dataDir, { recursive: true, mode: 0o700 });
  const { cmd, args, env } = etcdCommand(spec);
  const clientUrl = `${spec.tls ? 'https' : 'http'}://${spec.host}:${spec.clientPort}`;
  // With a log file etcd is detached, so it outlives the command that started it.
  const logFd = spec.logFile ? openSync(spec.logFile, 'a') : undefined;
  const proc = spawn(cmd, args, { detached: logFd !== undefined, stdio: ['ignore', 'ignore', logFd ?? 'pipe'], env });
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
    s.once('connect', () => {
      const listening = !connectedToItself(s);
      s.destroy();
      resolve(listening);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Whether a loopback connection is TCP's simultaneous open of a socket with itself: a port in the ephemeral range
 * (32768–60999) with no listener yet can be the source port the kernel picks for a connect to it, and the connect
 * then succeeds with nobody listening. Such a probe says nothing of etcd (the likely cause of CI's restart-update
 * failure in s37: etcd taken as started, its first call refused 350 ms later).
 */
export function connectedToItself(s: Socket): boolean {
  return s.localPort === s.remotePort && s.localAddress === s.remoteAddress;
}

function probeWithSs(netns: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', netns, 'ss', '-ltnH', `sport = :${port}`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.once('exit', () => resolve(out.trim().length > 0));
  });
}
