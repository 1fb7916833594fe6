// One real etcd on loopback for a test file (the controlplane tests that need etcd's own behaviour): started on
// the first client() call, its client closed, the process stopped and its data directory removed by stop(); pid()
// names the process (a test may pause it: SIGSTOP, SIGCONT, by that pid only); url() its client URL (once started).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { startEtcd, type EtcdProcess } from '../../src/testbed/etcd.js';

/** `portBase`: the client port is portBase + pid % 1000 (the peer port 1000 above it), apart per test file. */
export function loopbackEtcd(name: string, portBase: number): { client(): Promise<Etcd3>; pid(): number | undefined; url(): string | undefined; stop(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), `wm-${name}-`));
  let etcd: EtcdProcess | undefined;
  let client: Etcd3 | undefined;
  return {
    async client() {
      if (!client) {
        const port = portBase + (process.pid % 1000);
        etcd = await startEtcd({ name, dataDir: join(dir, 'data'), host: '127.0.0.1', clientPort: port, peerPort: port + 1000 });
        client = connectEtcd({ endpoints: [etcd.clientUrl] });
      }
      return client;
    },
    pid: () => etcd?.proc.pid,
    url: () => etcd?.clientUrl,
    async stop() {
      client?.close();
      await etcd?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
