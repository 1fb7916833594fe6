/**
 * `wiremesh testbed up|down|status|exec`: a multi-cluster mesh built from
 * network namespaces on this machine.
 *
 *   wmtb-<name>-ul                 underlay: bridge br0, every node and control plane plugged in
 *   wmtb-<name>-<cluster>-cp       etcd + kvstoremesh of the cluster (198.18.<i>.2)
 *   wmtb-<name>-<cluster>-<node>   a node: agent (TUN wm0, UDP 51820), eth0 198.18.<i>.<10+j>
 *   wmtb-<name>-<cluster>-p-<pod>  a pod: eth0 with its /32, default route via the node
 *
 * Everything lives under /run/wiremesh-testbed/<name>/ (configs, keys, logs,
 * etcd data, state.json with PIDs). Least privilege in etcd as in production
 * (controlplane/rbac.ts): kvstoremesh uses the cluster's CN=kvstoremesh
 * certificate, each agent its own CN=node-<node> one (creds/<cluster>-<node>/,
 * from `clustermesh node-credentials`), observers CN=observer; CN=root only the
 * operator commands (enable, connect, apply, status). `down` kills what state.json lists and,
 * to survive a crash that lost state.json, every process inside and every
 * namespace named wmtb-<name>-*.
 */
import { z } from 'zod';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestbedError } from '../errors.js';
import { callAgent } from '../agent/client.js';
import { socketPath } from './ifname.js';
import { createClusterPKI } from '../controlplane/pki.js';
import { startEtcd } from './etcd.js';
import { controlAddress, loadTopology, nodeAddress, nodePodCIDR, underlayCIDR, nodePodCIDRv6, UNDERLAY_PREFIX_LEN, type Topology } from './topology.js';
import { addPod } from './roles.js';
import {
  addNetns,
  agentCommand,
  agentRole,
  alive,
  cliIn,
  cliInAsync,
  credDir,
  etcdFlags,
  etcdTls,
  nsPrefix,
  pkiDir,
  save,
  sh,
  spawnIn,
  stateDir,
  waitForFile,
  WIREMESH,
  type TestbedState,
} from './state.js';

// the testbed's whole API from one module (state.ts, roles.ts and status.ts hold the parts)
export { activeTestbeds, cliIn, etcdFlags, loadState, spawnIn, STATE_ROOT, WIREMESH, type TestbedState } from './state.js';
export { addPod, addUnderlayHost, removePod, restartEtcd, startAgent, stopRole } from './roles.js';
export { formatStatus, testbedClusterAccess, testbedExec, testbedStatus } from './status.js';

/** The TCP port of each cluster's `kvstoremesh --metrics`, on its control plane's underlay address (the agents': 9962). */
export const KVSTOREMESH_METRICS_PORT = 9963;

export async function testbedUp(file: string, progress: (msg: string) => void = () => undefined): Promise<TestbedState> {
  const topo = loadTopology(file);
  if (process.getuid?.() !== 0) throw new TestbedError('WM_NOT_ROOT', 'the testbed needs root (network namespaces)');
  const dir = stateDir(topo.name);
  if (existsSync(join(dir, 'state.json'))) throw new TestbedError('WM_TESTBED_EXISTS', `testbed ${topo.name} is already up: run \`wiremesh testbed down ${file}\` first`);
  await teardown(topo.name, () => undefined); // leftovers of a crashed run
  mkdirSync(join(dir, 'logs'), { recursive: true });
  mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
  const st: TestbedState = { name: topo.name, file: topo.file, dir, namespaces: [], processes: [], clusters: [], pods: [] };
  save(st);
  try {
    await build(topo, st, progress);
  } catch (err) {
    progress(`testbed up failed (${(err as Error).message}); tearing down`);
    await teardown(topo.name, progress);
    throw err;
  }
  return st;
}

async function build(topo: Topology, st: TestbedState, progress: (msg: string) => void): Promise<void> {
  const p = nsPrefix(topo.name);
  const ul = `${p}ul`;
  progress(`underlay ${ul}`);
  addNetns(st, ul);
  sh(['ip', 'link', 'add', 'br0', 'type', 'bridge'], ul);
  sh(['ip', 'link', 'set', 'br0', 'up'], ul);
  let port = 0;
  const plug = (ns: string, addr: string) => {
    const bridgeSide = `ul${port++}`;
    execFileSync('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', bridgeSide, 'netns', ul]);
    sh(['ip', 'link', 'set', bridgeSide, 'master', 'br0', 'up'], ul);
    sh(['ip', 'addr', 'add', `${addr}/${UNDERLAY_PREFIX_LEN}`, 'dev', 'eth0'], ns);
    sh(['ip', 'link', 'set', 'eth0', 'up'], ns);
  };

  // control planes: etcd + kvstoremesh per cluster
  for (const [ci, c] of topo.clusters.entries()) {
    const cp = `${p}${c.name}-cp`;
    progress(`cluster ${c.name}: etcd and kvstoremesh in ${cp}`);
    addNetns(st, cp);
    plug(cp, controlAddress(ci));
    const pki = pkiDir(st, c.name);
    createClusterPKI(pki, c.name, [controlAddress(ci)]);
    const etcd = await startEtcd({
      name: c.name,
      dataDir: join(st.dir, 'etcd', c.name),
      host: controlAddress(ci),
      clientPort: 2379,
      peerPort: 2380,
      netns: cp,
      logFile: join(st.dir, 'logs', `${c.name}-etcd.log`),
      tls: etcdTls(pki),
    });
    etcd.proc.unref();
    st.processes.push({ pid: etcd.proc.pid!, role: `${c.name}-etcd`, netns: cp, log: join(st.dir, 'logs', `${c.name}-etcd.log`) });
    st.clusters.push({ name: c.name, id: c.id, podCIDR: c.podCIDR, etcd: etcd.clientUrl, cpNetns: cp, nodes: [] });
    save(st);
    // etcd addresses exist only inside the testbed: talk to them from a namespace on the underlay.
    cliIn(cp, ['clustermesh', 'enable', ...etcdFlags('', etcd.clientUrl, pki), '--cluster', c.name, '--id', String(c.id), '--pod-cidr', [c.podCIDR, ...(c.podCIDRv6 ? [c.podCIDRv6] : [])].join(','), '--underlay-cidrs', underlayCIDR(ci), ...(topo.hub === c.name ? ['--relay'] : [])]);
    // its Prometheus metrics on the control plane's underlay address (docs/testbed.md), as the agents' on theirs
    spawnIn(st, cp, `${c.name}-kvstoremesh`, [process.execPath, WIREMESH, 'kvstoremesh', '--cluster', c.name, '--metrics', `${controlAddress(ci)}:${KVSTOREMESH_METRICS_PORT}`, ...etcdFlags('', etcd.clientUrl, pki, 'kvstoremesh')]);
  }

  // each agent's own etcd user (it may write only its own records): clusters in parallel,
  // one cluster's nodes one after the other (they share its CA's serial file)
  progress('node credentials');
  await Promise.all(
    topo.clusters.map(async (c, ci) => {
      const cst = st.clusters[ci]!;
      for (const n of c.nodes)
        await cliInAsync(cst.cpNetns, ['clustermesh', 'node-credentials', ...etcdFlags('', cst.etcd, pkiDir(st, c.name)), '--cluster', c.name, '--node', n, '--dir', pkiDir(st, c.name), '--out', credDir(st, c.name, n)]);
    }),
  );

  // nodes: one agent each
  for (const [ci, c] of topo.clusters.entries()) {
    const cst = st.clusters[ci]!;
    for (const [ni, n] of c.nodes.entries()) {
      const ns = `${p}${c.name}-${n}`;
      progress(`cluster ${c.name}: node ${n}`);
      addNetns(st, ns);
      plug(ns, nodeAddress(ci, ni));
      sh(['sysctl', '-qw', 'net.ipv4.ip_forward=1'], ns);
      sh(['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1'], ns);
      // a hub node forwards TUN to TUN: that is routing, not a reason for ICMP redirects
      sh(['sysctl', '-qw', 'net.ipv4.conf.all.send_redirects=0'], ns);
      const podCIDR = nodePodCIDR(c, ni);
      const podCIDRv6 = nodePodCIDRv6(c, ni);
      const socket = socketPath(st.dir, `${c.name}-${n}`); // cluster (32) and node (63) names: may need shortening
      const cfgFile = join(st.dir, `${c.name}-${n}.yaml`);
      writeFileSync(
        cfgFile,
        [
          `cluster: { name: ${c.name}, id: ${c.id} }`,
          `node: { name: ${n}, addresses: [${nodeAddress(ci, ni)}], podCIDRs: [${podCIDR}${podCIDRv6 ? `, "${podCIDRv6}"` : ''}] }`,
          `wireguard: { interface: wm0, port: 51820, privateKeyFile: ${join(st.dir, 'keys', `${c.name}-${n}.key`)} }`,
          `etcd: { endpoints: [${cst.etcd}], caFile: ${join(credDir(st, c.name, n), 'ca.crt')}, certFile: ${join(credDir(st, c.name, n), 'node.crt')}, keyFile: ${join(credDir(st, c.name, n), 'node.key')} }`,
          `api: { socket: ${socket} }`,
          `metrics: { address: ${nodeAddress(ci, ni)}, port: 9962 }`,
          '',
        ].join('\n'),
      );
      spawnIn(st, ns, agentRole(c.name, n), agentCommand(cfgFile));
      cst.nodes.push({ name: n, netns: ns, address: nodeAddress(ci, ni), podCIDR, ...(podCIDRv6 ? { podCIDRv6 } : {}), socket });
      save(st);
    }
  }
  for (const c of st.clusters) for (const n of c.nodes) await waitForFile(n.socket, 20_000, `agent ${c.name}/${n.name}`);

  // pods
  for (const pod of topo.pods) {
    const added = await addPod(st, pod);
    progress(`pod ${pod.cluster}/${pod.name} on ${pod.node}: ${added.ip}`);
  }

  // mesh
  const cl = (name: string) => st.clusters.find((c) => c.name === name)!;
  // what a spoke lets the hub relay to it: the pod CIDRs of every other cluster the hub will be connected to (the
  // default, those connected so far, would leave the first spokes with nothing)
  const behindHub = (self: string) => {
    const linked = topo.connect.flatMap(([x, y]) => (x === topo.hub ? [y] : y === topo.hub ? [x] : [])).filter((n) => n !== self);
    return topo.clusters.filter((c) => linked.includes(c.name)).flatMap((c) => [c.podCIDR, ...(c.podCIDRv6 ? [c.podCIDRv6] : [])]).join(',');
  };
  const relayFlag = (side: string, self: string, other: string) => (other === topo.hub && behindHub(self) ? [`--${side}-relay-cidrs`, behindHub(self)] : []);
  for (const [a, b] of topo.connect) {
    progress(`clustermesh connect ${a} <-> ${b}`);
    cliIn(cl(a).cpNetns, ['clustermesh', 'connect', ...etcdFlags('a', cl(a).etcd, pkiDir(st, a)), '--a-pki', pkiDir(st, a), ...etcdFlags('b', cl(b).etcd, pkiDir(st, b)), '--b-pki', pkiDir(st, b), ...relayFlag('a', a, b), ...relayFlag('b', b, a)]);
  }
  for (const [cluster, files] of Object.entries(topo.manifests)) {
    progress(`apply ${files.length} manifest file(s) to ${cluster}`);
    const c = cl(cluster);
    cliIn(c.cpNetns, ['apply', '--cluster', cluster, ...etcdFlags('', c.etcd, pkiDir(st, cluster)), '-f', ...files]);
  }
  progress('waiting for every node to reach its peers');
  await waitConverged(st, topo, 60_000);
  progress(`testbed ${topo.name} is up: ${st.clusters.length} clusters, ${st.clusters.reduce((n, c) => n + c.nodes.length, 0)} nodes, ${st.pods.length} pods`);
}

/**
 * Every agent has a peer for every node of its cluster and of each connected
 * cluster and, where it enforces policy, knows every pod of those clusters
 * (their endpoints and so their identities: a packet from a pod not known yet
 * is from the world and policy denies it, so a test's first packet would race
 * the mirror).
 */
async function waitConverged(st: TestbedState, topo: Topology, ms: number): Promise<void> {
  const end = Date.now() + ms;
  // per cluster, what each of its agents should reach: the nodes (but itself) and pods of it and its linked clusters
  const expected = new Map(
    st.clusters.map((c) => {
      const linked = new Set([c.name, ...topo.connect.flatMap(([a, b]) => (a === c.name ? [b] : b === c.name ? [a] : []))]);
      const peers = st.clusters.filter((x) => linked.has(x.name)).reduce((n, x) => n + x.nodes.length, 0) - 1;
      return [c.name, { peers, pods: st.pods.filter((p) => linked.has(p.cluster)).length }];
    }),
  );
  for (;;) {
    let pending = '';
    for (const c of st.clusters)
      for (const n of c.nodes) {
        const want = expected.get(c.name)!;
        const s = (await callAgent(n.socket, 'GET', '/v1/status').catch(() => null))?.body as { peers?: unknown[]; endpoints?: number; policy?: unknown } | undefined;
        const have = s?.peers?.length ?? -1;
        if (have !== want.peers) pending = `${c.name}/${n.name} has ${have} of ${want.peers} peers`;
        else if (s?.policy && (s.endpoints ?? 0) < want.pods) pending = `${c.name}/${n.name} knows ${s.endpoints} of ${want.pods} pods`;
      }
    if (!pending) return;
    if (Date.now() > end) throw new TestbedError('WM_TESTBED_TIMEOUT', `mesh did not converge: ${pending}`);
    await sleep(200);
  }
}

export async function testbedDown(file: string, progress: (msg: string) => void = () => undefined): Promise<void> {
  const topo = loadTopology(file);
  await teardown(topo.name, progress);
}

/** What teardown reads of a state file that may be torn or stale: the processes to stop. */
const statePids = z.object({ processes: z.array(z.object({ pid: z.number().int().positive() }).passthrough()) }).passthrough();

async function teardown(name: string, progress: (msg: string) => void): Promise<void> {
  const dir = stateDir(name);
  const stFile = join(dir, 'state.json');
  const pids = new Set<number>();
  if (existsSync(stFile)) {
    try {
      for (const p of statePids.parse(JSON.parse(readFileSync(stFile, 'utf8'))).processes) pids.add(p.pid);
    } catch {
      /* a torn state file: the namespace scan below still finds everything */
    }
  }
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(nsPrefix(name)));
  for (const ns of namespaces) {
    try {
      for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean)) pids.add(Number(pid));
    } catch {
      /* namespace vanished */
    }
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  const end = Date.now() + 3000;
  while (Date.now() < end && [...pids].some(alive)) await sleep(50);
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  // give the kernel (and our event loop, which reaps children we spawned) a moment to finish them
  const killedBy = Date.now() + 2000;
  while (Date.now() < killedBy && [...pids].some(alive)) await sleep(20);
  for (const ns of namespaces) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
    rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
  }
  if (namespaces.length || pids.size) progress(`testbed ${name}: stopped ${pids.size} processes, removed ${namespaces.length} namespaces`);
  rmSync(dir, { recursive: true, force: true });
}
