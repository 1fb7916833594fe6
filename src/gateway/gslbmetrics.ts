/**
 * Prometheus metrics of one gateway-dns process (prom-client), read at scrape
 * time from GatewayDns: its DNS server's counters (the same series as the
 * agent's service DNS, src/services/dnsmetrics.ts, prefixed
 * `wiremesh_gateway_dns_`), the records it refused and its listeners' health.
 * Served when the config has `metrics: { address, port }` (src/net/metricsserver.ts,
 * with its bounds). Names and labels: docs/metrics.md.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { ConfigError } from '../errors.js';
import { serveMetrics, type MetricsServer, type MetricsSource } from '../net/metricsserver.js';
import { registerDnsMetrics } from '../services/dnsmetrics.js';
import type { GatewayDns } from './gslb.js';

/** What a scrape reads of GatewayDns. */
export type GatewayDnsMetricsSource = Pick<GatewayDns, 'server' | 'rejections' | 'listenerHealth'>;

export class GatewayDnsMetrics {
  readonly registry = new Registry();

  constructor(dns: GatewayDnsMetricsSource) {
    collectDefaultMetrics({ register: this.registry, prefix: 'wiremesh_gateway_dns_' });
    registerDnsMetrics(this.registry, 'wiremesh_gateway_dns', 'gateway-dns', () => dns.server.counters);
    const registers = [this.registry];
    new Counter({
      name: 'wiremesh_gateway_dns_records_rejected_total',
      help: 'Gateway and node records gateway-dns refused, by the cluster the key named, record type and reason (a claim its origin may not make: an address not its node\'s, no host\'s, or outside its cluster\'s pinned underlay CIDRs).',
      labelNames: ['origin', 'type', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const r of dns.rejections.rows()) this.inc({ origin: r.origin, type: r.type, reason: r.reason }, r.count);
      },
    });
    new Gauge({
      name: 'wiremesh_gateway_dns_listeners',
      help: 'Gateway listeners probed now, by state: healthy (answered with the last probes) or unhealthy (failing, or not passed yet).',
      labelNames: ['state'],
      registers,
      collect() {
        const h = dns.listenerHealth();
        this.set({ state: 'healthy' }, h.healthy);
        this.set({ state: 'unhealthy' }, h.unhealthy);
      },
    });
  }

  /** What the metrics listener serves; with the registry, the listener's own refusals are exported in it. */
  get source(): MetricsSource & { registry: Registry } {
    return { text: () => this.registry.metrics(), contentType: this.registry.contentType, registry: this.registry };
  }
}

/**
 * Serves `dns`'s metrics on the config's `metrics` address; rejects with a ConfigError naming it when it cannot
 * listen there (in use, not an address of this host).
 */
export function serveGatewayDnsMetrics(dns: GatewayDns, at: { address: string; port: number }): Promise<MetricsServer> {
  return serveMetrics(new GatewayDnsMetrics(dns).source, at.address, at.port).catch((err: Error) => {
    throw new ConfigError('metrics', `cannot listen on ${at.address}:${at.port}: ${err.message}`);
  });
}
