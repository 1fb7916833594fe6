/**
 * The conformance suite's hands on the testbed: apply manifests (`wiremesh
 * apply`, every cluster at once), delete policies (their etcd keys through
 * tracer.mjs, until a `wiremesh delete` exists), relabel pods (the agent's endpoint API, as a CNI
 * plugin or `wiremesh pod label` would), wait for the agents to hold exactly
 * the policies applied, probe the truth table from every pod at once, and ask
 * `policy trace` (tracer.mjs) about the same cells.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { callAgent } from '../../src/agent/client.js';
import { stateKey } from '../../src/controlplane/keys.js';
import { ROOT } from '../../src/testbed/netns.js';
import { testbedClusterAccess, WIREMESH, type TestbedState } from '../../src/testbed/testbed.js';
import { JsonLineProcess } from '../helpers/jsonlines.js';
import type { Labels, ModelPod, Protocol } from './model.js';

const PROBE = join(ROOT, 'dist', 'src', 'chaos', 'probe.js');
const TRACER = join(ROOT, 'test', 'helpers', 'tracer.mjs');
export const PORTS = [80, 81];
export const PROTOCOLS: Protocol[] = ['TCP', 'UDP'];

export interface Cell {
  from: ModelPod;
  to: ModelPod;
  protocol: Protocol;
  port: number;
}

export const cellKey = (c: Cell): string => `${c.from.cluster}/${c.from.namespace}/${c.from.name}>${c.to.cluster}/${c.to.namespace}/${c.to.name}/${c.protocol}/${c.port}`;
export const podText = (p: ModelPod): string => `${p.cluster}:${p.namespace}/${p.labels.pod ?? p.name}`;

function run(netns: string, cmd: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', netns, process.execPath, ...cmd], { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd.slice(1, 3).join(' ')}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
  });
}

export class Harness {
  private readonly probers = new Map<string, JsonLineProcess>();
  private tracer?: JsonLineProcess;
  private files = 0;

  constructor(readonly st: TestbedState, readonly dir: string) {}

  /** One prober per pod (serving TCP and UDP on PORTS) and one trace process; resolves once all are up. */
  async start(): Promise<void> {
    for (const p of this.st.pods) this.probers.set(`${p.cluster}/${p.name}`, new JsonLineProcess(p.netns, [PROBE, 'netpol', p.name, PORTS.join(',')], `prober ${p.cluster}/${p.name}`));
    const access = this.st.clusters.map((c) => {
      const [, etcd, , ca, , cert, , key] = testbedClusterAccess(c.name, this.st.name).flags;
      return { cluster: c.name, etcd, ca, cert, key };
    });
    this.tracer = new JsonLineProcess(this.st.clusters[0]!.cpNetns, [TRACER, JSON.stringify(access)], 'tracer');
    await Promise.all([...this.probers.values(), this.tracer].map((p) => p.ready));
  }

  stop(): void {
    for (const p of this.probers.values()) p.stop();
    this.tracer?.stop();
  }

  /** `wiremesh apply` of the manifests to every cluster (in parallel). */
  async apply(manifests: object[]): Promise<void> {
    const file = join(this.dir, `step-${++this.files}.yaml`);
    writeFileSync(file, manifests.map((m) => JSON.stringify(m)).join('\n---\n') + '\n');
    await Promise.all(
      this.st.clusters.map((c) => {
        const a = testbedClusterAccess(c.name, this.st.name);
        return run(a.netns, [WIREMESH, 'apply', '--cluster', c.name, ...a.flags, '-f', file]);
      }),
    );
  }

  /** Deletes NetworkPolicies ("namespace/name") from every cluster's etcd (their keys, as `wiremesh apply` stored them). */
  async deletePolicies(names: string[]): Promise<void> {
    if (names.length === 0) return;
    const keys = Object.fromEntries(this.st.clusters.map((c) => [c.name, names.map((n) => stateKey('policies', c.name, `${n.split('/')[0]}/knp.${n.split('/')[1]}`))]));
    await this.tracer!.request({ delete: keys }, 30_000);
  }

  /** Re-registers a pod's endpoint with new labels (same name, namespace, address and container ports). */
  async labelPod(pod: ModelPod, labels: Labels): Promise<void> {
    const node = this.st.clusters.find((c) => c.name === pod.cluster)!.nodes.find((n) => n.name === pod.node)!;
    const res = await callAgent(node.socket, 'POST', '/v1/endpoints', { name: pod.name, namespace: pod.namespace, labels, ips: [pod.ip], ports: pod.ports });
    if (res.status !== 201) throw new Error(`relabel ${podText(pod)}: ${res.status} ${JSON.stringify(res.body)}`);
  }

  /** The NetworkPolicies ("namespace/name") every agent of each cluster compiled rules from. */
  private async agentPolicies(): Promise<Array<{ cluster: string; rules: string; policies: Set<string> }>> {
    const out = [];
    for (const c of this.st.clusters)
      for (const n of c.nodes) {
        const body = (await callAgent(n.socket, 'GET', '/v1/policy')).body as { rules?: Array<{ id: string; text: string }> };
        const rules = body.rules ?? [];
        const policies = new Set(rules.map((r) => r.id.split(':')[0]!).filter((p) => p.includes('/knp.')).map((p) => p.slice(p.indexOf('/') + 1).replace('/knp.', '/')));
        out.push({ cluster: c.name, rules: JSON.stringify(rules), policies });
      }
    return out;
  }

  async snapshot(): Promise<string[]> {
    return (await this.agentPolicies()).map((a) => a.rules);
  }

  /**
   * Waits (at most boundMs) until every agent compiled rules from exactly `expected`
   * and, when `before` is given, its rules changed since (a policy replaced under
   * the same name). Returns whether that happened; a policy that yields no rules
   * at all runs into the bound, which the probes then judge.
   */
  async waitForPolicies(expected: Set<string>, before: string[] | undefined, boundMs: number): Promise<boolean> {
    const end = Date.now() + boundMs;
    for (;;) {
      const now = await this.agentPolicies();
      const same = now.every((a) => a.policies.size === expected.size && [...expected].every((p) => a.policies.has(p)));
      const changed = !before || now.some((a, i) => a.rules !== before[i]);
      if (same && changed) return true;
      if (Date.now() > end) return false;
      await sleep(100);
    }
  }

  /** Probes the cells (from every source pod at once); returns the keys of those that answered, from the right pod. */
  async probe(cells: Cell[], timeoutMs: number): Promise<Set<string>> {
    const bySource = new Map<string, Cell[]>();
    for (const c of cells) {
      const k = `${c.from.cluster}/${c.from.name}`;
      bySource.set(k, [...(bySource.get(k) ?? []), c]);
    }
    const reached = new Set<string>();
    await Promise.all(
      [...bySource.entries()].map(async ([src, list]) => {
        const targets = list.map((c) => ({ host: c.to.ip, port: c.port, proto: c.protocol }));
        const res = await this.probers.get(src)!.request<{ results: Array<{ ok: boolean; name?: string }> }>({ timeoutMs, targets }, timeoutMs + 10_000);
        res.results.forEach((r, i) => r.ok && r.name === list[i]!.to.name && reached.add(cellKey(list[i]!)));
      }),
    );
    return reached;
  }

  /** `policy trace` of every cell: the keys of those it calls ALLOWED (egress at the source's cluster and ingress at the destination's). */
  async traceAllowed(pods: ModelPod[]): Promise<Set<string>> {
    const specs = pods.map((p) => `${p.cluster}/${p.namespace}/${p.name}`);
    const res = await this.tracer!.request<{ cells?: Record<string, { egress?: string; ingress?: string }>; error?: string }>({ pods: specs, ports: PORTS, protos: PROTOCOLS }, 60_000);
    if (res.error) throw new Error(`policy trace: ${res.error}`);
    const denies = (v: string | undefined) => v === 'deny' || v === 'default-deny';
    const allowed = new Set<string>();
    for (const [key, steps] of Object.entries(res.cells!)) if (!denies(steps.egress) && !denies(steps.ingress)) allowed.add(key);
    return allowed;
  }
}
