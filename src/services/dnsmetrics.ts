/**
 * Prometheus metrics of a DnsServer's counters (dns.ts, dnstcp.ts), shared by
 * the agent's service DNS (`wiremesh_dns_*`, src/agent/metrics.ts) and
 * gateway-dns (`wiremesh_gateway_dns_*`, src/gateway/gslbmetrics.ts): the same
 * series under each process's prefix. Read at scrape time; names and labels:
 * docs/metrics.md.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DnsCounters } from './dns.js';

const RESULTS = ['answered', 'nxdomain', 'refused', 'servfail', 'malformed', 'limited', 'truncated'] as const;
const TCP_RESULTS = [
  ['accepted', 'accepted'],
  ['refused', 'refused'],
  ['evicted', 'evicted'],
  ['idle', 'idle'],
  ['badLength', 'bad-length'],
] as const;

/**
 * Registers `<prefix>_queries_total{result}`, `<prefix>_tcp_queries_total`,
 * `<prefix>_tcp_connections_total{result}`, `<prefix>_tcp_connections`,
 * `<prefix>_sources` and `<prefix>_listening{proto}` on `registry`; `read()`
 * gives the counters at scrape time, or undefined when the server does not
 * run (no series then, but `listening` 0 for both).
 * `what` names the server in the help texts.
 */
export function registerDnsMetrics(registry: Registry, prefix: string, what: string, read: () => DnsCounters | undefined): void {
  const registers = [registry];
  // prom-client counters only go up by inc(): the server's totals are set with reset() + inc()
  const counter = (name: string, help: string, labelNames: string[], rows: (d: DnsCounters) => Array<[Record<string, string>, number]>) =>
    new Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        const d = read();
        if (d) for (const [l, v] of rows(d)) this.inc(l, Math.max(0, v));
      },
    });
  const gauge = (name: string, help: string, value: (d: DnsCounters) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.reset();
        const d = read();
        if (d) this.set(value(d));
      },
    });
  counter(`${prefix}_queries_total`, `${what}: queries received (UDP and TCP), by outcome (limited: dropped over the source's quota, undecoded; truncated: answered with TC=1).`, ['result'], (d) => RESULTS.map((r) => [{ result: r }, d[r]]));
  counter(`${prefix}_tcp_queries_total`, `${what}: queries read over TCP (also in ${prefix}_queries_total).`, [], (d) => [[{}, d.tcp.queries]]);
  counter(`${prefix}_tcp_connections_total`, `${what}: TCP connections accepted, refused at accept (a bound), evicted (the idlest, to make room), closed idle, or closed on a bad length prefix.`, ['result'], (d) => TCP_RESULTS.map(([k, r]) => [{ result: r }, d.tcp[k]]));
  gauge(`${prefix}_tcp_connections`, `${what}: TCP connections open now.`, (d) => d.tcp.open);
  gauge(`${prefix}_sources`, `${what}: sources in the per-source rate table now.`, (d) => d.sources);
  new Gauge({
    name: `${prefix}_listening`,
    help: `${what}: 1 when it listens on the transport now, else 0 (tcp 0 with udp 1: its TCP port was taken; the status says why).`,
    labelNames: ['proto'],
    registers,
    collect() {
      this.reset();
      const d = read();
      for (const proto of ['udp', 'tcp'] as const) this.set({ proto }, d?.listening[proto] ? 1 : 0);
    },
  });
}
