// NetworkPolicy conformance, judged by an independent model of the API.
//
// Written from the upstream Kubernetes e2e NetworkPolicy suite,
// kubernetes/kubernetes test/e2e/network/netpol (network_policy.go: the cases;
// model.go, reachability.go, probe.go: namespaces x, y, z with pods a, b, c
// each, labelled pod=<name>, serving TCP and UDP on ports 80 and 81, and the
// full reachability truth table checked after each step), and from the
// networking.k8s.io/v1 API reference (policyTypes defaulting, selectors,
// ports, ipBlock). The cases are test/conformance/cases.ts; the expectations
// come from test/conformance/model.ts, which imports nothing from src/.
//
// Topology: cluster c1 (two nodes, x/y/z × a/b/c spread over both) and
// cluster c2 (one node, x/a, x/b, y/a, z/a), every case's manifests applied to
// both: same-node, cross-node and cross-cluster pairs are all in the table.
// For each step the table is probed from every pod at once (prober: the
// `netpol` mode of src/chaos/probe.ts); cells that disagree with the model are
// probed again until they agree or a bound passes (propagation, a lost
// datagram). `policy trace` is asked about the same cells and compared with
// the model too. One line reports the totals; the test asserts that all pass.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunNetns, hasCommand } from '../../src/testbed/netns.js';
import { testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { conformanceCases, type Case, type NamespaceManifest, type Step } from '../conformance/cases.js';
import { cellKey, Harness, podText, PORTS, PROTOCOLS, type Cell } from '../conformance/harness.js';
import { allowed, type ContainerPort, type Labels, type ModelPod, type NetworkPolicy, type World } from '../conformance/model.js';
import { writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd');
const SERVE: ContainerPort[] = PROTOCOLS.flatMap((proto) => PORTS.map((port) => ({ name: `serve-${port}-${proto.toLowerCase()}`, containerPort: port, protocol: proto })));
const C1_PODS = ['x', 'y', 'z'].flatMap((ns) => ['a', 'b', 'c'].map((p) => `${ns}/${p}`));
const C2_PODS = ['x/a', 'x/b', 'y/a', 'z/a'];

interface Result {
  c: Case;
  error?: string;
  /** Cells where the data path disagrees with the model. */
  diffs: string[];
  /** Cells where `policy trace` disagrees with the model. */
  traceDiffs: string[];
}

describe.skipIf(!enabled)('NetworkPolicy conformance (the upstream e2e model)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmconf-'));
  const file = join(dir, 'topo.yaml');
  const name = `cf${process.pid % 100000}`;
  let st: TestbedState;
  let h: Harness;
  let pods: ModelPod[] = [];
  const original = new Map<ModelPod, Labels>();
  const world: World = { namespaces: [], pods: [], policies: [] };

  beforeAll(async () => {
    const modelPod = (cluster: string, spec: string, i: number, nodes: string[]) => {
      const [ns, p] = spec.split('/') as [string, string];
      return { name: `${ns}${p}`, cluster, node: nodes[i % nodes.length]!, namespace: ns, labels: { pod: p }, ports: SERVE };
    };
    writeTopology(file, {
      name,
      clusters: [2, 1],
      pods: [...C1_PODS.map((s, i) => modelPod('c1', s, i, ['n1', 'n2'])), ...C2_PODS.map((s, i) => modelPod('c2', s, i, ['n1']))],
    });
    st = await testbedUp(file);
    pods = st.pods.map((p) => ({ cluster: p.cluster, namespace: p.namespace, name: p.name, labels: { pod: p.name.slice(1) }, ip: p.ip, node: p.node, ports: SERVE }));
    for (const p of pods) original.set(p, { ...p.labels });
    world.pods = pods;
    world.namespaces = st.clusters.flatMap((c) => ['x', 'y', 'z'].map((n) => ({ cluster: c.name, name: n, labels: {} })));
    h = new Harness(st, dir);
    await h.start();
  }, 240_000);

  afterAll(async () => {
    h?.stop();
    await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  /** Every ordered pair of distinct pods (loopback is not judged, as upstream), TCP and UDP, ports 80 and 81. */
  const allCells = (): Cell[] => pods.flatMap((from) => pods.filter((to) => to !== from).flatMap((to) => PROTOCOLS.flatMap((protocol) => PORTS.map((port) => ({ from, to, protocol, port })))));
  const cellText = (c: Cell, expected: boolean, observed: boolean) => `${podText(c.from)} -> ${podText(c.to)} ${c.protocol}/${c.port}: expected ${expected ? 'allow' : 'deny'}, observed ${observed ? 'allow' : 'deny'}`;
  const podsOf = (spec: string) => pods.filter((p) => p.namespace === spec.split('/')[0] && original.get(p)!.pod === spec.split('/')[1]);

  /** Applies a step's actions to the testbed and to the model. */
  async function act(step: Step, applied: Set<string>): Promise<{ policiesChanged: boolean }> {
    const policies = (step.apply ?? []).filter((m): m is NetworkPolicy => m.kind === 'NetworkPolicy');
    const before = policies.length || step.delete?.length ? await h.snapshot() : undefined;
    if (step.apply?.length) await h.apply(step.apply);
    for (const m of step.apply ?? []) {
      if (m.kind === 'Namespace') {
        const ns = m as NamespaceManifest;
        for (const n of world.namespaces.filter((x) => x.name === ns.metadata.name)) n.labels = { ...ns.metadata.labels };
      } else {
        const p = m as NetworkPolicy;
        world.policies = world.policies.filter((a) => !(a.policy.metadata.namespace === p.metadata.namespace && a.policy.metadata.name === p.metadata.name));
        world.policies.push(...st.clusters.map((c) => ({ cluster: c.name, policy: p })));
        applied.add(`${p.metadata.namespace}/${p.metadata.name}`);
      }
    }
    if (step.delete?.length) {
      await h.deletePolicies(step.delete);
      for (const d of step.delete) applied.delete(d);
      world.policies = world.policies.filter((a) => !step.delete!.includes(`${a.policy.metadata.namespace}/${a.policy.metadata.name}`));
    }
    for (const [spec, labels] of Object.entries(step.labelPods ?? {}))
      for (const p of podsOf(spec)) {
        await h.labelPod(p, labels);
        p.labels = { ...labels };
      }
    if (before) await h.waitForPolicies(applied, before, 5_000);
    return { policiesChanged: !!before };
  }

  /** Probes the table until it agrees with the model or boundMs passes; the cells that still disagree. */
  async function judge(boundMs: number): Promise<string[]> {
    const cells = allCells();
    const expected = new Map(cells.map((c) => [cellKey(c), allowed(world, c.from, c.to, c.protocol, c.port)]));
    const end = Date.now() + boundMs;
    let reached = await h.probe(cells, 1000);
    let wrong = cells.filter((c) => expected.get(cellKey(c)) !== reached.has(cellKey(c)));
    while (wrong.length && Date.now() < end) {
      await sleep(300);
      reached = await h.probe(wrong, 1500);
      wrong = wrong.filter((c) => expected.get(cellKey(c)) !== reached.has(cellKey(c)));
    }
    return wrong.map((c) => cellText(c, expected.get(cellKey(c))!, !expected.get(cellKey(c))));
  }

  /**
   * Asks `policy trace` until it agrees with the model or boundMs passes. It reads etcd, which is final
   * for policies once `wiremesh apply` returns, but not for labels: a namespace's new labels give its pods
   * new identities only once their agents (and, across clusters, kvstoremesh) wrote them back.
   */
  async function traceDiffs(boundMs: number): Promise<string[]> {
    const end = Date.now() + boundMs;
    for (;;) {
      const traced = await h.traceAllowed(pods);
      const diffs = allCells().flatMap((c) => {
        const e = allowed(world, c.from, c.to, c.protocol, c.port);
        const t = traced.has(cellKey(c));
        return e === t ? [] : [cellText(c, e, t).replace('observed', 'trace')];
      });
      if (diffs.length === 0 || Date.now() >= end) return diffs;
      await sleep(500);
    }
  }

  /** Puts the testbed back as it was before the case: no policies, original pod and namespace labels. */
  async function reset(applied: Set<string>, touchedNamespaces: Set<string>): Promise<void> {
    await h.deletePolicies([...applied]);
    world.policies = [];
    for (const p of pods)
      if (JSON.stringify(p.labels) !== JSON.stringify(original.get(p))) {
        p.labels = { ...original.get(p)! };
        await h.labelPod(p, p.labels);
      }
    await h.waitForPolicies(new Set(), undefined, 5_000);
    if (touchedNamespaces.size) {
      for (const n of world.namespaces) n.labels = {};
      await h.apply([...touchedNamespaces].map((n) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: n, labels: {} } })));
    }
  }

  /** Seconds spent in each phase over the whole run (the report's measurements). */
  const phases: Record<string, number> = {};
  async function timed<T>(phase: string, f: () => Promise<T>): Promise<T> {
    const t = Date.now();
    try {
      return await f();
    } finally {
      phases[phase] = (phases[phase] ?? 0) + (Date.now() - t) / 1000;
    }
  }

  async function runCase(c: Case): Promise<Result> {
    const r: Result = { c, diffs: [], traceDiffs: [] };
    const applied = new Set<string>();
    const namespaces = new Set<string>();
    try {
      for (const [i, step] of c.steps.entries()) {
        for (const m of step.apply ?? []) if (m.kind === 'Namespace') namespaces.add(m.metadata.name);
        const { policiesChanged } = await timed('act', () => act(step, applied));
        const tag = c.steps.length > 1 ? `step ${i + 1}: ` : '';
        // policies: the agents said they have them; labels: identities travel through etcd first.
        // trace runs while the probes wait out their timeouts, with the same bound
        const bound = c.settleMs ?? (policiesChanged ? 3_000 : 8_000);
        const [diffs, tdiffs] = await Promise.all([timed('probe', () => judge(bound)), timed('trace', () => traceDiffs(bound))]);
        r.diffs.push(...diffs.map((d) => tag + d));
        r.traceDiffs.push(...tdiffs.map((d) => tag + d));
      }
    } catch (err) {
      r.error = (err as Error).message;
    }
    try {
      await timed('reset', () => reset(applied, namespaces));
    } catch (err) {
      r.error = `${r.error ? `${r.error}; ` : ''}reset: ${(err as Error).message}`;
    }
    return r;
  }

  it('the data path and `policy trace` allow exactly what the API says, case by case', async () => {
    const ip = (spec: string) => podsOf(spec).find((p) => p.cluster === 'c1')!.ip;
    // the baseline runs first, right after the testbed came up: it also waits (up to 60 s) for the mesh to
    // converge (tunnels, identities of 13 pods in two clusters) before any policy case is judged against it
    const cases: Case[] = [{ name: 'no policy: every pod reaches every pod', source: 'api', steps: [{}], settleMs: 60_000 }, ...conformanceCases({ ip })];
    const results: Result[] = [];
    const t0 = Date.now();
    for (const c of cases) results.push(await runCase(c));
    const failed = results.filter((r) => r.error || r.diffs.length);
    const traceFailed = results.filter((r) => r.traceDiffs.length);
    const upstreamN = cases.filter((c) => c.source === 'upstream').length;
    const lines = [
      `conformance: ${results.length - failed.length} cases passed, ${failed.length} failed (${upstreamN} upstream e2e cases, ${cases.length - upstreamN} API cases; ${allCells().length} cells a step; ${Math.round((Date.now() - t0) / 1000)} s); ` +
        `policy trace agrees with the model on ${results.length - traceFailed.length} cases, disagrees on ${traceFailed.length}`,
      `  time: ${Object.entries(phases).map(([k, v]) => `${k} ${Math.round(v)} s`).join(', ')} (probe and trace overlap)`,
    ];
    const show = (diffs: string[]) => [...diffs.slice(0, 8).map((d) => `    ${d}`), ...(diffs.length > 8 ? [`    ... and ${diffs.length - 8} more cells`] : [])];
    for (const r of failed) {
      lines.push(`FAILED [${r.c.source}] ${r.c.name}${r.c.needs ? ` (needs ${r.c.needs.join(', ')})` : ''}${r.error ? `: ${r.error}` : ''}`);
      lines.push(...show(r.diffs));
    }
    for (const r of traceFailed) {
      lines.push(`TRACE DISAGREES [${r.c.source}] ${r.c.name}${r.c.needs ? ` (needs ${r.c.needs.join(', ')})` : ''}`);
      lines.push(...show(r.traceDiffs));
    }
    console.log(lines.join('\n'));
    expect(failed.map((r) => r.c.name)).toEqual([]);
    expect(traceFailed.map((r) => r.c.name)).toEqual([]);
  }, 900_000);
});
