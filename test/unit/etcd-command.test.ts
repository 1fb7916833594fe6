import { describe, expect, it } from 'vitest';
import { etcdCommand } from '../../src/testbed/etcd.js';

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
