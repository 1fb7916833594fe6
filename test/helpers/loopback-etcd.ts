// One real etcd on loopback for a test file (the controlplane tests that need etcd's own behaviour): started on
// the first client() call, its client closed, the process stopped and its data directory removed by stop(); pid()
// names the process (a test may pause it: SIGSTOP, SIGCONT, by that pid only); url() its client URL (once started).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { startEtcd, type EtcdProcess } from '../../src/testbed/etcd.js';

/** `portBase`: the client port is portBase + pid % 1000 (the peer port 1000 above it), apart per test file; another of the base's 1000 when that one is taken. */
export function loopbackEtcd(name: string, portBase: number): { client(): Promise<Etcd3>; pid(): number | undefined; url(): string | undefined; stop(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), `wm-${name}-`));
  let etcd: EtcdProcess | undefined;
  let client: Etcd3 | undefined;
  return {
    async client() {
      if (!client) {
        // Most bases lie in Linux's ephemeral range (32768-60999): any process's outgoing connection may hold the
        // port as its source port for a while, and etcd then exits with "address already in use". Another port of
        // the file's range (and a fresh data directory) is tried then, a few times.
        for (let attempt = 0; ; attempt++) {
          const port = portBase + ((process.pid + 211 * attempt) % 1000);
          try {
            etcd = await startEtcd({ name, dataDir: join(dir, `data${attempt}`), host: '127.0.0.1', clientPort: port, peerPort: port + 1000 });
            break;
          } catch (err) {
            if (attempt >= 4 || !/address already in use/.test(String((err as Error).message))) throw err;
          }
        }
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
