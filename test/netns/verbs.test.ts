// The kubectl-style verbs end to end (issue 17) on a testbed whose names are as users write them:
// clusters `cluster-one` and `cluster-three` (Cilium's Cluster Mesh docs) and one of 32 characters,
// a node and a pod with long names (kernel names derived from them: src/testbed/ifname.ts).
//   - pods reach across all three clusters;
//   - a policy applied, then removed with `wiremesh delete -f`: the pod's traffic is as before
//     (judged by connecting, not by `policy trace`); deleting again: not found (3), unless --ignore-not-found;
//   - `wiremesh get -o json` returns the decoded records; a missing NAME exits 3;
//   - `wiremesh delete svc` releases the Service's VIP (the next Service gets it);
//   - `wiremesh pod label` changes the outcome of a label-selecting policy (overwrite needs --overwrite: 4).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateManifest } from '../../src/manifests/validate.js';
import { canRunNetns, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { podVeth } from '../../src/testbed/pod.js';
import { testbedClusterAccess, testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { ECHO, startEchoServers } from '../helpers/echo.js';
import { shopPod, writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');
const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');
const C32 = 'cluster-with-thirty-two-chars-xy';
const LONG_NODE = `node-${'a'.repeat(40)}-with-a-long-name`;
const LONG_POD = 'frontend-7d9c8b6f5d-x2x9q-and-more';

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: db-ingress, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: db } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: allowed } }]
      toPorts: [{ ports: [{ port: "7000", protocol: TCP }] }]
`;
const service = (name: string) => `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: shop }
spec: { selector: { app: db }, ports: [{ port: 80, targetPort: 7000 }] }
`;

describe.skipIf(!enabled)('kubectl-style verbs on a testbed with long cluster, node and pod names', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmverbs-'));
  const file = join(dir, 'topo.yaml');
  const name = `v${process.pid % 100000}`;
  let st: TestbedState;
  const procs: ChildProcess[] = [];
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;

  /** `wiremesh ARGS` with cluster's etcd flags (root), run where the etcd is reachable. */
  function cli(cluster: string, ...args: string[]): { status: number; stdout: string; stderr: string } {
    const a = testbedClusterAccess(cluster, name);
    const r = spawnSync('ip', ['netns', 'exec', a.netns, process.execPath, WIREMESH, ...args, '--cluster', cluster, ...a.flags], { encoding: 'utf8' });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }
  const label = (...args: string[]) => spawnSync(process.execPath, [WIREMESH, 'pod', 'label', ...args, '-n', 'shop', '--cluster', 'cluster-one', '--testbed', name], { encoding: 'utf8' });

  function reaches(src: string, dsts: string[]): Promise<string[]> {
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', pod(src).netns, process.execPath, ECHO, 'client', '7000', ...dsts.map((d) => pod(d).ip)], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      p.once('close', () => resolve(dsts.filter((d) => out.includes(`${pod(d).ip} ok`))));
    });
  }
  const reachesDb = async (src: string) => (await reaches(src, ['db'])).length === 1;

  beforeAll(async () => {
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    writeTopology(file, {
      name,
      clusters: [
        { name: 'cluster-one', id: 1, nodes: ['n1', LONG_NODE] },
        { name: 'cluster-three', id: 3, nodes: ['n1'] },
        { name: C32, id: 32, podCIDR: '100.68.0.0/16', nodes: ['n1'] },
      ],
      pods: [
        shopPod('client', 'cluster-one/n1', 'client'),
        shopPod(LONG_POD, 'cluster-one/n1', 'web'),
        shopPod('db', `cluster-one/${LONG_NODE}`, 'db'),
        shopPod('far', 'cluster-three/n1', 'far'),
        shopPod('farther', `${C32}/n1`, 'far'),
      ],
    });
    st = await testbedUp(file);
    procs.push(...(await startEchoServers(st.pods)));
  }, 240_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    if (st) await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('comes up with the names as written, short kernel names, and pods reach across the three clusters', async () => {
    expect(st.clusters.map((c) => c.name)).toEqual(['cluster-one', 'cluster-three', C32]);
    expect(podVeth(LONG_POD)).toHaveLength(15);
    await waitFor(async () => (await reaches('client', ['db', 'far', 'farther', LONG_POD])).length === 4, 30_000, 'client reaches every pod');
    expect(await reaches(LONG_POD, ['db', 'far', 'farther'])).toEqual(['db', 'far', 'farther']);
    expect(await reaches('far', ['client', 'db', 'farther'])).toEqual(['client', 'db', 'farther']);
  });

  it('apply, then delete -f: the pod reaches db as before; deleting again is "not found" (3) unless --ignore-not-found', async () => {
    expect(await reachesDb('client')).toBe(true);
    expect(cli('cluster-one', 'apply', '-f', join(dir, 'policy.yaml')).status).toBe(0);
    await waitFor(async () => !(await reachesDb('client')), 15_000, 'the policy denies client -> db');
    const del = cli('cluster-one', 'delete', '-f', join(dir, 'policy.yaml'));
    expect(del).toMatchObject({ status: 0, stdout: 'ciliumnetworkpolicy/shop/db-ingress deleted from cluster-one\n' });
    await waitFor(() => reachesDb('client'), 15_000, 'client reaches db again');
    expect(await reaches(LONG_POD, ['db'])).toEqual(['db']);
    const again = cli('cluster-one', 'delete', '-f', join(dir, 'policy.yaml'));
    expect(again.status).toBe(3);
    expect(again.stderr).toMatch(/ciliumnetworkpolicy\/shop\/db-ingress not found in cluster cluster-one/);
    expect(cli('cluster-one', 'delete', 'CNP', 'db-ingress', '-n', 'shop', '--ignore-not-found').status).toBe(0);
  });

  it('get -o json returns the decoded records; a table by default; a missing NAME exits 3', () => {
    expect(cli('cluster-one', 'apply', '-f', join(dir, 'policy.yaml')).status).toBe(0);
    const list = JSON.parse(cli('cluster-one', 'get', 'ciliumnetworkpolicies', '-n', 'shop', '-o', 'json').stdout) as { kind: string; items: unknown[] };
    expect(list).toEqual({ apiVersion: 'v1', kind: 'List', items: [validateManifest(parse(POLICY))] });
    const one = cli('cluster-one', 'get', 'cnp', 'db-ingress', '-n', 'shop', '-o', 'yaml');
    expect(parse(one.stdout)).toEqual(validateManifest(parse(POLICY)));
    const table = cli('cluster-one', 'get', 'cnp', '-A').stdout.trim().split('\n');
    expect(table[0]!.split(/\s+/)).toEqual(['NAMESPACE', 'NAME', 'ENDPOINT-SELECTOR', 'REVISION']);
    expect(table[1]).toMatch(/^shop\s+db-ingress\s+app=db\s+\d+$/);
    expect(cli('cluster-one', 'get', 'cnp', '-n', 'default').stderr).toMatch(/No resources found in default namespace/);
    expect(cli('cluster-one', 'get', 'cnp', 'nope', '-n', 'shop').status).toBe(3);
    expect(cli('cluster-three', 'get', 'cnp', '-A').stdout).toBe(''); // another cluster's store
  });

  it('pod label changes the outcome of a label-selecting policy; a set key needs --overwrite (4)', async () => {
    // the policy from the previous test: only app=allowed reaches db
    await waitFor(async () => !(await reachesDb('client')), 15_000, 'the policy denies client -> db');
    const refused = label('client', 'app=allowed');
    expect(refused.status).toBe(4);
    expect(refused.stderr).toMatch(/'app' already has a value \(client\), and --overwrite is false/);
    expect(label('client', 'app=allowed', '--overwrite').status).toBe(0);
    await waitFor(() => reachesDb('client'), 15_000, 'relabelled client reaches db');
    expect(label('client', 'app-').status).toBe(0);
    await waitFor(async () => !(await reachesDb('client')), 15_000, 'unlabelled client is denied');
    expect(label('client', 'io.cilium.k8s.policy.cluster=cluster-three').status).toBe(2);
    expect(label('nobody', 'app=x').status).toBe(3);
    expect(label('client', 'app=client').status).toBe(0);
    expect(cli('cluster-one', 'delete', 'cnp', 'db-ingress', '-n', 'shop').status).toBe(0);
    await waitFor(() => reachesDb('client'), 15_000, 'client reaches db after the delete');
  });

  it('delete svc releases the VIP: the next Service gets it', () => {
    writeFileSync(join(dir, 'a.yaml'), service('a'));
    writeFileSync(join(dir, 'b.yaml'), service('b'));
    expect(cli('cluster-one', 'apply', '-f', join(dir, 'a.yaml')).status).toBe(0);
    const vip = (n: string) => (JSON.parse(cli('cluster-one', 'get', 'svc', n, '-n', 'shop', '-o', 'json').stdout) as { spec: { clusterIP: string } }).spec.clusterIP;
    const a = vip('a');
    expect(a).toMatch(/^100\.127\.1\./);
    expect(cli('cluster-one', 'delete', 'svc', 'a', '-n', 'shop').stdout).toBe('service/shop/a deleted from cluster-one\n');
    expect(cli('cluster-one', 'apply', '-f', join(dir, 'b.yaml')).status).toBe(0);
    expect(vip('b')).toBe(a);
  });
});
