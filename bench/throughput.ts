/**
 * Throughput benchmark: iperf3 TCP (1 and 4 streams) through three namespace
 * pairs in ONE run, so the machine's noise hits all of them alike:
 *   wiremesh ↔ wiremesh, wireguard-go ↔ wireguard-go, plain veth.
 * Prints a table with ratios and writes bench/results/throughput.json.
 *
 *   BENCH_SECONDS (default 8)  BENCH_ROUNDS (default 1; configurations are interleaved per round)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, link, Netns, ROOT, startWireGuard, uniqueName, wgConfigure, wgKeypair } from '../src/testbed/netns.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);

type Kind = 'wiremesh' | 'wireguard-go' | 'veth';

interface Pair {
  kind: Kind;
  client: Netns;
  server: Netns;
  target: string;
}

function makePair(kind: Kind, subnet: number): Pair {
  const a = new Netns('bA');
  const b = new Netns('bB');
  const under = `198.18.${20 + subnet}`;
  link(a, uniqueName('ba'), [`${under}.1/24`], b, uniqueName('bb'), [`${under}.2/24`]);
  if (kind === 'veth') return { kind, client: a, server: b, target: `${under}.2` };
  const inner = `100.64.${20 + subnet}`;
  const keys = [wgKeypair(a), wgKeypair(b)];
  [a, b].forEach((ns, i) => {
    const ifn = uniqueName('bw');
    const other = 1 - i;
    startWireGuard(ns, kind, ifn);
    wgConfigure(ns, ifn, {
      privateKey: keys[i]!.privateKey,
      port: 51820,
      peer: keys[other]!.publicKey,
      endpoint: `${under}.${other + 1}:51820`,
      allowedIPs: [`${inner}.${other + 1}/32`],
      addresses: [`${inner}.${i + 1}/24`],
    });
  });
  a.run('ping', '-c', '1', '-W', '3', `${inner}.2`);
  return { kind, client: a, server: b, target: `${inner}.2` };
}

function iperf(p: Pair, streams: number): number {
  const server = p.server.spawn('iperf3', ['-s', '-1', '-B', p.target]);
  for (let i = 0; i < 50 && !p.server.try('ss', '-ltn').out.includes(`${p.target}:5201`); i++) execFileSync('sleep', ['0.1']);
  const out = JSON.parse(p.client.run('iperf3', '-c', p.target, '-t', String(SECONDS), '-P', String(streams), '-J'));
  server.kill();
  return out.end.sum_received.bits_per_second / 1e6;
}

function pingP50(p: Pair): number {
  const lines = p.client.run('ping', '-c', '100', '-i', '0.01', p.target).split('\n');
  const times = lines.map((l) => /time=([\d.]+)/.exec(l)?.[1]).filter(Boolean).map(Number).sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)]!;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function main(): void {
  const kinds: Kind[] = ['wiremesh', 'wireguard-go', 'veth'];
  const pairs = kinds.map((k, i) => makePair(k, i));
  const results: Record<Kind, { s1: number[]; s4: number[]; rttP50Ms?: number }> = {
    wiremesh: { s1: [], s4: [] },
    'wireguard-go': { s1: [], s4: [] },
    veth: { s1: [], s4: [] },
  };
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of pairs) {
        process.stderr.write(`round ${r + 1}/${ROUNDS}: ${p.kind} 1 stream...\n`);
        results[p.kind].s1.push(iperf(p, 1));
        process.stderr.write(`round ${r + 1}/${ROUNDS}: ${p.kind} 4 streams...\n`);
        results[p.kind].s4.push(iperf(p, 4));
      }
    }
    for (const p of pairs) if (p.kind !== 'veth') results[p.kind].rttP50Ms = pingP50(p);
  } finally {
    cleanup();
  }
  const row = (k: Kind) => ({ kind: k, mbps1: median(results[k].s1), mbps4: median(results[k].s4), rttP50Ms: results[k].rttP50Ms });
  const rows = kinds.map(row);
  const wm = rows[0]!, wg = rows[1]!, veth = rows[2]!;
  const report = {
    date: new Date().toISOString(),
    seconds: SECONDS,
    rounds: ROUNDS,
    rows,
    ratios: {
      wiremeshVsWireguardGo1: wm.mbps1 / wg.mbps1,
      wiremeshVsWireguardGo4: wm.mbps4 / wg.mbps4,
      wiremeshVsVeth1: wm.mbps1 / veth.mbps1,
      wiremeshVsVeth4: wm.mbps4 / veth.mbps4,
      rttWiremeshVsWireguardGo: (wm.rttP50Ms ?? 0) / (wg.rttP50Ms ?? 1),
    },
    bar: { wiremeshAtLeast2xWireguardGoSingleStream: wm.mbps1 >= 2 * wg.mbps1 },
  };
  const fmt = (n: number | undefined, d = 0) => (n === undefined ? '-' : n.toFixed(d));
  console.log(`\niperf3 TCP through namespace pairs, ${SECONDS}s per run, ${ROUNDS} round(s), same run:\n`);
  console.log('path            1 stream Mbit/s   4 streams Mbit/s   ping p50 ms');
  for (const r of rows) console.log(`${r.kind.padEnd(16)}${fmt(r.mbps1).padStart(15)}${fmt(r.mbps4).padStart(19)}${fmt(r.rttP50Ms, 3).padStart(14)}`);
  console.log(`\nwiremesh / wireguard-go: ${report.ratios.wiremeshVsWireguardGo1.toFixed(2)}x (1 stream), ${report.ratios.wiremeshVsWireguardGo4.toFixed(2)}x (4 streams)`);
  console.log(`wiremesh / veth:         ${report.ratios.wiremeshVsVeth1.toFixed(3)} (1 stream), ${report.ratios.wiremeshVsVeth4.toFixed(3)} (4 streams)`);
  console.log(`bar (>= 2x wireguard-go, 1 stream): ${report.bar.wiremeshAtLeast2xWireguardGoSingleStream ? 'met' : 'NOT met'}`);
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'throughput.json'), JSON.stringify(report, null, 2) + '\n');
  console.log(`\nwrote ${join('bench', 'results', 'throughput.json')}`);
}

main();
