/**
 * The L7 testbed the proxy tests share (l7, proxy-isolation, slowclient): a
 * pod `api` on c1/n2 in namespace shop runs httpprobe.mjs's server on 8080
 * behind an HTTP policy (apiL7Policy), so c1/n2's agent sends its traffic
 * through the L7 proxy; the test names the other pods.
 *
 *   const bed = new L7Testbed('wml7-', { name, clusters: [2, 1], pods: [shopPod('api', 'c1/n2', 'api'), ...] }, apiL7Policy());
 *   beforeAll(() => bed.up(), 180_000);
 *   afterAll(() => bed.down(), 60_000);
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callAgent } from '../../src/agent/client.js';
import { ROOT } from '../../src/testbed/netns.js';
import { startPodServers } from '../../src/testbed/pod.js';
import { testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { writeTopology, type TopologyArgs } from './topology.js';

export const HTTP = join(ROOT, 'test', 'helpers', 'httpprobe.mjs');

/**
 * A CiliumNetworkPolicy for shop/api: app=frontend may reach TCP 8080 with the
 * requests `http` allows (a YAML flow list of HTTP rules; default: GET /public/.*);
 * moreIngress: further ingress entries, YAML indented as list items under `ingress:`.
 */
export function apiL7Policy(http = '[{ method: GET, path: "/public/.*" }]', moreIngress = ''): string {
  return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: api-l7, namespace: shop }
spec:
  endpointSelector: { matchLabels: { app: api } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: frontend } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: ${http} }
${moreIngress}`;
}

/**
 * Runs `node script args` in a network namespace; resolves with its stdout,
 * trimmed, once it exits. stderr: 'ignore' (default) or 'inherit' (the test's
 * output); track: the child is added to it (killed with the testbed).
 */
export function runInNetns(netns: string, script: string, args: string[], opts: { stderr?: 'ignore' | 'inherit'; track?: ChildProcess[] } = {}): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', netns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', opts.stderr ?? 'ignore'] });
    opts.track?.push(p);
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.once('close', () => resolve(out.trim()));
  });
}

export class L7Testbed {
  readonly dir: string;
  readonly file: string;
  st!: TestbedState;
  /** Processes started in pods: killed (SIGKILL) by down(). */
  readonly procs: ChildProcess[] = [];

  /** tmpPrefix: of the scratch directory (topology, policy); topology: without manifests (the policy goes to c1). */
  constructor(
    tmpPrefix: string,
    private readonly topology: Omit<TopologyArgs, 'manifests'>,
    private readonly policy: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), tmpPrefix));
    this.file = join(this.dir, 'topo.yaml');
  }

  pod(name: string): TestbedState['pods'][number] {
    return this.st.pods.find((p) => p.name === name)!;
  }

  node(cluster: string, name: string): TestbedState['clusters'][number]['nodes'][number] {
    return this.st.clusters.find((x) => x.name === cluster)!.nodes.find((x) => x.name === name)!;
  }

  /** The L7 proxy's part of GET /v1/status of the api pod's node (c1/n2). */
  async proxyStatus<T>(): Promise<T> {
    return ((await callAgent(this.node('c1', 'n2').socket, 'GET', '/v1/status')).body as { proxy: T }).proxy;
  }

  /** Writes the policy and the topology, brings the testbed up and starts api's HTTP server. */
  async up(): Promise<void> {
    const policy = join(this.dir, 'policy.yaml');
    writeFileSync(policy, this.policy);
    writeTopology(this.file, { ...this.topology, manifests: { c1: [policy] } });
    this.st = await testbedUp(this.file);
    this.procs.push(...(await startPodServers([this.pod('api')], (p) => [HTTP, 'server', p.name, '8080'])));
  }

  async down(): Promise<void> {
    for (const p of this.procs) p.kill('SIGKILL');
    await testbedDown(this.file);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
