/**
 * A pod as a network namespace next to its node: a veth pair, the pod's /32
 * (and /128), the node as the pod's gateway (169.254.1.1 / fe80::1 on every
 * pod veth), source validation on the node side of the veth (podguard.ts: only
 * the pod's own addresses may come from it), resolv.conf pointing at the node's service DNS, and the endpoint
 * registered with the node's agent. The agent does the rest (routes into the
 * TUN, policy). Used by the namespace testbed (addPod) and by `wiremesh pod
 * add`, which the docker-compose testbed's node containers run.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { callAgent } from '../agent/client.js';
import { TestbedError } from '../errors.js';
import { installPodGuard, podVeth, removePodGuard } from './podguard.js';
import type { ContainerPort } from '../policy/ports.js';

export { podVeth };

export interface PodWiring {
  /** The pod's namespace (created here). */
  netns: string;
  /** The node's namespace; undefined: the current one. */
  nodeNetns?: string;
  name: string;
  namespace: string;
  labels: Record<string, string>;
  /** Named container ports, registered with the endpoint. */
  ports?: ContainerPort[];
  ip: string;
  ip6?: string;
  /** The node's agent API socket. */
  socket: string;
}

function sh(args: string[], netns?: string): void {
  const [cmd, ...rest] = netns ? ['ip', 'netns', 'exec', netns, ...args] : args;
  execFileSync(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Creates the pod's namespace and wiring, then registers it; returns after the agent accepted it. */
export async function wirePod(p: PodWiring): Promise<void> {
  execFileSync('ip', ['netns', 'add', p.netns]);
  sh(['ip', 'link', 'set', 'lo', 'up'], p.netns);
  const nodeSide = podVeth(p.name);
  execFileSync('ip', ['link', 'add', 'eth0', 'netns', p.netns, 'type', 'veth', 'peer', 'name', nodeSide, ...(p.nodeNetns ? ['netns', p.nodeNetns] : [])]);
  // The node answers for 169.254.1.1 on every pod veth: the pods' gateway.
  sh(['ip', 'addr', 'add', '169.254.1.1/32', 'dev', nodeSide], p.nodeNetns);
  // before the link is up: not one packet from the pod escapes validation
  installPodGuard(nodeSide, p.ip, p.ip6, p.nodeNetns);
  sh(['ip', 'link', 'set', nodeSide, 'up'], p.nodeNetns);
  sh(['ip', 'route', 'add', `${p.ip}/32`, 'dev', nodeSide], p.nodeNetns);
  sh(['ip', 'addr', 'add', `${p.ip}/32`, 'dev', 'eth0'], p.netns);
  sh(['ip', 'link', 'set', 'eth0', 'up'], p.netns);
  sh(['ip', 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link'], p.netns);
  sh(['ip', 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0'], p.netns);
  if (p.ip6) {
    // IPv6: the node is fe80::1 on every pod veth, the pod has a /128
    sh(['ip', '-6', 'addr', 'add', 'fe80::1/64', 'dev', nodeSide, 'nodad'], p.nodeNetns);
    sh(['ip', '-6', 'route', 'add', `${p.ip6}/128`, 'dev', nodeSide], p.nodeNetns);
    sh(['ip', '-6', 'addr', 'add', `${p.ip6}/128`, 'dev', 'eth0', 'nodad'], p.netns);
    sh(['ip', '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'eth0'], p.netns);
  }
  // The node's service DNS answers on the pods' gateway (ip netns exec
  // bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf).
  mkdirSync(`/etc/netns/${p.netns}`, { recursive: true });
  writeFileSync(`/etc/netns/${p.netns}/resolv.conf`, `nameserver 169.254.1.1\nsearch ${p.namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:2\n`);
  const res = await callAgent(p.socket, 'POST', '/v1/endpoints', { name: p.name, namespace: p.namespace, labels: p.labels, ips: p.ip6 ? [p.ip, p.ip6] : [p.ip], ...(p.ports?.length ? { ports: p.ports } : {}) });
  if (res.status !== 201) throw new TestbedError('WM_POD_REGISTER', `agent refused pod ${p.namespace}/${p.name}: ${JSON.stringify(res.body)}`);
}


/** Deregisters the pod and deletes its namespace and its source validation. */
export async function unwirePod(p: Pick<PodWiring, 'netns' | 'nodeNetns' | 'name' | 'namespace' | 'socket'>): Promise<void> {
  await callAgent(p.socket, 'DELETE', `/v1/endpoints/${p.namespace}/${p.name}`);
  execFileSync('ip', ['netns', 'del', p.netns]);
  removePodGuard(podVeth(p.name), p.nodeNetns);
  rmSync(`/etc/netns/${p.netns}`, { recursive: true, force: true });
}

/**
 * Runs `node <args>` in each pod, one after another, each resolved once it
 * writes its first line to stderr (the helpers' "listening"). Used by the
 * tests, the demo and the chaos runner.
 */
export async function startPodServers<P extends { netns: string }>(pods: P[], args: (p: P) => string[]): Promise<ChildProcess[]> {
  const servers: ChildProcess[] = [];
  for (const p of pods) {
    const s = spawn('ip', ['netns', 'exec', p.netns, process.execPath, ...args(p)], { stdio: ['ignore', 'ignore', 'pipe'] });
    servers.push(s);
    await new Promise<void>((r) => s.stderr!.once('data', () => r()));
  }
  return servers;
}
