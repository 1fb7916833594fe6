/**
 * Shared by the benchmarks that measure TCP throughput on a testbed (policy,
 * maglev): whether the machine can run one, the alternating-rounds settings,
 * an iperf3 run from a pod, and the median.
 */
import { canRunNetns, execIn, hasCommand } from '../src/testbed/netns.js';

/** Root, etcd and the tools (iperf3 by default) are all there; otherwise says why the part is skipped. */
export function canRunTestbedBench(what: string, tools: string[] = ['iperf3']): boolean {
  if (canRunNetns() && hasCommand('etcd') && tools.every(hasCommand)) return true;
  console.log(`${what}: skipped (needs root, etcd and ${tools.join(', ')})`);
  return false;
}

/** Rounds and seconds per run from PREFIX_TP_ROUNDS (3) and PREFIX_TP_SECONDS (8). */
export function roundSettings(prefix: string): { rounds: number; secs: number } {
  return { rounds: Number(process.env[`${prefix}_TP_ROUNDS`] ?? 3), secs: Number(process.env[`${prefix}_TP_SECONDS`] ?? 8) };
}

/** iperf3 from a namespace to dst for secs seconds: received Mbit/s (0 when the run failed). */
export function iperfMbps(netns: string, dst: string, secs: number): number {
  const r = execIn(netns, 'iperf3', '-c', dst, '-t', String(secs), '-J');
  return r.ok ? (JSON.parse(r.out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6 : 0;
}

export const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
