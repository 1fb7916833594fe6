/**
 * Changes to a running testbed: stopping and (re)starting its processes by
 * role, extra hosts on the underlay, pods added and removed.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestbedError } from '../errors.js';
import { unwirePod, wirePod } from './pod.js';
import { ifName } from './ifname.js';
import { startEtcd } from './etcd.js';
import { controlAddress, podAddress, UNDERLAY_PREFIX_LEN, type PodSpec } from './topology.js';
import { addNetns, agentCommand, agentRole, alive, etcdTls, nsPrefix, pkiDir, save, sh, spawnIn, waitForFile, type TestbedState } from './state.js';

/** Kills the process with this role (e.g. "c1-n2-agent", "c3-etcd"); returns whether it ran. */
export async function stopRole(st: TestbedState, role: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<boolean> {
  const rec = st.processes.find((p) => p.role === role && alive(p.pid));
  if (!rec) return false;
  process.kill(rec.pid, signal);
  // a process that does not finish within 5 s is killed: the next one may need its TUN or port
  for (const [sig, ms] of [[null, 5000], ['SIGKILL', 2000]] as const) {
    if (sig && alive(rec.pid)) process.kill(rec.pid, sig);
    const end = Date.now() + ms;
    while (alive(rec.pid) && Date.now() < end) await sleep(20);
  }
  return true;
}

/** (Re)starts a node's agent with its existing config, key and endpoint state. */
export async function startAgent(st: TestbedState, cluster: string, node: string): Promise<void> {
  const n = st.clusters.find((c) => c.name === cluster)?.nodes.find((x) => x.name === node);
  if (!n) throw new TestbedError('WM_TESTBED_TARGET', `no node ${cluster}/${node}`);
  rmSync(n.socket, { force: true });
  const rec = spawnIn(st, n.netns, agentRole(cluster, node), agentCommand(join(st.dir, `${cluster}-${node}.yaml`)));
  try {
    await waitForFile(n.socket, 20_000, `agent ${cluster}/${node}`);
  } catch (err) {
    const tail = readFileSync(rec.log, 'utf8').trim().split('\n').slice(-5).join('\n');
    throw new TestbedError('WM_TESTBED_TIMEOUT', `${(err as Error).message}; its log ends:\n${tail}`);
  }
}

/** Restarts a cluster's etcd on its data directory (after stopRole(..., `${cluster}-etcd`)). */
export async function restartEtcd(st: TestbedState, cluster: string): Promise<void> {
  const ci = st.clusters.findIndex((c) => c.name === cluster);
  const c = st.clusters[ci]!;
  const log = join(st.dir, 'logs', `${cluster}-etcd.log`);
  const etcd = await startEtcd({ name: cluster, dataDir: join(st.dir, 'etcd', cluster), host: controlAddress(ci), clientPort: 2379, peerPort: 2380, netns: c.cpNetns, logFile: log, keepData: true, tls: etcdTls(pkiDir(st, cluster)) });
  etcd.proc.unref();
  st.processes.push({ pid: etcd.proc.pid!, role: `${cluster}-etcd`, netns: c.cpNetns, log });
  save(st);
}

/**
 * An extra host on the underlay (outside every cluster): an external client of
 * the ingress gateways, or the gateway DNS entry point. Removed with the testbed.
 */
export function addUnderlayHost(st: TestbedState, name: string, address: string): string {
  const ns = `${nsPrefix(st.name)}x-${name}`;
  addNetns(st, ns);
  const bridgeSide = ifName('ux', name);
  execFileSync('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', bridgeSide, 'netns', `${nsPrefix(st.name)}ul`]);
  sh(['ip', 'link', 'set', bridgeSide, 'master', 'br0', 'up'], `${nsPrefix(st.name)}ul`);
  sh(['ip', 'addr', 'add', `${address}/${UNDERLAY_PREFIX_LEN}`, 'dev', 'eth0'], ns);
  sh(['ip', 'link', 'set', 'eth0', 'up'], ns);
  return ns;
}

/**
 * Creates a pod: a namespace with a veth into its node, its /32 from the node's
 * pod CIDR (the next free .10+k), a default route via the node, and its
 * endpoint registered with the node's agent (as a CNI plugin would).
 */
export async function addPod(st: TestbedState, pod: PodSpec): Promise<TestbedState['pods'][number]> {
  const c = st.clusters.find((x) => x.name === pod.cluster);
  const node = c?.nodes.find((x) => x.name === pod.node);
  if (!c || !node) throw new TestbedError('WM_TESTBED_TARGET', `no node ${pod.cluster}/${pod.node}`);
  const used = new Set(st.pods.filter((p) => p.cluster === c.name && p.node === node.name).map((p) => p.ip));
  let k = 0;
  while (used.has(podAddress(node.podCIDR, k))) k++;
  const ip = podAddress(node.podCIDR, k);
  const ns = `${nsPrefix(st.name)}${pod.cluster}-p-${pod.name}`;
  const ip6 = node.podCIDRv6 ? podAddress(node.podCIDRv6, k) : undefined;
  st.namespaces.push(ns);
  save(st);
  await wirePod({ netns: ns, nodeNetns: node.netns, name: pod.name, namespace: pod.namespace, labels: pod.labels, ...(pod.ports ? { ports: pod.ports } : {}), ip, ...(ip6 ? { ip6 } : {}), socket: node.socket });
  const rec = { name: pod.name, cluster: pod.cluster, node: pod.node, namespace: pod.namespace, netns: ns, ip, ...(ip6 ? { ip6 } : {}) };
  st.pods.push(rec);
  save(st);
  return rec;
}

/** Deregisters a pod's endpoint and deletes its namespace. */
export async function removePod(st: TestbedState, cluster: string, name: string): Promise<void> {
  const i = st.pods.findIndex((p) => p.cluster === cluster && p.name === name);
  if (i < 0) throw new TestbedError('WM_TESTBED_TARGET', `no pod ${cluster}/${name}`);
  const pod = st.pods[i]!;
  const node = st.clusters.find((c) => c.name === cluster)!.nodes.find((n) => n.name === pod.node)!;
  await unwirePod({ netns: pod.netns, nodeNetns: node.netns, name: pod.name, namespace: pod.namespace, socket: node.socket });
  st.pods.splice(i, 1);
  st.namespaces = st.namespaces.filter((n) => n !== pod.netns);
  save(st);
}
