// Least privilege in etcd (src/controlplane/rbac.ts): a compromised node holds
// only its own credentials (CN=node-<node>, from its node.yaml). With them it
// can keep writing its own records, and etcd refuses everything else: other
// nodes' records, the replicated cache, cluster config, the mesh's remote
// credentials and pinned records. The kvstoremesh certificate cannot write
// cluster state either, and the observer one writes nothing.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../src/agent/config.js';
import { cacheKey, clusterConfigKey, healthKey, identityRefKey, pinnedKey, remoteKey, remotesPrefix, stateKey, statePrefix } from '../../src/controlplane/keys.js';
import { pkiFiles } from '../../src/controlplane/pki.js';
import { canRunNetns, execIn, hasCommand, ROOT } from '../../src/testbed/netns.js';
import { testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');
const PROBE = join(ROOT, 'test', 'helpers', 'rbacprobe.mjs');

type Op = { name: string; op: 'put' | 'get' | 'list' | 'delete' | 'deletePrefix' | 'samePut' | 'revokeLeaseOf'; key: string };

describe.skipIf(!enabled)('a compromised node cannot write what is not its own', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmcn-'));
  const file = join(dir, 'topo.yaml');
  let st: TestbedState;
  const c1 = () => st.clusters.find((c) => c.name === 'c1')!;

  /** Runs the operations in c1's control-plane namespace with these credentials. */
  function probe(cred: { caFile?: string; certFile?: string; keyFile?: string }, ops: Op[]): Record<string, string> {
    const r = execIn(c1().cpNetns, process.execPath, PROBE, c1().etcd, cred.caFile!, cred.certFile!, cred.keyFile!, JSON.stringify(ops));
    expect(r.ok, r.out).toBe(true);
    return JSON.parse(r.out) as Record<string, string>;
  }

  beforeAll(async () => {
    writeTopology(file, { name: `cn${process.pid % 100000}`, clusters: [2, 1], connect: [['c1', 'c2']] });
    // testbedUp waits until every agent has a tunnel to every node of both clusters:
    // agents (own credentials) and kvstoremesh (its certificate) did their work under RBAC
    st = await testbedUp(file);
  }, 120_000);
  afterAll(async () => {
    await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("node n1's own credentials: its records yes, anything else denied", () => {
    const cfg = loadAgentConfig(join(st.dir, 'c1-n1.yaml'));
    expect(cfg.etcd.certFile).not.toBe(pkiFiles(join(st.dir, 'pki', 'c1')).certFile); // not the root certificate
    expect(statSync(cfg.etcd.keyFile!).mode & 0o077).toBe(0);
    const ownIp = `${statePrefix('ip', 'c1')}n1/100.65.0.250`;
    const out = probe(cfg.etcd, [
      { name: 'rewrite own node record', op: 'samePut', key: stateKey('nodes', 'c1', 'n1') },
      { name: 'write own endpoint', op: 'put', key: ownIp },
      { name: 'delete own endpoint', op: 'delete', key: ownIp },
      { name: 'read cluster state', op: 'list', key: statePrefix('nodes', 'c1') },
      { name: "write n2's node record", op: 'put', key: stateKey('nodes', 'c1', 'n2') },
      { name: "delete n2's node record", op: 'delete', key: stateKey('nodes', 'c1', 'n2') },
      { name: 'write a new node record', op: 'put', key: stateKey('nodes', 'c1', 'n1x') },
      { name: "write an endpoint under n2's prefix", op: 'put', key: `${statePrefix('ip', 'c1')}n2/100.65.1.250` },
      { name: "write n2's identity reference", op: 'put', key: identityRefKey('c1', 65536 + 300, 'n2') },
      { name: "write n2's health", op: 'put', key: healthKey('c1', 'n2') },
      { name: "revoke n2's lease", op: 'revokeLeaseOf', key: stateKey('nodes', 'c1', 'n2') },
      { name: 'write the cache', op: 'put', key: cacheKey('nodes', 'c2', 'n1') },
      { name: 'delete the cache', op: 'deletePrefix', key: 'wiremesh/cache/' },
      { name: 'write cluster config', op: 'put', key: clusterConfigKey('c1') },
      { name: 'write a remote', op: 'put', key: remoteKey('c2') },
      { name: 'write a pinned cluster', op: 'put', key: pinnedKey('c2') },
      { name: 'read the remotes', op: 'list', key: remotesPrefix() },
      { name: 'read the remote of c2', op: 'get', key: remoteKey('c2') },
    ]);
    expect(out).toEqual({
      'rewrite own node record': 'allowed',
      'write own endpoint': 'allowed',
      'delete own endpoint': 'allowed',
      'read cluster state': 'allowed',
      "write n2's node record": 'denied',
      "delete n2's node record": 'denied',
      'write a new node record': 'denied',
      "write an endpoint under n2's prefix": 'denied',
      "write n2's identity reference": 'denied',
      "write n2's health": 'denied',
      "revoke n2's lease": 'denied',
      'write the cache': 'denied',
      'delete the cache': 'denied',
      'write cluster config': 'denied',
      'write a remote': 'denied',
      'write a pinned cluster': 'denied',
      'read the remotes': 'denied',
      'read the remote of c2': 'denied',
    });
  });

  it('the kvstoremesh certificate writes the cache but not cluster state; the observer one writes nothing', () => {
    const pki = join(st.dir, 'pki', 'c1');
    expect(
      probe(pkiFiles(pki, 'kvstoremesh'), [
        { name: 'read the remotes', op: 'list', key: remotesPrefix() },
        { name: 'write a node record', op: 'put', key: stateKey('nodes', 'c1', 'evil') },
        { name: 'write an endpoint', op: 'put', key: `${statePrefix('ip', 'c1')}n1/100.65.0.251` },
        { name: 'write a remote', op: 'put', key: remoteKey('c9') },
        { name: 'write cluster config', op: 'put', key: clusterConfigKey('c1') },
      ]),
    ).toEqual({ 'read the remotes': 'allowed', 'write a node record': 'denied', 'write an endpoint': 'denied', 'write a remote': 'denied', 'write cluster config': 'denied' });
    expect(
      probe(pkiFiles(pki, 'observer'), [
        { name: 'read gateways', op: 'list', key: 'wiremesh/state/gateways/' },
        { name: 'read the remotes', op: 'list', key: remotesPrefix() },
        { name: 'write a gateway', op: 'put', key: stateKey('gateways', 'c1', 'evil') },
        { name: 'write the cache', op: 'put', key: cacheKey('gateways', 'c2', 'evil') },
      ]),
    ).toEqual({ 'read gateways': 'allowed', 'read the remotes': 'denied', 'write a gateway': 'denied', 'write the cache': 'denied' });
  });
});
