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
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestbedError } from '../errors.js';
import { callAgent } from '../agent/client.js';
import { unwirePod, wirePod } from './pod.js';
import { ifName, socketPath } from './ifname.js';
import { createClusterPKI, pkiFiles } from '../controlplane/pki.js';
import { startEtcd } from './etcd.js';
import { ROOT } from './netns.js';
import {
  controlAddress,
  loadTopology,
  nodeAddress,
  nodePodCIDR,
  nodePodCIDRv6,
  podAddress,
  UNDERLAY_PREFIX_LEN,
  type PodSpec,
  type Topology,
} from './topology.js';

export const STATE_ROOT = '/run/wiremesh-testbed';
export const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');

interface ProcRecord {
  pid: number;
  role: string;
  netns: string;
  log: string;
}

export interface TestbedState {
  name: string;
  file: string;
  dir: string;
  namespaces: string[];
  processes: ProcRecord[];
  clusters: Array<{ name: string; id: number; podCIDR: string; etcd: string; cpNetns: string; nodes: Array<{ name: string; netns: string; address: string; podCIDR: string; podCIDRv6?: string; socket: string }> }>;
  pods: Array<{ name: string; cluster: string; node: string; namespace: string; netns: string; ip: string; ip6?: string }>;
}

const nsPrefix = (name: string) => `wmtb-${name}-`;
const stateDir = (name: string) => join(STATE_ROOT, name);

function sh(args: string[], netns?: string): string {
  const [cmd, ...rest] = netns ? ['ip', 'netns', 'exec', netns, ...args] : args;
  return execFileSync(cmd!, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** cliIn without blocking the event loop (several run at once). */
function cliInAsync(netns: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', netns, process.execPath, WIREMESH, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new TestbedError('WM_TESTBED_CLI', `wiremesh ${args.slice(0, 2).join(' ')} in ${netns}: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
  });
}

/** Runs the wiremesh CLI inside a namespace (where the testbed's addresses are). */
export function cliIn(netns: string, args: string[]): string {
  try {
    return execFileSync('ip', ['netns', 'exec', netns, process.execPath, WIREMESH, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new TestbedError('WM_TESTBED_CLI', `wiremesh ${args.slice(0, 2).join(' ')} in ${netns}: ${(e.stderr ?? e.message).trim()}`);
  }
}

function save(st: TestbedState): void {
  writeFileSync(join(st.dir, 'state.json'), JSON.stringify(st, null, 1));
}

function addNetns(st: TestbedState, ns: string): void {
  execFileSync('ip', ['netns', 'add', ns]);
  st.namespaces.push(ns);
  save(st);
  sh(['ip', 'link', 'set', 'lo', 'up'], ns);
}

export function spawnIn(st: TestbedState, netns: string, role: string, args: string[]): ProcRecord {
  const log = join(st.dir, 'logs', `${role.replace(/[^a-z0-9-]/gi, '_')}.log`);
  const fd = openSync(log, 'a');
  const child = spawn('ip', ['netns', 'exec', netns, ...args], { detached: true, stdio: ['ignore', fd, fd] });
  child.unref();
  const rec = { pid: child.pid!, role, netns, log };
  st.processes.push(rec);
  save(st);
  return rec;
}

async function waitForFile(path: string, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new TestbedError('WM_TESTBED_TIMEOUT', `${what} did not come up within ${ms / 1000} s`);
    await sleep(50);
  }
}

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
    cliIn(cp, ['clustermesh', 'enable', ...etcdFlags('', etcd.clientUrl, pki), '--cluster', c.name, '--id', String(c.id), '--pod-cidr', [c.podCIDR, ...(c.podCIDRv6 ? [c.podCIDRv6] : [])].join(','), ...(topo.hub === c.name ? ['--relay'] : [])]);
    spawnIn(st, cp, `${c.name}-kvstoremesh`, [process.execPath, WIREMESH, 'kvstoremesh', '--cluster', c.name, ...etcdFlags('', etcd.clientUrl, pki, 'kvstoremesh')]);
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
  for (const [a, b] of topo.connect) {
    progress(`clustermesh connect ${a} <-> ${b}`);
    cliIn(cl(a).cpNetns, ['clustermesh', 'connect', ...etcdFlags('a', cl(a).etcd, pkiDir(st, a)), '--a-pki', pkiDir(st, a), ...etcdFlags('b', cl(b).etcd, pkiDir(st, b)), '--b-pki', pkiDir(st, b)]);
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

/** Every agent has a peer for every node of its cluster and of each connected cluster. */
async function waitConverged(st: TestbedState, topo: Topology, ms: number): Promise<void> {
  const end = Date.now() + ms;
  const expected = (cluster: string) => {
    const linked = new Set([cluster]);
    for (const [a, b] of topo.connect) {
      if (a === cluster) linked.add(b);
      if (b === cluster) linked.add(a);
    }
    return st.clusters.filter((c) => linked.has(c.name)).reduce((n, c) => n + c.nodes.length, 0) - 1;
  };
  for (;;) {
    let pending = '';
    for (const c of st.clusters)
      for (const n of c.nodes) {
        const s = (await callAgent(n.socket, 'GET', '/v1/status').catch(() => null))?.body as { peers?: unknown[] } | undefined;
        const have = s?.peers?.length ?? -1;
        if (have !== expected(c.name)) pending = `${c.name}/${n.name} has ${have} of ${expected(c.name)} peers`;
      }
    if (!pending) return;
    if (Date.now() > end) throw new TestbedError('WM_TESTBED_TIMEOUT', `mesh did not converge: ${pending}`);
    await sleep(200);
  }
}

const pkiDir = (st: TestbedState, cluster: string) => join(st.dir, 'pki', cluster);
/** A node's own etcd credentials (node.crt, node.key, ca.crt). */
const credDir = (st: TestbedState, cluster: string, node: string) => join(st.dir, 'creds', `${cluster}-${node}`);
const etcdTls = (pki: string) => ({ certFile: join(pki, 'etcd.crt'), keyFile: join(pki, 'etcd.key'), caFile: join(pki, 'ca.crt') });
/** --etcd flags (prefixed for connect's two sides) with one of the cluster's client certificates: root (operator) by default. */
export function etcdFlags(prefix: '' | 'a' | 'b', url: string, pki: string, user: 'root' | 'kvstoremesh' | 'observer' = 'root'): string[] {
  const p = prefix ? `--${prefix}-` : '--';
  const f = pkiFiles(pki, user);
  return [`${p}etcd`, url, `${p}etcd-ca`, f.caFile, `${p}etcd-cert`, f.certFile, `${p}etcd-key`, f.keyFile];
}

const agentRole = (cluster: string, node: string) => `${cluster}-${node}-agent`;
const agentCommand = (cfgFile: string) => [process.execPath, WIREMESH, 'agent', '--config', cfgFile];

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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function activeTestbeds(): string[] {
  return existsSync(STATE_ROOT) ? readdirSync(STATE_ROOT).filter((n) => existsSync(join(STATE_ROOT, n, 'state.json'))) : [];
}

export function loadState(name?: string): TestbedState {
  const active = activeTestbeds();
  const pick = name ?? (active.length === 1 ? active[0] : undefined);
  if (!pick) throw new TestbedError('WM_TESTBED_NONE', active.length ? `several testbeds are up (${active.join(', ')}): pass --name` : 'no testbed is up');
  const f = join(stateDir(pick), 'state.json');
  if (!existsSync(f)) throw new TestbedError('WM_TESTBED_NONE', `testbed ${pick} is not up`);
  return JSON.parse(readFileSync(f, 'utf8')) as TestbedState;
}

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
