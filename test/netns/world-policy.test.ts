// Policy on every packet of a pod (docs/architecture.md, "One enforcement
// point"): traffic between pods and hosts outside the mesh (two underlay hosts,
// with routes to the pod CIDRs through the nodes) meets egress and ingress
// policy with the world / CIDR identities, replies and ICMP errors included; a
// pod's packets to other nodes' addresses go through those nodes' tunnels
// (nothing in the clear on the underlay); and the regression of a policy whose
// ipBlock names a pod's address (the ipcache entry was shared and lost).
// Then NetworkPolicy semantics of issue 17 end to end: ipBlock matching pod
// addresses (and not CiliumNetworkPolicy CIDR rules), named ports resolved per
// pod and failing closed, namespace labels relabelled under namespaceSelector.
// Expected outcomes are written from the Kubernetes API's rules, never from
// `policy trace`.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callAgent } from '../../src/agent/client.js';
import { stateKey } from '../../src/controlplane/keys.js';
import type { Flow } from '../../src/policy/flows.js';
import { canRunNetns, execIn, hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { addUnderlayHost, cliIn, testbedClusterAccess, testbedDown, testbedUp, type TestbedState } from '../../src/testbed/testbed.js';
import { ECHO, startPodServers } from '../helpers/echo.js';
import { writeTopology } from '../helpers/topology.js';

const enabled = canRunNetns() && hasCommand('etcd') && hasCommand('tcpdump');
const WIREMESH = join(ROOT, 'bin', 'wiremesh.js');
const ETCDDEL = join(ROOT, 'test', 'helpers', 'etcddel.mjs');
const H1 = '198.18.200.5'; // outside the mesh
const H2 = '198.18.201.5'; // outside the mesh, in 198.18.201.0/24

const C1 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: egress-cidr, namespace: out }
spec:
  endpointSelector: { matchLabels: { app: egress } }
  egress:
    - toCIDR: [198.18.201.0/24]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: egress-world, namespace: out }
spec:
  endpointSelector: { matchLabels: { app: world } }
  egress:
    - toEntities: [world]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: deny-all, namespace: web }
spec:
  podSelector: { matchLabels: { app: deny } }
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: ipblock, namespace: web }
spec:
  podSelector: { matchLabels: { app: ipb } }
  policyTypes: [Ingress]
  ingress:
    - from: [{ ipBlock: { cidr: 198.18.200.0/22, except: [198.18.201.0/24] } }]
`;

const C2 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: cidrset, namespace: web }
spec:
  endpointSelector: { matchLabels: { app: cidrset } }
  ingress:
    - fromCIDRSet: [{ cidr: 198.18.200.0/22, except: [198.18.200.0/24] }]
`;

describe.skipIf(!enabled)('policy between pods and the world', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmworld-'));
  const file = join(dir, 'topo.yaml');
  const name = `w${process.pid % 100000}`;
  let st: TestbedState;
  const procs: ChildProcess[] = [];
  const hosts: Record<string, string> = {}; // address -> netns
  const pod = (n: string) => st.pods.find((p) => p.name === n)!;
  const node = (c: string, n: string) => st.clusters.find((x) => x.name === c)!.nodes.find((x) => x.name === n)!;

  /** TCP echo from a namespace to each address: those that answered. */
  function reachFrom(netns: string, port: number, addrs: string[]): Promise<Set<string>> {
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', netns, process.execPath, ECHO, 'client', String(port), ...addrs], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      p.once('close', () => resolve(new Set(out.split('\n').filter((l) => l.endsWith(' ok')).map((l) => l.split(' ')[0]!))));
    });
  }
  const podReaches = async (src: string, addrs: string[], port = 7000) => [...(await reachFrom(pod(src).netns, port, addrs))].sort();
  const ping = (netns: string, ip: string) => execIn(netns, 'ping', '-c', '1', '-W', '2', ip).ok;
  /** A connected UDP socket's first error after a datagram to a closed port (ICMP port unreachable: ECONNREFUSED), or "timeout". */
  const udpError = (netns: string, ip: string) =>
    execFileSync('ip', ['netns', 'exec', netns, process.execPath, '-e', `const s=require('dgram').createSocket('udp4');const t=setTimeout(()=>{console.log('timeout');process.exit(0)},2500);s.on('error',(e)=>{console.log(e.code);process.exit(0)});s.connect(7999,'${ip}',()=>{s.send('x');setTimeout(()=>s.send('y'),300)});`], { encoding: 'utf8' }).trim();

  function flows(c: string, n: string): Flow[] {
    const out = execFileSync(process.execPath, [WIREMESH, 'observe', '--socket', node(c, n).socket, '--last', '5000', '-o', 'json'], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Flow);
  }

  const cidrIdentities = async (c: string, n: string) =>
    ((await callAgent(node(c, n).socket, 'GET', '/v1/policy')).body as { cidrIdentities: Array<{ cidr: string }> }).cidrIdentities.map((x) => x.cidr);

  /** `wiremesh apply`; its output (applied lines, warnings). */
  function apply(cluster: string, yaml: string, fileName: string): string {
    writeFileSync(join(dir, fileName), yaml);
    const a = testbedClusterAccess(cluster, name);
    return cliIn(a.netns, ['apply', '--cluster', cluster, ...a.flags, '-f', join(dir, fileName)]);
  }

  function deletePolicy(cluster: string, key: string): { deleted: number } {
    const a = testbedClusterAccess(cluster, name);
    const [, url, , ca, , cert, , k] = a.flags;
    return JSON.parse(execFileSync('ip', ['netns', 'exec', a.netns, process.execPath, ETCDDEL, url!, ca!, cert!, k!, key], { encoding: 'utf8' })) as { deleted: number };
  }

  beforeAll(async () => {
    writeFileSync(join(dir, 'c1.yaml'), C1);
    writeFileSync(join(dir, 'c2.yaml'), C2);
    writeTopology(file, {
      name,
      clusters: [2, 1],
      pods: [
        { name: 'e', cluster: 'c1', node: 'n1', namespace: 'out', labels: { app: 'egress' } },
        { name: 'ew', cluster: 'c1', node: 'n1', namespace: 'out', labels: { app: 'world' } },
        { name: 'open', cluster: 'c1', node: 'n1', namespace: 'web', labels: { app: 'open' } },
        { name: 'a', cluster: 'c1', node: 'n1', namespace: 'x', labels: { pod: 'a' }, ports: [{ name: 'serve-7000-tcp', containerPort: 7000 }] },
        { name: 'deny', cluster: 'c1', node: 'n2', namespace: 'web', labels: { app: 'deny' } },
        { name: 'ipb', cluster: 'c1', node: 'n2', namespace: 'web', labels: { app: 'ipb' } },
        { name: 'b', cluster: 'c1', node: 'n2', namespace: 'y', labels: { pod: 'b' } },
        { name: 'c', cluster: 'c1', node: 'n2', namespace: 'y', labels: { pod: 'c' } },
        { name: 'cidrset', cluster: 'c2', node: 'n1', namespace: 'web', labels: { app: 'cidrset' } },
        { name: 'r', cluster: 'c2', node: 'n1', namespace: 'y', labels: { pod: 'r' }, ports: [{ name: 'serve-7000-tcp', containerPort: 7000, protocol: 'TCP' }] },
      ],
      manifests: { c1: [join(dir, 'c1.yaml')], c2: [join(dir, 'c2.yaml')] },
    });
    st = await testbedUp(file);
    // two hosts outside the mesh on the underlay, routing the pod CIDRs through the nodes (no masquerade in the testbed)
    for (const [i, addr] of [H1, H2].entries()) {
      const ns = addUnderlayHost(st, `h${i + 1}`, addr);
      hosts[addr] = ns;
      for (const c of st.clusters) for (const n of c.nodes) execFileSync('ip', ['netns', 'exec', ns, 'ip', 'route', 'add', n.podCIDR, 'via', n.address]);
    }
    procs.push(...(await startPodServers(st.pods, (p) => [ECHO, 'server', p.ip, '7000'])));
    procs.push(...(await startPodServers([H1, H2].map((a) => ({ netns: hosts[a]!, ip: a })), (h) => [ECHO, 'server', h.ip, '7000'])));
    // a service on nodes' own addresses (c1/n1, c1/n2 and c2/n1)
    procs.push(...(await startPodServers([node('c1', 'n1'), node('c1', 'n2'), node('c2', 'n1')].map((n) => ({ netns: n.netns, ip: n.address })), (n) => [ECHO, 'server', n.ip, '7100'])));
    await waitFor(async () => (await cidrIdentities('c1', 'n2')).includes('198.18.201.0/24') && (await cidrIdentities('c2', 'n1')).includes('198.18.200.0/24'), 30_000, 'policies compiled');
    // every pod reaches the mesh (remote identities known)
    await waitFor(async () => (await podReaches('open', [pod('r').ip, pod('b').ip])).length === 2, 30_000, 'mesh up');
  }, 180_000);

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    if (st) await testbedDown(file);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("egress toCIDR allows the one outside host and denies the other (TCP, ICMP) and other nodes' addresses", async () => {
    expect(await podReaches('e', [H1, H2])).toEqual([H2]);
    expect(ping(pod('e').netns, H2)).toBe(true);
    expect(ping(pod('e').netns, H1)).toBe(false);
    // and nothing else: a pod, another node's address
    expect(await podReaches('e', [pod('open').ip])).toEqual([]);
    expect(await reachFrom(pod('e').netns, 7100, [node('c1', 'n2').address])).toEqual(new Set());
    const drop = flows('c1', 'n1').filter((f) => f.source.ip === pod('e').ip && f.destination.ip === H1 && f.verdict === 'DROPPED').at(-1);
    // (H1 is outside the mesh: the world, here as the CIDR identity of c1's ipBlock 198.18.200.0/22)
    expect(drop).toMatchObject({ direction: 'egress', dropReason: 'policy-default-deny', destination: { identityText: 'cidr:198.18.200.0/22' } });
    const fwd = flows('c1', 'n1').filter((f) => f.source.ip === pod('e').ip && f.destination.ip === H2 && f.verdict === 'FORWARDED').at(-1);
    expect(fwd).toMatchObject({ direction: 'egress', destination: { identityText: 'cidr:198.18.201.0/24' } });
    const toNode = flows('c1', 'n1').filter((f) => f.source.ip === pod('e').ip && f.destination.ip === node('c1', 'n2').address).at(-1);
    expect(toNode).toMatchObject({ verdict: 'DROPPED', destination: { identity: 6 } }); // remote-node
  });

  it('egress toEntities world reaches both outside hosts but no pod; ICMP errors from outside come back', async () => {
    expect(await podReaches('ew', [H1, H2, pod('open').ip, pod('b').ip])).toEqual([H1, H2].sort());
    expect(udpError(pod('ew').netns, H1)).toBe('ECONNREFUSED'); // the host's port unreachable reaches the pod
    expect(udpError(pod('e').netns, H1)).toBe('timeout'); // denied: the datagram never left
  });

  it('ingress from outside: open without policy, nothing through deny-all, ipBlock with except, fromCIDRSet with except', async () => {
    const at = async (h: string, pods: string[]) => {
      const ok = await reachFrom(hosts[h]!, 7000, pods.map((p) => pod(p).ip));
      return pods.filter((p) => ok.has(pod(p).ip));
    };
    const targets = ['open', 'deny', 'ipb', 'cidrset'];
    expect(await at(H1, targets)).toEqual(['open', 'ipb']);
    expect(await at(H2, targets)).toEqual(['open', 'cidrset']);
    expect(ping(hosts[H1]!, pod('deny').ip)).toBe(false);
    expect(ping(hosts[H1]!, pod('open').ip)).toBe(true);
    const drop = flows('c1', 'n2').filter((f) => f.source.ip === H1 && f.destination.ip === pod('deny').ip && f.verdict === 'DROPPED').at(-1);
    expect(drop).toMatchObject({ direction: 'ingress', dropReason: 'policy-default-deny', source: { identityText: 'cidr:198.18.200.0/22' } });
    const exceptDrop = flows('c1', 'n2').filter((f) => f.source.ip === H2 && f.destination.ip === pod('ipb').ip && f.verdict === 'DROPPED').at(-1);
    expect(exceptDrop).toMatchObject({ direction: 'ingress', source: { identityText: 'cidr:198.18.201.0/24' } });
  });

  // With the host firewall (policy.hostFirewall, default on, docs/architecture.md) a remote pod reaches no
  // listener of a node: the packets go through the node's tunnel, encrypted, and that node drops them.
  it("a pod's traffic to other nodes' addresses goes through their tunnels: the underlay shows no pod address, and their host firewalls drop it", async () => {
    const pcap = join(dir, 'ul.pcap');
    const dump = spawn('ip', ['netns', 'exec', `wmtb-${name}-ul`, 'timeout', '-s', 'INT', '4', 'tcpdump', '-i', 'br0', '-U', '-w', pcap, 'not', 'port', '2379', 'and', 'not', 'arp', 'and', 'not', 'ip6'], { stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve) => dump.stderr!.on('data', (d) => String(d).includes('listening') && resolve()));
    const targets = [node('c1', 'n2').address, node('c2', 'n1').address];
    expect(await reachFrom(pod('open').netns, 7100, targets)).toEqual(new Set());
    await new Promise((r) => dump.once('exit', r));
    const raw = readFileSync(pcap);
    expect(raw.length).toBeGreaterThan(100);
    expect(raw.includes(Buffer.from(pod('open').ip.split('.').map(Number)))).toBe(false);
  });

  it("a pod's traffic to its own node's addresses meets egress policy too (identity host)", async () => {
    const own = node('c1', 'n1').address;
    expect(await reachFrom(pod('open').netns, 7100, [own])).toEqual(new Set([own])); // no policy
    expect(ping(pod('open').netns, own)).toBe(true);
    expect(await reachFrom(pod('e').netns, 7100, [own])).toEqual(new Set()); // toCIDR only
    expect(await reachFrom(pod('ew').netns, 7100, [own])).toEqual(new Set()); // the host is not the world
    const drop = flows('c1', 'n1').filter((f) => f.source.ip === pod('ew').ip && f.destination.ip === own).at(-1);
    expect(drop).toMatchObject({ verdict: 'DROPPED', direction: 'egress', destination: { identity: 1 } });
  });

  it('regression: an ipBlock naming a pod leaves that pod its identity, and deleting the policy leaves everything as before', async () => {
    const pairs = async () => ({
      bc: await podReaches('b', [pod('c').ip]),
      cb: await podReaches('c', [pod('b').ip]),
      rb: await podReaches('r', [pod('b').ip]),
      ab: await podReaches('a', [pod('b').ip, pod('open').ip]),
    });
    const before = await pairs();
    expect(before).toEqual({ bc: [pod('c').ip], cb: [pod('b').ip], rb: [pod('b').ip], ab: [pod('b').ip, pod('open').ip].sort() });
    apply(
      'c1',
      `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: to-b, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  policyTypes: [Egress]
  egress: [{ to: [{ ipBlock: { cidr: ${pod('b').ip}/32 } }] }]
`,
      'to-b.yaml',
    );
    for (const n of ['n1', 'n2']) await waitFor(async () => (await cidrIdentities('c1', n)).includes(`${pod('b').ip}/32`), 15_000, `policy on c1/${n}`);
    await waitFor(async () => (await podReaches('a', [pod('open').ip])).length === 0, 10_000, 'a restricted');
    // b and the pods on its node (and elsewhere) still talk, and b's packets carry b's identity, not world;
    // a reaches b through the ipBlock (a NetworkPolicy ipBlock matches pod addresses) and nothing else
    const during = await pairs();
    expect(during).toEqual({ bc: before.bc, cb: before.cb, rb: before.rb, ab: [pod('b').ip] });
    const bIdentity = ((await callAgent(node('c1', 'n2').socket, 'GET', '/v1/policy')).body as { endpoints: Array<{ endpoint: string; identity: number }> }).endpoints.find((e) => e.endpoint === 'y/b')!.identity;
    const fromB = flows('c1', 'n2').filter((f) => f.source.ip === pod('b').ip).at(-1);
    expect(fromB?.source.identity).toBe(bIdentity);
    expect(bIdentity).not.toBe(2);
    const toB = flows('c1', 'n2').filter((f) => f.destination.ip === pod('b').ip && f.source.ip === pod('c').ip).at(-1);
    expect(toB?.destination.identity).toBe(bIdentity);
    // delete the policy: every pair as before, the CIDR identity gone everywhere
    expect(deletePolicy('c1', stateKey('policies', 'c1', 'x/knp.to-b'))).toEqual({ deleted: 1 });
    for (const n of ['n1', 'n2']) await waitFor(async () => !(await cidrIdentities('c1', n)).includes(`${pod('b').ip}/32`), 15_000, `policy gone on c1/${n}`);
    await waitFor(async () => (await podReaches('a', [pod('open').ip])).length === 1, 10_000, 'a free again');
    expect(await pairs()).toEqual(before);
  }, 60_000);

  /** Deletes a stored object (policy or Namespace) from c1's etcd. */
  async function remove(type: 'policies' | 'namespaces', keyName: string): Promise<void> {
    expect(deletePolicy('c1', stateKey(type, 'c1', keyName))).toEqual({ deleted: 1 });
  }

  it('NetworkPolicy ipBlock except naming a pod excludes it; deleted again, everything as before', async () => {
    const targets = () => podReaches('a', [pod('b').ip, pod('open').ip, pod('r').ip]);
    const before = await targets();
    expect(before).toEqual([pod('b').ip, pod('open').ip, pod('r').ip].sort());
    apply('c1', `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: except-b, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  policyTypes: [Egress]
  egress: [{ to: [{ ipBlock: { cidr: 100.64.0.0/10, except: [${pod('b').ip}/32] } }] }]
`, 'except-b.yaml');
    // API: 100.64.0.0/10 minus b's /32 holds open's and r's addresses, not b's
    await waitFor(async () => (await targets()).length === 2, 15_000, 'except applied');
    expect(await targets()).toEqual([pod('open').ip, pod('r').ip].sort());
    expect(await podReaches('c', [pod('b').ip])).toEqual([pod('b').ip]); // b itself is untouched
    await remove('policies', 'x/knp.except-b');
    await waitFor(async () => (await targets()).length === 3, 15_000, 'except gone');
    expect(await targets()).toEqual(before);
  }, 60_000);

  it('ingress from ipBlock 0.0.0.0/0 admits every pod for a NetworkPolicy, while CNP fromCIDR 0.0.0.0/0 admits only the world', async () => {
    const srcs = ['open', 'a', 'r', 'c'] as const;
    const who = async (dst: string, list: readonly string[]) => {
      const out: string[] = [];
      for (const s of list.filter((x) => x !== dst)) if ((await podReaches(s, [pod(dst).ip])).length) out.push(s);
      if ((await reachFrom(hosts[H1]!, 7000, [pod(dst).ip])).size) out.push('H1');
      return out;
    };
    apply('c1', `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: all-v4, namespace: y }
spec:
  podSelector: { matchLabels: { pod: c } }
  ingress: [{ from: [{ ipBlock: { cidr: 0.0.0.0/0 } }] }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: cidr-all, namespace: y }
spec:
  endpointSelector: { matchLabels: { pod: b } }
  ingress: [{ fromCIDR: [0.0.0.0/0] }]
`, 'all-v4.yaml');
    // Kubernetes: every IPv4 address is in 0.0.0.0/0, pods of this and the other cluster included.
    // Cilium: CIDR rules select addresses outside the cluster mesh only.
    await waitFor(async () => (await who('b', ['open'])).join() === 'H1', 15_000, 'CNP compiled');
    expect(await who('c', [...srcs, 'b'])).toEqual(['open', 'a', 'r', 'b', 'H1']);
    expect(await who('b', srcs)).toEqual(['H1']);
    await remove('policies', 'y/knp.all-v4');
    await remove('policies', 'y/cnp.cidr-all');
    await waitFor(async () => (await who('b', ['open'])).join() === 'open,H1', 15_000, 'CNP gone');
  }, 90_000);

  it('named ports: resolved on the selected pod (ingress) and on each destination, remote cluster included (egress); an undeclared name isolates and warns', async () => {
    // ingress serve-7000-tcp: a declares it as 7000 -> from any namespace on 7000
    apply('c1', `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: named-in, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: serve-7000-tcp }] }]
`, 'named-in.yaml');
    await waitFor(async () => ((await callAgent(node('c1', 'n1').socket, 'GET', '/v1/policy')).body as { rules: Array<{ id: string }> }).rules.some((r) => r.id.startsWith('c1/x/knp.named-in')), 15_000, 'named-in compiled');
    expect(await podReaches('b', [pod('a').ip])).toEqual([pod('a').ip]);
    // the same policy naming a port no pod declares: x/a stays isolated (the fail-open case)
    const out = apply('c1', `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: named-in, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: serve-80-tcp }] }]
`, 'named-in.yaml');
    expect(out).toMatch(/WARNING: c1\/x\/knp\.named-in:ingress\[0\]: named port serve-80-tcp\/TCP is declared by no pod/);
    await waitFor(async () => (await podReaches('b', [pod('a').ip])).length === 0, 15_000, 'a isolated');
    expect(await podReaches('open', [pod('a').ip])).toEqual([]);
    expect((await reachFrom(hosts[H1]!, 7000, [pod('a').ip])).size).toBe(0);
    const pol = (await callAgent(node('c1', 'n1').socket, 'GET', '/v1/policy')).body as { warnings: string[] };
    expect(pol.warnings.join('\n')).toMatch(/knp\.named-in:ingress\[0\]: named port serve-80-tcp\/TCP is declared by no pod: it matches nothing/);
    await remove('policies', 'x/knp.named-in');
    // egress serve-7000-tcp: r (cluster c2) declares it, b declares nothing
    apply('c1', `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: named-out, namespace: x }
spec:
  podSelector: { matchLabels: { pod: a } }
  egress: [{ ports: [{ port: serve-7000-tcp }] }]
`, 'named-out.yaml');
    await waitFor(async () => (await podReaches('a', [pod('b').ip])).length === 0, 15_000, 'named-out compiled');
    expect(await podReaches('a', [pod('r').ip, pod('b').ip, pod('open').ip, H1])).toEqual([pod('r').ip]);
    // no policyTypes: Ingress is always implied (egress rules add Egress), so a's ingress is isolated too
    expect(await podReaches('b', [pod('a').ip])).toEqual([]);
    await remove('policies', 'x/knp.named-out');
    await waitFor(async () => (await podReaches('a', [pod('b').ip])).length === 1, 15_000, 'named-out gone');
  }, 90_000);

  it('namespaceSelector follows Namespace labels: applied, relabelled, deleted', async () => {
    apply('c1', `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: from-blue, namespace: y }
spec:
  podSelector: { matchLabels: { pod: c } }
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: blue } } }] }]
`, 'from-blue.yaml');
    const who = async () => {
      const out: string[] = [];
      for (const s of ['a', 'open', 'b']) if ((await podReaches(s, [pod('c').ip])).length) out.push(s);
      return out;
    };
    // no namespace carries team=blue yet: c admits nobody
    await waitFor(async () => (await who()).length === 0, 15_000, 'from-blue compiled');
    const ns = (labels: string) => apply('c1', `apiVersion: v1\nkind: Namespace\nmetadata: { name: x, labels: { ${labels} } }\n`, 'ns-x.yaml');
    expect(ns('team: blue')).toMatch(/namespace\/x applied to c1/);
    await waitFor(async () => (await who()).join() === 'a', 20_000, 'x is blue');
    ns('team: red');
    await waitFor(async () => (await who()).length === 0, 20_000, 'x is red');
    ns('team: blue');
    await waitFor(async () => (await who()).join() === 'a', 20_000, 'x is blue again');
    await remove('namespaces', 'x');
    await waitFor(async () => (await who()).length === 0, 20_000, 'x has no labels');
    await remove('policies', 'y/knp.from-blue');
    await waitFor(async () => (await who()).length === 3, 15_000, 'from-blue gone');
  }, 120_000);
});
