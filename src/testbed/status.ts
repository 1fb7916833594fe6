/** `wiremesh testbed status|exec` and the access other commands get to a running testbed's clusters. */
import { spawn } from 'node:child_process';
import { TestbedError } from '../errors.js';
import { callAgent } from '../agent/client.js';
import { alive, etcdFlags, loadState, pkiDir, type ProcRecord, type TestbedState } from './state.js';

export async function testbedStatus(name?: string): Promise<Record<string, unknown>> {
  const st = loadState(name);
  const clusters = [];
  for (const c of st.clusters) {
    const nodes = [];
    for (const n of c.nodes) {
      const s = await callAgent(n.socket, 'GET', '/v1/status').catch((err: Error) => ({ status: 0, body: { error: err.message } }));
      nodes.push({ name: n.name, address: n.address, podCIDR: n.podCIDR, agent: s.body });
    }
    clusters.push({ name: c.name, id: c.id, etcd: c.etcd, nodes });
  }
  return {
    name: st.name,
    processes: st.processes.map((p) => ({ ...p, alive: alive(p.pid) })),
    clusters,
    pods: st.pods,
  };
}

export function formatStatus(s: Record<string, unknown>): string {
  const out: string[] = [`testbed ${s.name}`];
  for (const c of s.clusters as Array<{ name: string; id: number; nodes: Array<{ name: string; address: string; podCIDR: string; agent: { peers?: Array<{ id: string; lastHandshakeAgeS: number | null; rxBytes: number; txBytes: number }>; error?: string } }> }>) {
    out.push(`cluster ${c.name} (id ${c.id})`);
    for (const n of c.nodes) {
      out.push(`  node ${n.name} ${n.address} pods ${n.podCIDR}${n.agent.error ? `  agent: ${n.agent.error}` : ''}`);
      for (const p of n.agent.peers ?? [])
        out.push(`    peer ${p.id.padEnd(16)} handshake ${p.lastHandshakeAgeS === null ? 'never' : `${p.lastHandshakeAgeS}s ago`}  rx ${p.rxBytes} tx ${p.txBytes}`);
    }
  }
  out.push('pods:');
  for (const p of s.pods as TestbedState['pods']) out.push(`  ${p.cluster}/${p.name} ${p.ip} on ${p.node} (ns ${p.namespace})`);
  const dead = (s.processes as Array<ProcRecord & { alive: boolean }>).filter((p) => !p.alive);
  out.push(dead.length ? `dead processes: ${dead.map((p) => p.role).join(', ')}` : 'all processes running');
  return out.join('\n');
}

/** Where a testbed cluster's etcd is reachable from, and the flags to reach it as `user` (root: operator commands; observer: read-only). */
export function testbedClusterAccess(cluster: string, name?: string, user: 'root' | 'kvstoremesh' | 'observer' = 'root'): { netns: string; flags: string[] } {
  const st = loadState(name);
  const c = st.clusters.find((x) => x.name === cluster);
  if (!c) throw new TestbedError('WM_TESTBED_TARGET', `testbed ${st.name} has no cluster ${cluster}`);
  return { netns: c.cpNetns, flags: etcdFlags('', c.etcd, pkiDir(st, cluster), user) };
}

/** Runs cmd in CLUSTER/POD's namespace (or CLUSTER/NODE's); returns its exit code. */
export async function testbedExec(target: string, cmd: string[], name?: string): Promise<number> {
  const st = loadState(name);
  const [cluster, what] = target.split('/');
  const pod = st.pods.find((p) => p.cluster === cluster && p.name === what);
  const node = st.clusters.find((c) => c.name === cluster)?.nodes.find((n) => n.name === what);
  const ns = pod?.netns ?? node?.netns;
  if (!ns) throw new TestbedError('WM_TESTBED_TARGET', `no pod or node "${target}" in testbed ${st.name}`);
  if (cmd[0] === '--') cmd = cmd.slice(1);
  if (cmd.length === 0) throw new TestbedError('WM_TESTBED_TARGET', 'no command given: testbed exec CLUSTER/POD -- CMD...');
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: 'inherit' });
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

