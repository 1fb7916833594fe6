/**
 * `wiremesh pod label POD k=v ... k- ... [--overwrite]`: changes a pod's
 * labels through its node agent's API socket (PATCH /v1/endpoints/NS/NAME,
 * src/agent/labels.ts); the agent re-allocates the pod's identity and policy
 * follows. In a testbed, --cluster finds the pod's node socket.
 */
import type { Command } from 'commander';
import { AgentError, ConfigError, NotFoundError, WiremeshError } from '../errors.js';

/** The socket of the node that hosts testbed pod cluster/name. */
async function testbedPodSocket(cluster: string, name: string, testbed?: string): Promise<string> {
  const { loadState } = await import('../testbed/testbed.js');
  const st = loadState(testbed);
  const pod = st.pods.find((p) => p.cluster === cluster && p.name === name);
  if (!pod) throw new NotFoundError(`testbed ${st.name} has no pod ${cluster}/${name}`);
  return st.clusters.find((c) => c.name === cluster)!.nodes.find((n) => n.name === pod.node)!.socket;
}

export function registerPodLabel(pod: Command): void {
  pod
    .command('label <name> <labels...>')
    .description('add (k=v), change (k=v --overwrite) or remove (k-) labels of a pod on this node, through its agent')
    .option('-n, --namespace <ns>', 'Kubernetes namespace', 'default')
    .option('--overwrite', 'allow changing a key that already has a value')
    .option('--socket <path>', "the node agent's API socket", '/run/wiremesh/agent.sock')
    .option('--cluster <name>', "in a testbed: the pod's cluster (its node's socket is used)")
    .option('--testbed <name>', 'the testbed (when several are up)')
    .action(async (name: string, args: string[], o: { namespace: string; overwrite?: boolean; socket: string; cluster?: string; testbed?: string }) => {
      const { callAgent } = await import('../agent/client.js');
      const { parseLabelArgs } = await import('../agent/labels.js');
      const labels = parseLabelArgs(args);
      const socket = o.cluster ? await testbedPodSocket(o.cluster, name, o.testbed) : o.socket;
      const res = await callAgent(socket, 'PATCH', `/v1/endpoints/${encodeURIComponent(o.namespace)}/${encodeURIComponent(name)}`, { labels, overwrite: !!o.overwrite });
      const body = (res.body ?? {}) as { error?: string; field?: string; warnings?: string[] };
      if (res.status === 404) throw new NotFoundError(`pod ${o.namespace}/${name}: ${body.error ?? 'not found'}`);
      // the agent's own words (it built a LabelExistsError), so the base class with that code
      if (res.status === 409) throw new WiremeshError('WM_LABEL_EXISTS', `pod ${o.namespace}/${name}: ${body.error}`);
      if (res.status === 400) throw new ConfigError(body.field ?? '(request)', String(body.error).replace(/^[^:]*: /, ''));
      if (res.status !== 200) throw new AgentError('WM_AGENT_API', `agent answered ${res.status}: ${body.error ?? ''}`);
      for (const w of body.warnings ?? []) process.stderr.write(`warning: ${w}\n`);
      console.log(`pod/${o.namespace}/${name} labeled`);
    });
}
