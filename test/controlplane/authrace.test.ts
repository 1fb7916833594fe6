// Regression: etcd refuses a request with "revision of auth store is old"
// when users or roles change between its auth check and its apply. The
// docker-compose testbed's setup job issued credentials for the last nodes while
// the first agents registered their pods, and a node's first endpoint write
// failed with it (CI: "timed out waiting for node c2-n2"; the node's log said
// WM_POD_REGISTER ... revision of auth store is old). connectEtcd retries it.
// A real etcd on loopback with mutual TLS and RBAC, as in production.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enableCluster } from '../../src/controlplane/clustermesh.js';
import { stateKey } from '../../src/controlplane/keys.js';
import { connectEtcd, isAuthRevisionRace } from '../../src/controlplane/kvstore.js';
import { createClusterPKI, pkiFiles } from '../../src/controlplane/pki.js';
import { issueNodeCredentials } from '../../src/controlplane/rbac.js';
import { startEtcd, type EtcdProcess } from '../../src/testbed/etcd.js';
import { hasCommand } from '../../src/testbed/netns.js';

const enabled = hasCommand('etcd') && hasCommand('openssl');

describe.skipIf(!enabled)('etcd auth-revision races', () => {
  let etcd: EtcdProcess;
  let dir: string;
  const port = 24000 + (process.pid % 1000);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-authrace-'));
    createClusterPKI(join(dir, 'pki'), 'c1', ['127.0.0.1']);
    const p = join(dir, 'pki');
    etcd = await startEtcd({
      name: 'authrace', dataDir: join(dir, 'data'), host: '127.0.0.1', clientPort: port, peerPort: port + 1000,
      tls: { certFile: join(p, 'etcd.crt'), keyFile: join(p, 'etcd.key'), caFile: join(p, 'ca.crt') },
    });
    await enableCluster({ endpoints: [etcd.clientUrl], ...pkiFiles(p) }, { name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs: ['198.18.1.0/24'] });
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('classifies the refusal as the race, and nothing else of its kind', () => {
    expect(isAuthRevisionRace(new Error('3 INVALID_ARGUMENT: etcdserver: revision of auth store is old'))).toBe(true);
    expect(isAuthRevisionRace(new Error('etcdserver: permission denied'))).toBe(false);
  });

  it("a node's writes all succeed while the operator issues other nodes' credentials", async () => {
    const p = join(dir, 'pki');
    const root = { endpoints: [etcd.clientUrl], ...pkiFiles(p) };
    const cred = await issueNodeCredentials({ cluster: 'c1', node: 'n1', pkiDir: p, outDir: join(dir, 'n1'), root });
    const node = connectEtcd({ endpoints: [etcd.clientUrl], caFile: cred.caFile, certFile: cred.certFile, keyFile: cred.keyFile });
    let stop = false;
    let writes = 0;
    const errors: string[] = [];
    // the node writes its own record as fast as it can...
    const writer = (async () => {
      while (!stop) {
        await node.put(stateKey('nodes', 'c1', 'n1')).value(String(writes)).then(() => writes++, (err: Error) => void errors.push(err.message));
      }
    })();
    try {
      // ...while every new node's role and user bump the auth store's revision
      for (let i = 2; i <= 25; i++) await issueNodeCredentials({ cluster: 'c1', node: `n${i}`, pkiDir: p, outDir: join(dir, `n${i}`), root });
    } finally {
      stop = true;
      await writer;
      node.close();
    }
    expect(errors).toEqual([]);
    expect(writes).toBeGreaterThan(0);
  }, 120_000);
});
