import { describe, expect, it } from 'vitest';
import { connect, createServer, type Socket } from 'node:net';
import { connectedToItself, etcdCommand } from '../../src/testbed/etcd.js';

const base = { name: 'c1', dataDir: '/tmp/x', host: '127.0.0.1', clientPort: 2379, peerPort: 2380 };

describe('etcdCommand', () => {
  it("keeps etcd's and Go's defaults when no tuning is asked for", () => {
    const { cmd, args, env } = etcdCommand(base);
    expect(cmd).toBe('etcd');
    expect(args).not.toContain('--heartbeat-interval');
    expect(args).not.toContain('--backend-batch-interval');
    expect(env.GOMAXPROCS).toBe(process.env.GOMAXPROCS);
  });

  it('passes the raft tick, the backend batch interval and GOMAXPROCS (the benchmark mesh tuning)', () => {
    const { args, env } = etcdCommand({ ...base, tickMs: 500, backendBatchMs: 1000, goMaxProcs: 1 });
    const flag = (f: string) => args[args.indexOf(f) + 1];
    expect(flag('--heartbeat-interval')).toBe('500');
    expect(flag('--election-timeout')).toBe('2500');
    expect(flag('--backend-batch-interval')).toBe('1000ms');
    expect(env.GOMAXPROCS).toBe('1');
  });

  it('runs inside the namespace with the same arguments', () => {
    const { cmd, args } = etcdCommand({ ...base, netns: 'ns1', backendBatchMs: 1000 });
    expect(cmd).toBe('ip');
    expect(args.slice(0, 4)).toEqual(['netns', 'exec', 'ns1', 'etcd']);
    expect(args).toContain('--backend-batch-interval');
  });
});

/** A connected socket to 127.0.0.1:`port` (from `localPort` when given). */
function connected(port: number, localPort?: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', ...(localPort ? { localPort, localAddress: '127.0.0.1' } : {}) });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

describe("startEtcd's listening probe", () => {
  it('regression (s37 CI): a connect that met itself on a port nobody listens on is no sign of etcd', async () => {
    // a port free now: a server's, closed; the kernel lets a socket bound to it connect to it (simultaneous open),
    // as it may when it picks that port as the source of a connect to it
    const server = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as { port: number }).port;
    await new Promise((r) => server.close(r));
    const s = await connected(port, port);
    expect([s.localPort, s.remotePort, connectedToItself(s)]).toEqual([port, port, true]);
    s.destroy();
    // a listener's accepted connection: a probe that says so
    const again = createServer((c) => c.destroy()).listen(0, '127.0.0.1');
    await new Promise((r) => again.once('listening', r));
    const t = await connected((again.address() as { port: number }).port);
    expect(connectedToItself(t)).toBe(false);
    t.destroy();
    await new Promise((r) => again.close(r));
  });
});
