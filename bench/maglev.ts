/**
 * Global-service hot functions and throughput (npm run bench:maglev):
 *   - Maglev table build for M = 16381 and 65537 with N = 100 and 1000 backends, beside the reference
 *     implementation and the build's AVX2 and scalar fallbacks in the same run (anchors: paper 1.8 ms at
 *     M = 65537; Envoy 2.22 ms at N = 100; Cilium 8.17 ms at M = 16381, N = 1000);
 *   - lookup per packet: frontend map, flow hash, table slot, beside the reference's
 *     (paper: ~350 ns per packet, whole path);
 *   - service NAT (conntrack) of an established flow at 1M flows, DNAT rewrite included;
 *   - disruption: share of the survivors' slots that move when one backend goes;
 *   - (as root, with etcd and iperf3) TCP throughput through a global service VIP
 *     vs straight to the pod, alternating in one run, same pods (bar: >= 90 %).
 *     MAGLEV_TP_ROUNDS (3; 0 skips it), MAGLEV_TP_SECONDS (8).
 *   MAGLEV_ANCHOR=<path of another build's wiremesh_testhooks.node> (e.g. main's): its build is timed too,
 *   interleaved in the same process, and the ratio printed.
 * Single-thread figures on a shared 2-vCPU machine: compare within a run.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { testhooks } from '../src/native/testhooks.js';
import { backendRows } from '../src/native/rows.js';
import { ROOT, waitFor } from '../src/testbed/netns.js';
import { canRunTestbedBench, iperfMbps, median, roundSettings } from './testbed-runs.js';
import { testbedDown, testbedUp } from '../src/testbed/testbed.js';
import { callAgent } from '../src/agent/client.js';
import type { ServiceStatus } from '../src/services/datapath.js';

const results: Record<string, unknown> = {};
const best = (f: () => number, n = 3): number => Math.min(...Array.from({ length: n }, f));

// The anchors: the paper's and Envoy's figures are facts from other machines
// (shared/design/ANCHORS.md); the reference (-ref: the paper's algorithm
// written plainly, the implementation before this one) runs here, interleaved.
const ratio = (a: number, r: number) => Math.round((a / r) * 1000) / 1000;
// Another build's test hooks loaded beside ours (its own copy of the native code, no shared symbols).
const anchorPath = process.env.MAGLEV_ANCHOR;
const anchor = anchorPath ? (createRequire(import.meta.url)(resolve(anchorPath)) as typeof testhooks) : undefined;
if (anchorPath) console.log(`anchor build: ${anchorPath}`);
console.log('Maglev table build (best of 5 runs of 5 builds; reference and the AVX2 / scalar fallbacks in the same run)');
for (const m of [16381, 65537])
  for (const n of [100, 1000]) {
    let ms = Infinity;
    let ref = Infinity;
    let avx2 = Infinity;
    let scalar = Infinity;
    let other = Infinity;
    for (let i = 0; i < 5; i++) {
      if (anchor) other = Math.min(other, anchor.maglevBench('build', n, m, 5).nsPerOp / 1e6);
      ms = Math.min(ms, testhooks.maglevBench('build', n, m, 5).nsPerOp / 1e6);
      ref = Math.min(ref, testhooks.maglevBench('build-ref', n, m, 5).nsPerOp / 1e6);
      avx2 = Math.min(avx2, testhooks.maglevBench('build-avx2', n, m, 5).nsPerOp / 1e6);
      scalar = Math.min(scalar, testhooks.maglevBench('build-scalar', n, m, 5).nsPerOp / 1e6);
    }
    const paper = m === 65537 ? `paper 1.8 ms at M = 65537${n === 100 ? ', Envoy 2.22 ms at N = 100' : ''}` : n === 1000 ? 'Cilium: 8.17 ms' : '';
    const key = `build M=${m} N=${n}`;
    results[`${key} (ms)`] = Math.round(ms * 1000) / 1000;
    results[`${key} reference (ms)`] = Math.round(ref * 1000) / 1000;
    results[`${key} / reference`] = ratio(ms, ref);
    results[`${key} AVX2 walk / reference`] = ratio(avx2, ref);
    results[`${key} scalar walk / reference`] = ratio(scalar, ref);
    if (anchor) results[`${key} / anchor build`] = ratio(ms, other);
    const vsAnchor = anchor ? `; anchor build ${other.toFixed(3)} ms, x${(ms / other).toFixed(2)}` : '';
    console.log(`  M=${String(m).padEnd(6)} N=${String(n).padEnd(5)} ${ms.toFixed(3).padStart(7)} ms   reference ${ref.toFixed(3)} ms (x${(ms / ref).toFixed(2)}; AVX2 walk x${(avx2 / ref).toFixed(2)}, scalar x${(scalar / ref).toFixed(2)}${vsAnchor})   ${paper}`);
  }

console.log('Per packet');
for (const m of [16381, 65537]) {
  let ns = Infinity;
  let ref = Infinity;
  for (let i = 0; i < 5; i++) {
    ns = Math.min(ns, testhooks.maglevBench('lookup', 100, m, 3_000_000).nsPerOp);
    ref = Math.min(ref, testhooks.maglevBench('lookup-ref', 100, m, 3_000_000).nsPerOp);
  }
  results[`lookup incl. flow hash M=${m} (ns)`] = Math.round(ns * 10) / 10;
  results[`lookup incl. flow hash M=${m} reference (ns)`] = Math.round(ref * 10) / 10;
  results[`lookup M=${m} / reference`] = ratio(ns, ref);
  console.log(`  new flow: frontend + flow hash + slot, M=${m}: ${ns.toFixed(1)} ns   reference ${ref.toFixed(1)} ns (x${(ns / ref).toFixed(2)})   (paper: ~350 ns per packet for the whole path)`);
}
const nat = best(() => testhooks.policyBench('service-nat', 1_000_000, 16381, 3_000_000).nsPerOp);
results['service NAT established flow @ 1M flows (ns)'] = Math.round(nat * 10) / 10;
console.log(`  established flow at 1M flows: NAT lookup + liveness + DNAT rewrite: ${nat.toFixed(1)} ns`);
const ct = best(() => testhooks.policyBench('conntrack', 1_000_000, 0, 3_000_000).nsPerOp);
results['policy conntrack lookup @ 1M flows (ns)'] = Math.round(ct * 10) / 10;
console.log(`  policy conntrack lookup at 1M flows (same run): ${ct.toFixed(1)} ns`);

console.log("Disruption: survivors' slots that move when one backend is removed (mean of 5 removals)");
const addr = (i: number) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
for (const [m, n] of [[16381, 10], [16381, 100], [16381, 1000], [65537, 100], [65537, 1000]] as const) {
  const all = Array.from({ length: n }, (_, i) => [{ ip: addr(i), port: 8080 }, 1] as const);
  const before = testhooks.maglevBuild(backendRows(all), m);
  let sum = 0;
  const gones = [0, 1, n >> 2, n >> 1, n - 1];
  for (const gone of gones) {
    const after = testhooks.maglevBuild(backendRows(all.filter((_, i) => i !== gone)), m);
    let s = 0;
    let moved = 0;
    for (let k = 0; k < m; k++) {
      if (before[k] === gone) continue;
      s++;
      if ((after[k]! >= gone ? after[k]! + 1 : after[k]!) !== before[k]) moved++;
    }
    sum += moved / s;
  }
  const pct = (100 * sum) / gones.length;
  results[`disruption M=${m} N=${n} (%)`] = Math.round(pct * 100) / 100;
  console.log(`  M=${String(m).padEnd(6)} N=${String(n).padEnd(5)} ${pct.toFixed(2)} %`);
}

async function throughput(): Promise<void> {
  const { rounds, secs } = roundSettings('MAGLEV');
  if (rounds === 0 || !canRunTestbedBench('throughput')) return; // MAGLEV_TP_ROUNDS=0: the native figures only
  const dir = mkdtempSync(join(tmpdir(), 'wmbm-'));
  const topo = join(dir, 'topo.yaml');
  const name = `bm${process.pid % 100000}`;
  // one backend in another cluster: the VIP adds exactly the service path to the pod path
  writeFileSync(join(dir, 'svc.yaml'), `apiVersion: v1
kind: Service
metadata: { name: perf, namespace: shop, annotations: { service.cilium.io/global: "true" } }
spec:
  selector: { app: server }
  ports: [{ port: 5201, protocol: TCP }]
`);
  writeFileSync(topo, `name: ${name}
clusters:
  - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1] }
  - { name: c2, id: 2, podCIDR: 100.66.0.0/16, nodes: [n1] }
pods:
  - { name: client, cluster: c1, node: n1, namespace: shop, labels: { app: client } }
  - { name: server, cluster: c2, node: n1, namespace: shop, labels: { app: server } }
manifests:
  c1: [${join(dir, 'svc.yaml')}]
  c2: [${join(dir, 'svc.yaml')}]
`);
  const st = await testbedUp(topo);
  const client = st.pods.find((p) => p.name === 'client')!;
  const server = st.pods.find((p) => p.name === 'server')!;
  const iperf = spawn('ip', ['netns', 'exec', server.netns, 'iperf3', '-s'], { stdio: 'ignore' });
  const sock = st.clusters[0]!.nodes[0]!.socket;
  let vip = '';
  await waitFor(async () => {
    const s = ((await callAgent(sock, 'GET', '/v1/services')).body as { services: ServiceStatus[] }).services.find((x) => x.name === 'perf');
    vip = s?.vip ?? '';
    return s?.ports[0]?.backends.some((b) => b.state === 'selected') ?? false;
  }, 30_000);
  const run = (dst: string): number => {
    return iperfMbps(client.netns, dst, secs);
  };
  const pod: number[] = [];
  const svc: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      pod.push(run(server.ip));
      svc.push(run(vip));
      console.log(`throughput round ${i + 1}: pod ${pod.at(-1)!.toFixed(0)} Mbit/s, service VIP ${svc.at(-1)!.toFixed(0)} Mbit/s`);
    }
  } finally {
    iperf.kill('SIGKILL');
    await testbedDown(topo);
    rmSync(dir, { recursive: true, force: true });
  }
  const ratio = median(svc) / median(pod);
  results['throughput pod->pod across clusters (Mbit/s, median)'] = Math.round(median(pod));
  results['throughput via global service VIP (Mbit/s, median)'] = Math.round(median(svc));
  results['throughput service/pod'] = Math.round(ratio * 1000) / 1000;
  console.log(`throughput through the service / pod to pod: ${(ratio * 100).toFixed(1)} % (bar: >= 90 %)`);
}

await throughput();
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'results', 'maglev.json'), JSON.stringify({ at: new Date().toISOString(), node: process.version, results }, null, 2) + '\n');
